"""Memory-management time per token: the runtime's own bookkeeping, timed and fitted.

Per (token, layer) the flash runtime's `DramManager` (layout/dram.py) steps the window,
derives the reads, decodes the read fp16 records into fp32 matrix rows and overwrites the
leaving rows. Its time, measured here by running that code over a real trace (the read
replaced by a buffer of the right length in DRAM), is fitted with least absolute deviations:

    seconds(token, layer) = s_per_call + s_per_neuron · loaded + s_per_read · reads
                            + s_per_read_byte · bytes read + s_per_moved_row · rows moved

(loaded: neurons read; reads, bytes read: the batch's; rows moved: leaving rows overwritten
by the last ones). The manager is two numba kernel calls per (token, layer), so the terms
are what the measurement shows: per call, the calls' dispatch and the caches the read and
the compute left cold (timed as the runtime runs, see memory_timing); per neuron, the
fp16 → fp32 decode of its row and its share of the read derivation; per read and byte,
locating the records in the read data; per moved row, one row copy.
`MemoryModel.memcpy(bw)` is the paper's model instead: the bytes moved by memory
management over the memcpy bandwidth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..geometry import ModelGeometry
from ..layout.plan import IOPlan
from .memory_timing import MemorySamples, time_memory_management
from .robust import lad_fit

TERMS = ("s_per_call", "s_per_neuron", "s_per_read", "s_per_read_byte", "s_per_moved_row")


@dataclass(frozen=True)
class MemoryModel:
    """Seconds of memory management per (token, layer) from the plan's counts."""

    s_per_call: float = 0.0
    s_per_neuron: float = 0.0
    s_per_read: float = 0.0
    s_per_read_byte: float = 0.0
    s_per_moved_row: float = 0.0
    s_per_moved_byte: float = 0.0  # the paper's model: bytes moved / memcpy bandwidth
    source: str = ""

    @classmethod
    def memcpy(cls, bytes_per_s: float) -> MemoryModel:
        return cls(s_per_moved_byte=1.0 / bytes_per_s,
                   source=f"bytes moved / memcpy {bytes_per_s / 1e9:.2f} GB/s")

    def batch_seconds(self, plan: IOPlan) -> np.ndarray:
        """Seconds per (token, layer), shape [n_tokens, n_layers]."""
        record = 2 * plan.geometry.row_bytes
        loaded = plan.neurons_loaded.astype(np.float64)
        evicted = np.maximum(plan.mem_moved_bytes / record - loaded, 0.0)
        return (self.s_per_call + self.s_per_neuron * loaded
                + self.s_per_read * plan.reads_per_batch()
                + self.s_per_read_byte * plan.bytes_per_batch()
                + self.s_per_moved_row * evicted
                + self.s_per_moved_byte * plan.mem_moved_bytes)

    def seconds(self, plan: IOPlan) -> np.ndarray:
        """Seconds per token [n_tokens]."""
        return self.batch_seconds(plan).sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in TERMS}, "s_per_moved_byte": self.s_per_moved_byte,
                "source": self.source}

    def to_rates(self) -> dict[str, float]:
        """The terms as flat `mem_*` rates (a sweep's host rates)."""
        return {f"mem_{k}": getattr(self, k) for k in TERMS}

    @classmethod
    def from_rates(cls, rates: dict[str, Any], source: str) -> MemoryModel | None:
        """The model of flat `mem_*` rates, or None when the rates hold none."""
        if not any(f"mem_{k}" in rates for k in TERMS):
            return None
        return cls(**{k: float(rates.get(f"mem_{k}") or 0.0) for k in TERMS}, source=source)


def fit_memory(samples: MemorySamples, source: str = "") -> MemoryModel:
    """The terms fitted to timed (token, layer) samples (least absolute deviations, ≥ 0)."""
    x = np.column_stack([np.ones(len(samples.seconds)), samples.loaded, samples.reads,
                         samples.read_bytes, samples.moved_rows]).astype(np.float64)
    c = lad_fit(x, samples.seconds)
    return MemoryModel(*(float(v) for v in c), source=source)


@functools.cache
def calibrate_memory(geometry: ModelGeometry) -> MemoryModel:
    """Time the runtime's memory management at `geometry` on this machine and fit it."""
    samples, what = time_memory_management(geometry)
    model = fit_memory(samples)
    return replace(model, source=f"runtime memory management timed on this machine ({what}), "
                                 "least-absolute-deviation fit")
