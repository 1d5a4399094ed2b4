"""The sparse FFN path: a predictor picks neurons per token, only their weights are used.

For each call the union of the tokens' predicted neurons is fetched once from an
`FFNWeightSource` (fc1 rows, fc1 bias, fc2 columns); each token then uses only its own
predicted neurons. With one token per call (decoding) that is exactly the paper's runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from .opt import NO_TIMER, LayerRecord
from .predictor import PredictorSet
from .weights import FFNWeightSource


def one_blas_thread() -> Any:
    """BLAS pinned to one thread, as the decode runs (from flash, and when its compute is
    calibrated): spinning BLAS threads on a 2-core machine steal the CPU that completes the
    reads (measured: I/O p50 6.3 → 2.0 ms), and on these tiny matvecs more threads are slower
    and noisier."""
    return threadpool_limits(limits=1, user_api="blas")


class SparseFFN:
    """FFN that computes only predicted neurons; `record=True` keeps each layer's predicted mask."""

    def __init__(self, predictors: PredictorSet, source: FFNWeightSource, *,
                 threshold: float | None = None, record: bool = False) -> None:
        self.predictors = predictors
        self.source = source
        self.threshold = predictors.threshold if threshold is None else threshold
        self.record = record
        self.records: dict[int, LayerRecord] = {}
        self.neurons_fetched = 0  # total ids fetched from the source (for accounting)
        self.timer = NO_TIMER  # per-part laps (compute calibration); shared with the model's

    def __call__(self, layer: int, resid: np.ndarray, x: np.ndarray) -> np.ndarray:
        tm = self.timer
        mask = self.predictors.predict_mask(layer, resid, self.threshold)
        if self.record:
            self.records[layer] = LayerRecord(resid, x, mask)
        ids = np.flatnonzero(mask[0]) if mask.shape[0] == 1 else np.flatnonzero(mask.any(axis=0))
        self.neurons_fetched += len(ids)
        fc2_b = self.source.fc2_bias(layer)
        tm.lap("predictor")
        if len(ids) == 0:
            return np.broadcast_to(fc2_b, x.shape).astype(np.float32)
        fc1_rows, fc1_b, fc2_cols = self.source.rows(layer, ids)
        tm.lap("ffn_rows")  # the neurons' rows gathered from the weight source
        h = x @ fc1_rows.T
        h += fc1_b
        np.maximum(h, 0.0, out=h)
        if mask.shape[0] > 1:
            h *= mask[:, ids]
        out = h @ fc2_cols + fc2_b
        tm.lap("ffn_matvec")
        return out
