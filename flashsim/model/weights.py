"""Where the sparse FFN gets its neuron weights from: a small interface with a DRAM implementation.

The flash loader (`loader.runtime.FlashWeightSource`) implements the same interface, so the sparse decode runs
unchanged whether a neuron's fc1 row and fc2 column come from memory or from flash.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .checkpoint import Checkpoint


@runtime_checkable
class FFNWeightSource(Protocol):
    """Per-neuron FFN weights of every layer, fetched by neuron id."""

    def rows(self, layer: int, neuron_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """fp32 (fc1_rows [n, d_model], fc1_bias [n], fc2_cols [n, d_model]) for sorted ids."""
        ...

    def fc2_bias(self, layer: int) -> np.ndarray:
        """fp32 fc2 bias [d_model] (always resident: it does not depend on the neurons)."""
        ...


class DRAMWeightSource:
    """FFN weights held in memory: fc1 rows and fc2 columns (stored as rows of fc2ᵀ)."""

    def __init__(self, fc1_w: list[np.ndarray], fc1_b: list[np.ndarray],
                 fc2_t: list[np.ndarray], fc2_b: list[np.ndarray]) -> None:
        if not (len(fc1_w) == len(fc1_b) == len(fc2_t) == len(fc2_b)):
            raise ValueError("one array per layer expected for every weight")
        self._fc1_w = [np.ascontiguousarray(a, np.float32) for a in fc1_w]
        self._fc1_b = [np.ascontiguousarray(a, np.float32) for a in fc1_b]
        self._fc2_t = [np.ascontiguousarray(a, np.float32) for a in fc2_t]
        self._fc2_b = [np.ascontiguousarray(a, np.float32) for a in fc2_b]

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> DRAMWeightSource:
        """Share the checkpoint's fp32 arrays (no copy)."""
        return cls([l.fc1_w for l in ckpt.layers], [l.fc1_b for l in ckpt.layers],
                   [l.fc2_t for l in ckpt.layers], [l.fc2_b for l in ckpt.layers])

    def rows(self, layer: int, neuron_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gather the rows of `neuron_ids` (a copy, as a loader would produce)."""
        ids = np.asarray(neuron_ids, dtype=np.intp)
        return self._fc1_w[layer][ids], self._fc1_b[layer][ids], self._fc2_t[layer][ids]

    def fc2_bias(self, layer: int) -> np.ndarray:
        return self._fc2_b[layer]
