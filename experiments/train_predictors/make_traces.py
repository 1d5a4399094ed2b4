"""Capture the reference traces of the bundled opt-mini from its shipped fp16 weights.

- opt-mini-ref.trace: the paper's setting — a 128-token prompt (BOS + the first 127 tokens
  of flashsim/data/text/heldout-prompts.txt) and 256 sampled tokens (nucleus p = 0.9, seed 0).
- opt-mini-train.trace: for training co-activation orderings, from the *other* held-out text
  (heldout-train-trace.txt): 4 independent runs, each a 128-token prompt starting at an evenly
  spaced paragraph plus 384 sampled tokens (p = 0.9, seeds 1..4), i.e. 4 × 512 tokens (each
  run fills the 512-token context), concatenated. `n_prompt_tokens` is the first run's prompt;
  meta["segments"] gives every run's start, prompt and generated lengths.

    flock /tmp/flashsim-heavy.lock .venv/bin/python experiments/train_predictors/make_traces.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from flashsim.data import REFERENCE_TRACE, TEXT_DIR, TRAINING_TRACE  # noqa: E402
from flashsim.trace.capture import capture_trace  # noqa: E402
from flashsim.trace.format import ActivationTrace  # noqa: E402
from flashsim.geometry import NeuronSets


def concatenate(traces: list[ActivationTrace], meta: dict) -> ActivationTrace:
    """Independent runs of one model back to back (each started with an empty KV cache)."""
    def cat(sets: list[NeuronSets]) -> NeuronSets:
        ptrs, offset = [np.zeros(1, np.int64)], 0
        for s in sets:
            ptrs.append(s.ptr[1:] + offset)
            offset += int(s.ptr[-1])
        return NeuronSets(np.concatenate(ptrs), np.concatenate([s.ids for s in sets]))

    n_layers = traces[0].n_layers
    return ActivationTrace(traces[0].geometry, np.concatenate([t.token_ids for t in traces]),
                           traces[0].n_prompt_tokens,
                           [cat([t.active[l] for t in traces]) for l in range(n_layers)],
                           [cat([t.predicted[l] for t in traces]) for l in range(n_layers)], meta)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--out-dir", type=Path, default=REFERENCE_TRACE.parent)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--predictors", type=Path, default=None,
                   help="predictors file (default: <model>/predictors.safetensors)")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    prompts = TEXT_DIR / "heldout-prompts.txt"
    t0 = time.perf_counter()
    ref = capture_trace(args.model, prompts.read_text(), 256, top_p=0.9, seed=0,
                        prompt_tokens=128, prompt_source=str(prompts.relative_to(REPO)),
                        predictors=args.predictors)
    ref.save(args.out_dir / REFERENCE_TRACE.name)
    print(f"{REFERENCE_TRACE.name}: {ref.n_tokens} tokens in {time.perf_counter() - t0:.1f}s")

    source = TEXT_DIR / "heldout-train-trace.txt"
    paragraphs = [q for q in source.read_text().split("\n\n") if q.strip()]
    runs, segments, start = [], [], 0
    for k in range(args.segments):
        first = k * len(paragraphs) // args.segments
        run = capture_trace(args.model, "\n\n".join(paragraphs[first:]), 384, top_p=0.9,
                            seed=k + 1, prompt_tokens=128,
                            prompt_source=f"{source.relative_to(REPO)} from paragraph {first}",
                            predictors=args.predictors)
        runs.append(run)
        segments.append({"start": start, "prompt_tokens": run.n_prompt_tokens,
                         "generated_tokens": run.n_tokens - run.n_prompt_tokens,
                         "seed": k + 1, "first_paragraph": first,
                         "prompt_sha256": run.meta["prompt_sha256"]})
        start += run.n_tokens
    meta = {**runs[0].meta, "seed": [s["seed"] for s in segments],
            "prompt_source": str(source.relative_to(REPO)),
            "prompt_sha256": None, "generated_tokens": sum(s["generated_tokens"] for s in segments),
            "segments": segments,
            "note": ("independent runs concatenated; positions >= n_prompt_tokens include the "
                     "later runs' prompts (real held-out text run through the model)")}
    train = concatenate(runs, meta)
    train.save(args.out_dir / TRAINING_TRACE.name)
    print(f"{TRAINING_TRACE.name}: {train.n_tokens} tokens; total {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
