"""Compute time per token: a linear model calibrated by timing numpy on this machine.

The model: per layer, a fixed part (the four d_model × d_model attention projections of
one decode step, timed) plus the sparse FFN of n neurons (fc1 rows n × d_model matvec,
ReLU, fc2 columns matvec, fp32 as flashsim.model computes it), timed at several n and
fitted as a + b·n. Attention over the KV context, embeddings and the predictor are not
included. Calibrated once per process per geometry.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from ..trace.format import ModelGeometry


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


@functools.lru_cache(maxsize=None)
def calibrate_compute(geometry: ModelGeometry, repeats: int = 30) -> ComputeModel:
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
    return ComputeModel(intercept + _best_time_s(attn, repeats), slope)
