"""Calibrate the compute model for a geometry without a model to run (e.g. OPT-6.7B-sized
synthetic traces): the decode's parts as numpy operations at the exact shapes, timed.

The geometry gives d_model, d_ffn and the layer count; what it does not give is assumed and
named in the model's `source`: head size 64 (128 above d_model 2048), predictor rank 128, an
OPT vocabulary of 50272 tokens (the LM head timed on LM_HEAD_ROWS of its rows and scaled:
a matvec that size streams its matrix from DRAM, so time grows with the rows). The parts and
their drivers are those of the real decode (`compute_decode.py`); each is the median of
`repeats` timings, and the context and neuron slopes are least-absolute-deviation fits.
"""

from __future__ import annotations

import time

import numpy as np

from ..geometry import ModelGeometry
from ..model.opt import layer_norm
from ..model.predictor import standardize
from ..model.sampling import sample_top_p
from ..progress import progress
from .compute_model import ComputeModel, PartCost
from .robust import lad_fit

VOCAB = 50272  # OPT's
PREDICTOR_RANK = 128
LM_HEAD_ROWS = 8192
CONTEXTS = (64, 256, 1024, 2048)


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _slope_fit(sizes: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    c = lad_fit(np.column_stack([np.ones(len(sizes)), sizes.astype(np.float64)]), times)
    return float(c[0]), float(c[1])


def calibrate_matvec(geometry: ModelGeometry, repeats: int = 30) -> ComputeModel:
    """Time the parts at `geometry`'s shapes; see the module doc for what is assumed."""
    d, f = geometry.d_model, geometry.d_ffn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, d), dtype=np.float32)
    ln_w, ln_b = np.ones(d, np.float32), np.zeros(d, np.float32)
    proj = rng.standard_normal((4, d, d), dtype=np.float32)
    timings = [  # one thunk per part, so a bar can follow them (seconds each at 6.7B shapes)
        lambda: PartCost("layer_norms", "layer",
                         2 * _median_s(lambda: layer_norm(x, ln_w, ln_b), repeats)),
        lambda: PartCost("projections", "layer",
                         _median_s(lambda: [x @ w.T for w in proj], repeats)),
        lambda: _attention(d, repeats, rng), lambda: _predictor(d, f, repeats, rng),
        lambda: _ffn(d, f, repeats, rng), lambda: _lm_head(d, repeats, rng)]
    parts = [timed() for timed in progress(timings, total=len(timings), unit="part",
                                           desc=f"compute calibration ({geometry.name})")]
    source = (f"matvec: the decode's parts as numpy at the exact shapes of {geometry.name}; "
              f"assumed: head size {_head_dim(d)}, predictor rank {PREDICTOR_RANK}, vocab "
              f"{VOCAB} (LM head timed on {LM_HEAD_ROWS} rows, scaled)")
    return ComputeModel.from_parts(parts, source)


def _head_dim(d: int) -> int:
    return 64 if d <= 2048 else 128


def _attention(d: int, repeats: int, rng: np.random.Generator) -> PartCost:
    """Scores, softmax and values over `context` keys, one query."""
    hd = _head_dim(d)
    heads = max(d // hd, 1)
    keys = rng.standard_normal((heads, max(CONTEXTS), hd), dtype=np.float32)
    q = rng.standard_normal((heads, 1, hd), dtype=np.float32)

    def step(n: int) -> None:
        s = q @ keys[:, :n].transpose(0, 2, 1)
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        s @ keys[:, :n]

    sizes = np.array(CONTEXTS)
    const, slope = _slope_fit(sizes, np.array([_median_s(lambda n=n: step(int(n)), repeats)
                                               for n in sizes]))
    return PartCost("attention", "layer", const, per_context_s=slope)


def _predictor(d: int, f: int, repeats: int, rng: np.random.Generator) -> PartCost:
    down = rng.standard_normal((PREDICTOR_RANK, d), dtype=np.float32)
    up = rng.standard_normal((f, PREDICTOR_RANK), dtype=np.float32)
    x = rng.standard_normal((1, d), dtype=np.float32)
    return PartCost("predictor", "layer", _median_s(
        lambda: np.flatnonzero(((standardize(x) @ down.T) @ up.T)[0] >= 0.0), repeats))


def _ffn(d: int, f: int, repeats: int, rng: np.random.Generator) -> PartCost:
    """Rows gathered from the layer's matrices, then fc1 matvec, ReLU, fc2 matvec."""
    rows = min(f, 8192)
    fc1 = rng.standard_normal((rows, d), dtype=np.float32)
    fc2t = rng.standard_normal((rows, d), dtype=np.float32)
    x = rng.standard_normal((1, d), dtype=np.float32)

    def ffn(ids: np.ndarray) -> None:
        h = np.maximum(x @ fc1[ids].T, 0.0)
        h @ fc2t[ids]

    sizes = np.unique(np.linspace(max(rows // 64, 1), rows, 6).astype(int))
    picks = [np.sort(rng.choice(rows, n, replace=False)) for n in sizes]
    const, slope = _slope_fit(sizes, np.array([_median_s(lambda p=p: ffn(p), repeats)
                                               for p in picks]))
    return PartCost("ffn", "ffn", const, per_neuron_s=slope)


def _lm_head(d: int, repeats: int, rng: np.random.Generator) -> PartCost:
    """LM head (scaled from LM_HEAD_ROWS rows to the vocabulary) and nucleus sampling."""
    head = rng.standard_normal((LM_HEAD_ROWS, d), dtype=np.float32)
    x = rng.standard_normal((1, d), dtype=np.float32)
    matvec = _median_s(lambda: x @ head.T, repeats) * VOCAB / LM_HEAD_ROWS
    logits = rng.standard_normal(VOCAB).astype(np.float32) * 4
    sample_rng = np.random.default_rng(0)
    sampling = _median_s(lambda: sample_top_p(logits, 0.9, sample_rng), repeats)
    return PartCost("lm_head+sampling", "token", matvec + sampling)
