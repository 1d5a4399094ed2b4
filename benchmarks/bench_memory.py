"""The flash runtime's memory management per token vs bytes moved / memcpy bandwidth, and the
cost model's memory and compute predictions vs what the runtime measured, same tokens.

    flock /tmp/flashsim-heavy.lock .venv/bin/python benchmarks/bench_memory.py \
        [--layouts windowed+bundled,bundled,sparse] [--tokens 64] [--qd 32] [--dir /var/tmp]

Per layout: a weight store is built in `--dir` (O_DIRECT needs a real file system, not
tmpfs), `generate` decodes `--tokens` tokens of a held-out prompt with the FFN read from it,
and the generated tokens' predicted sets are planned with the same layout. Printed per
layout (medians over the generated tokens, ms/token): the runtime's memory time, the bytes
its memory management moves over the measured memcpy bandwidth, their ratio (goal ≤ 3),
the calibrated memory model's prediction; the runtime's compute time and the compute
model's prediction (computed neurons = the predicted sets, context = position + 1).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from flashsim.cost.compute import calibrate_compute
from flashsim.cost.memcpy import measure_memcpy_bytes_per_s
from flashsim.cost.memory import calibrate_memory
from flashsim.cost.simulate import context_tokens
from flashsim.data import TEXT_DIR
from flashsim.layout.registry import make_layout
from flashsim.loader.runtime import generate_from_flash
from flashsim.loader.store import build_store
from flashsim.model.checkpoint import load_checkpoint
from flashsim.trace.format import ActivationTrace

PROMPT_TOKENS_TEXT = 400  # characters of the held-out prompt text


def compare(name: str, folder: Path, tokens: int, qd: int) -> dict:
    """Runtime vs models for one layout (see the module doc)."""
    ckpt = load_checkpoint(None)
    layout = make_layout(name)
    store = build_store(ckpt, layout, folder / f"{name.replace('+', '_')}.ffn")
    prompt = (TEXT_DIR / "heldout-prompts.txt").read_text()[:PROMPT_TOKENS_TEXT]
    gen = generate_from_flash(store.path, layout, prompt_text=prompt, n_tokens=tokens,
                              queue_depth=qd)
    trace = ActivationTrace(ckpt.geometry, gen.token_ids[:len(gen.predicted[0])].astype(np.int32),
                            gen.n_prompt_tokens, gen.predicted, gen.predicted,
                            {"synthetic": False, "source": "bench_memory generation"})
    plan = layout.plan(trace)
    g, record = ckpt.geometry, 2 * ckpt.geometry.row_bytes
    bw = measure_memcpy_bytes_per_s(record)
    runtime_mem = np.array([r["mem_ms"] for r in gen.per_token])
    runtime_compute = np.array([r["compute_ms"] for r in gen.per_token])
    counts = np.stack([s.counts()[gen.n_prompt_tokens:] for s in gen.predicted], axis=1)
    model_compute = calibrate_compute(g).seconds(counts, context_tokens(plan)) * 1e3
    bytes_ms = plan.mem_moved_bytes.sum(axis=1) / bw * 1e3
    med = lambda a: float(np.median(a))  # noqa: E731
    return {"layout": name, "tokens": len(runtime_mem),
            "runtime_mem_ms": med(runtime_mem), "bytes_over_memcpy_ms": med(bytes_ms),
            "ratio": med(runtime_mem) / med(bytes_ms) if med(bytes_ms) else None,
            "model_mem_ms": med(calibrate_memory(g).seconds(plan) * 1e3),
            "model_over_runtime_mem": med(calibrate_memory(g).seconds(plan) * 1e3)
            / med(runtime_mem),
            "runtime_compute_ms": med(runtime_compute), "model_compute_ms": med(model_compute),
            "runtime_io_ms": med([r["io_ms"] for r in gen.per_token]),
            "memcpy_gb_s": bw / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", default="windowed+bundled,bundled,sparse")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--qd", type=int, default=32)
    ap.add_argument("--dir", default="/var/tmp", help="folder for the weight stores")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = [compare(n.strip(), Path(tmp), args.tokens, args.qd)
                for n in args.layouts.split(",") if n.strip()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'layout':>18} {'mem ms':>8} {'bytes/bw':>9} {'ratio':>6} {'model':>7} "
          f"{'model/rt':>8}   {'compute':>8} {'model':>7}   (medians per token; goal: ratio <= 3)")
    for r in rows:
        print(f"{r['layout']:>18} {r['runtime_mem_ms']:8.3f} {r['bytes_over_memcpy_ms']:9.4f} "
              f"{r['ratio']:6.1f} {r['model_mem_ms']:7.3f} {r['model_over_runtime_mem']:8.2f}   "
              f"{r['runtime_compute_ms']:8.3f} {r['model_compute_ms']:7.3f}")


if __name__ == "__main__":
    main()
