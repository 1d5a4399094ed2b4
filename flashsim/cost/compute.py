"""Compute time per token: a linear model calibrated by timing numpy on this machine.

seconds(token) = Σ_layers (fixed_s_per_layer + s_per_neuron · n_layer), n = the neurons the
token's FFN multiplies. Two calibrations, picked by `calibrate_compute(geometry)`:

- "opt-decode" (when the bundled opt-mini has the plan's geometry): the real numpy OPT
  decode step of `flashsim.model` (embeddings, attention over a 128-token KV cache, FFN,
  LM head), timed with the FFN computing the first n rows of each layer's matrix (the
  paper's runtime multiplies matrix[:n]) for several n, fitted a + b·n. The predictor is
  not included.
- "matvec" (other geometries, e.g. OPT-6.7B): per layer the four d_model × d_model
  attention projections plus the FFN of n neurons (fc1 rows matvec, ReLU, fc2 columns
  matvec, fp32), timed at the exact shapes; attention over the context, embeddings and LM
  head are not included.

Timed with BLAS pinned to one thread (threadpoolctl, when installed): on a shared 2-core
machine multi-threaded BLAS on these tiny matvecs is slower and far noisier. Calibrated
once per process per geometry.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..geometry import ModelGeometry
from ..model.opt import OPTModel


@dataclass(frozen=True)
class ComputeModel:
    """seconds(layer with n computed neurons) = fixed_s_per_layer + s_per_neuron · n."""

    fixed_s_per_layer: float
    s_per_neuron: float
    source: str = "calibrated numpy matvec timings"

    def seconds(self, computed_neurons: np.ndarray) -> np.ndarray:
        """Per-token compute seconds from computed neurons [n_tokens, n_layers]."""
        n = np.asarray(computed_neurons, dtype=np.float64)
        return (self.fixed_s_per_layer + self.s_per_neuron * n).sum(axis=1)

    def to_dict(self) -> dict:
        return {"fixed_s_per_layer": self.fixed_s_per_layer, "s_per_neuron": self.s_per_neuron,
                "source": self.source}


def _best_time_s(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@functools.cache
def calibrate_compute(geometry: ModelGeometry, repeats: int = 30) -> ComputeModel:
    """The real OPT decode step when the bundled model matches `geometry`, else matvecs."""
    model = _bundled_model_for(geometry)
    with _one_blas_thread():
        if model is not None:
            return calibrate_decode(model, repeats=repeats)
        return calibrate_matvec(geometry, repeats=repeats)


def _one_blas_thread():
    """Time as the decode runs: one BLAS thread (the runtime pins the same)."""
    return threadpool_limits(limits=1, user_api="blas")


def _bundled_model_for(geometry: ModelGeometry):
    try:
        model = OPTModel.load()
    except Exception:  # no bundled model (yet), or it cannot be read: use matvecs
        return None
    return model if model.geometry.mismatch(geometry) is None else None


class _FirstRows:
    """An FFN that multiplies the first n rows of each layer (the runtime's matrix[:n])."""

    def __init__(self, ckpt, n: int) -> None:
        self.layers, self.n = ckpt.layers, n

    def __call__(self, layer: int, resid: np.ndarray, x: np.ndarray) -> np.ndarray:
        w, n = self.layers[layer], self.n
        h = x @ w.fc1_w[:n].T
        h += w.fc1_b[:n]
        np.maximum(h, 0.0, out=h)
        return h @ w.fc2_t[:n] + w.fc2_b


def calibrate_decode(model, *, context: int = 128, repeats: int = 30) -> ComputeModel:
    """Time one-token decode steps of the numpy OPT `model` after `context` tokens."""
    spec, g = model.spec, model.geometry
    context = min(context, spec.max_positions - 1)
    cache = model.new_cache(context + 1)
    rng = np.random.default_rng(0)
    model.forward(rng.integers(0, spec.vocab_size, context), cache)
    token = [int(rng.integers(0, spec.vocab_size))]

    def step(ffn) -> None:
        cache.length = context
        model.forward(token, cache, ffn)

    sizes = np.unique(np.linspace(max(g.d_ffn // 16, 1), g.d_ffn, 6).astype(int))
    ffns = [_FirstRows(model.ckpt, int(n)) for n in sizes]
    step(ffns[-1])  # warm-up
    times = np.array([_best_time_s(lambda f=f: step(f), repeats) for f in ffns])
    slope, intercept = np.polyfit(sizes.astype(float), times, 1)  # per n in every layer
    L = g.n_layers
    return ComputeModel(max(float(intercept), 0.0) / L, max(float(slope), 0.0) / L,
                        f"opt-decode: numpy OPT decode step timed, context {context} tokens")


def calibrate_matvec(geometry: ModelGeometry, repeats: int = 30) -> ComputeModel:
    """Time this machine's numpy on the geometry's exact shapes and fit the linear model."""
    d, f = geometry.d_model, geometry.d_ffn
    rng = np.random.default_rng(0)
    fc1 = rng.standard_normal((f, d), dtype=np.float32)
    fc2t = rng.standard_normal((f, d), dtype=np.float32)  # fc2 columns as rows
    bias = rng.standard_normal(f, dtype=np.float32)
    x = rng.standard_normal(d, dtype=np.float32)
    proj = rng.standard_normal((4, d, d), dtype=np.float32)

    def ffn(n: int) -> None:
        h = np.maximum(fc1[:n] @ x + bias[:n], 0.0)
        h @ fc2t[:n]

    def attn() -> None:
        for w in proj:
            w @ x

    sizes = np.unique(np.linspace(max(f // 16, 1), f, 6).astype(int))
    times = np.array([_best_time_s(lambda n=n: ffn(int(n)), repeats) for n in sizes])
    slope, intercept = np.polyfit(sizes.astype(float), times, 1)
    slope = max(float(slope), 0.0)
    intercept = max(float(intercept), 0.0)
    return ComputeModel(intercept + _best_time_s(attn, repeats), slope,
                        "matvec: attention projections + FFN matvecs timed at the exact shapes")
