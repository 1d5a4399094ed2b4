"""Calibrate the compute model on the real sparse decode of the bundled model, part by part.

The decode runs as the flash runtime runs it (one token per step, the predictor picking each
layer's neurons, nucleus sampling, one BLAS thread), with the FFN rows from DRAM, over a
calibration text that no validation prompt uses (held-out eval text). Each position is
decoded twice in lockstep, on two KV caches: once with the per-part timer on (`PartTimer`
laps: where the time goes) and once with it off, timed as the runtime times a token
(perf_counter around forward + sampling), which fixes the total. Each part is then fitted
against what drives it with least absolute deviations, robust to a shared machine's stalls:

- per token (constant): embed, final_ln, lm_head, sampling (sampled positions), rest (the
  median of the timer-off step minus the other parts' fit over sampled positions: Python
  between the laps, less the laps' own cost; it may be negative);
- per layer (constant): attn_ln, qkv, attn_out, ffn_ln, predictor, ffn_out;
- per layer, with the context: attention (scores and values over position + 1 keys);
- per FFN that runs, with its neurons: ffn_rows (gather), ffn_matvec.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import TEXT_DIR, bundled_model_dir, default_predictors_path
from ..model.checkpoint import load_checkpoint
from ..model.opt import NO_TIMER, OPTModel, PartTimer
from ..model.predictor import PredictorSet
from ..model.sampling import next_token
from ..model.sparse import SparseFFN
from ..model.tokenizer import load_tokenizer, prompt_ids
from ..model.weights import DRAMWeightSource
from ..progress import progress
from .compute_model import ComputeModel, PartCost
from .robust import lad_fit

CALIBRATION_TEXT = TEXT_DIR / "heldout-eval.txt"  # validations prompt from heldout-prompts
TOKEN_PARTS = ("embed", "final_ln", "lm_head", "sampling")
LAYER_PARTS = ("attn_ln", "qkv", "attn_out", "ffn_ln", "predictor", "ffn_out")
CONTEXT_PARTS = ("attention",)
FFN_PARTS = ("ffn_rows", "ffn_matvec")


@dataclass
class DecodeTimings:
    """Per decoded position: seconds per part (timer on), the step's seconds (timer off),
    the keys attended (position + 1), neurons computed per layer, whether it sampled."""

    parts: dict[str, np.ndarray]  # part -> [T] seconds
    total_s: np.ndarray  # [T]
    context: np.ndarray  # [T]
    neurons: np.ndarray  # [T, n_layers]
    sampled: np.ndarray  # bool [T]


class _CountingSource:
    """The DRAM weight source, noting how many neurons each layer's FFN fetched."""

    def __init__(self, inner: DRAMWeightSource, n_layers: int) -> None:
        self.inner, self.counts = inner, np.zeros(n_layers, np.int64)

    def rows(self, layer: int, ids: np.ndarray):
        self.counts[layer] = len(ids)
        return self.inner.rows(layer, ids)

    def fc2_bias(self, layer: int) -> np.ndarray:
        return self.inner.fc2_bias(layer)

    def take(self) -> np.ndarray:
        out, self.counts = self.counts, np.zeros_like(self.counts)
        return out


def time_decode(model_dir: str | os.PathLike | None = None, *,
                text_path: str | os.PathLike = CALIBRATION_TEXT, prompt_tokens: int = 128,
                n_tokens: int = 320, top_p: float | None = 0.9, seed: int = 0) -> DecodeTimings:
    """Decode `prompt_tokens` of the calibration text + `n_tokens` sampled tokens, timed."""
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    ckpt = load_checkpoint(folder)
    ids = prompt_ids(load_tokenizer(folder), ckpt.spec, Path(text_path).read_text(),
                     n_tokens, prompt_tokens)
    model = OPTModel(ckpt)
    source = _CountingSource(DRAMWeightSource.from_checkpoint(ckpt), ckpt.spec.n_layers)
    ffn = SparseFFN(PredictorSet.load(default_predictors_path(folder)), source)
    n_steps = len(ids) + n_tokens
    caches = (model.new_cache(n_steps), model.new_cache(n_steps))
    rngs = (np.random.default_rng(seed), np.random.default_rng(seed))
    timer = PartTimer()
    parts: list[dict[str, float]] = []
    total, neurons, sampled = np.zeros(n_steps), [], np.zeros(n_steps, bool)
    token = ids[0]
    for step in progress(range(n_steps), total=n_steps, desc="compute calibration",
                         unit="token"):
        sampled[step] = step + 1 >= len(ids)
        for timed in ((True, False) if step % 2 else (False, True)):  # alternate the order
            model.timer = ffn.timer = timer if timed else NO_TIMER
            cache, rng = caches[timed], rngs[timed]
            t0 = time.perf_counter()
            logits = model.forward([token], cache, ffn)[-1]
            nxt = next_token(logits, top_p, rng) if sampled[step] else ids[step + 1]
            if timed:
                timer.lap("sampling")
                parts.append(timer.take())
                neurons.append(source.take())
            else:
                total[step] = time.perf_counter() - t0
                source.take()
        token = nxt
    model.timer = ffn.timer = NO_TIMER
    names = sorted({k for p in parts for k in p})
    return DecodeTimings({k: np.array([p.get(k, 0.0) for p in parts]) for k in names}, total,
                         np.arange(1, n_steps + 1, dtype=np.float64), np.array(neurons),
                         sampled)


def fit_decode(t: DecodeTimings) -> list[PartCost]:
    """Each part fitted against its drivers (least absolute deviations; see the module doc)."""
    n_layers = t.neurons.shape[1]
    ones = np.ones(len(t.total_s))
    ffn_layers = (t.neurons > 0).sum(axis=1).astype(np.float64)
    n_sum = t.neurons.sum(axis=1).astype(np.float64)
    out: list[PartCost] = []
    for name in TOKEN_PARTS:
        rows = t.sampled if name == "sampling" else ones > 0
        out.append(PartCost(name, "token", _median(t.parts.get(name), rows)))
    for name in LAYER_PARTS:
        out.append(PartCost(name, "layer", _median(t.parts.get(name), ones > 0) / n_layers))
    for name in CONTEXT_PARTS:
        c = lad_fit(np.column_stack([ones, t.context]) * n_layers, t.parts[name])
        out.append(PartCost(name, "layer", float(c[0]), per_context_s=float(c[1])))
    for name in FFN_PARTS:
        c = lad_fit(np.column_stack([ffn_layers, n_sum]), t.parts[name])
        out.append(PartCost(name, "ffn", float(c[0]), per_neuron_s=float(c[1])))
    # the rest anchors the model to the timer-off step: the median residual of the tokens
    # that sample (what the runtime reports) is zero; it may be negative (the laps' cost)
    residual = t.total_s - ComputeModel.from_parts(out, "").seconds(t.neurons, t.context)
    out.append(PartCost("rest", "token", _median(residual, t.sampled if t.sampled.any()
                                                 else ones > 0)))
    return out


def _median(values: np.ndarray | None, rows: np.ndarray) -> float:
    if values is None or not rows.any():
        return 0.0
    return float(np.median(values[rows]))


def calibrate_decode(model_dir: str | os.PathLike | None = None, **options) -> ComputeModel:
    """Time the decode (`time_decode`) and fit its parts (`fit_decode`) into one model."""
    t = time_decode(model_dir, **options)
    return ComputeModel.from_parts(
        fit_decode(t), f"opt-decode: the sparse decode timed part by part over "
        f"{len(t.total_s)} positions of {CALIBRATION_TEXT.name} (context 1-{len(t.total_s)}), "
        "least-absolute-deviation fits")
