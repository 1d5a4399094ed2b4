"""Shared machinery of the layouts: pick the planned tokens, turn loads into an IOPlan.

A layout = a Placement (where bytes sit) + a rule for which neurons each token reads. The
reads of all (token, layer) batches are built at once with numpy and go through the shared
`align_merge`, so every layout aligns to the block and merges the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..trace.format import ActivationTrace
from ..geometry import ModelGeometry, NeuronSets
from .align import align_merge
from .placement import Placement
from .plan import IOPlan

SETS = ("predicted", "active")


class Layout:
    """Base class: `placement(geometry)` says where bytes sit, `plan(trace)` what is read."""

    name = "layout"

    def __init__(self, *, block_bytes: int = 4096, merge_gap_bytes: int = 0,
                 max_read_bytes: int | None = None) -> None:
        if block_bytes <= 0 or block_bytes & (block_bytes - 1):
            raise InputError(f"block size {block_bytes} is not a power of two",
                             key="block_bytes", expected="a power of two such as 512 or 4k")
        if merge_gap_bytes < 0:
            raise InputError(f"merge gap {merge_gap_bytes} is negative", key="merge_gap_bytes",
                             expected="0 or more bytes")
        self.block_bytes = int(block_bytes)
        self.merge_gap_bytes = int(merge_gap_bytes)
        self.max_read_bytes = None if max_read_bytes is None else int(max_read_bytes)

    def params(self) -> dict[str, Any]:
        """The parameters that define this layout (JSON-friendly)."""
        return {"block_bytes": self.block_bytes, "merge_gap_bytes": self.merge_gap_bytes,
                "max_read_bytes": self.max_read_bytes}

    def placement(self, geometry: ModelGeometry) -> Placement:
        raise NotImplementedError

    def plan(self, trace: ActivationTrace, *, which: str = "predicted",
             geometry: ModelGeometry | None = None) -> IOPlan:
        raise NotImplementedError


def check_trace(trace: ActivationTrace, which: str, geometry: ModelGeometry | None
                ) -> tuple[list[NeuronSets], np.ndarray]:
    """The sets to load and the planned positions (the generated tokens); InputError if none."""
    if which not in SETS:
        raise InputError(f"unknown neuron set {which!r}", key="set",
                         expected="'predicted' or 'active'")
    if geometry is not None:
        trace.check_geometry(geometry)
    sets = trace.sets(which)
    tokens = np.arange(trace.n_prompt_tokens, trace.n_tokens, dtype=np.int64)
    if len(tokens) == 0:
        raise InputError("trace has no generated tokens to plan (all tokens are prompt)",
                         key="n_prompt_tokens", expected="fewer prompt tokens than tokens")
    return sets, tokens


def build_plan(layout: Layout, trace: ActivationTrace, placement: Placement, tokens: np.ndarray,
               read_units: list[NeuronSets], neurons_loaded: np.ndarray,
               resident_neurons: np.ndarray, moved_rows: np.ndarray,
               computed_neurons: np.ndarray, *, which: str,
               meta: dict[str, Any] | None = None) -> IOPlan:
    """IOPlan from the read units (neuron records to read) per layer for the planned tokens.

    `read_units[l]` is a NeuronSets over the planned tokens; each unit i of layer l is read
    at the placement's fc1 offset (and, for split placements, also at its fc2 offset) for
    `read_unit_bytes`. Per-(token, layer) counts are [n_tokens, n_layers] arrays.
    """
    g = trace.geometry
    T, L = len(tokens), g.n_layers
    batches, starts = [], []
    for l, units in enumerate(read_units):
        tok = np.repeat(np.arange(T, dtype=np.int64), units.counts())
        ids = units.ids.astype(np.int64)
        b = tok * L + l
        batches.append(b)
        starts.append(placement.fc1_offset_bytes[l, ids])
        if placement.kind == "split":
            batches.append(b)
            starts.append(placement.fc2_offset_bytes[l, ids])
    start = np.concatenate(starts)
    return plan_from_ranges(layout, trace, placement, tokens, np.concatenate(batches), start,
                            start + placement.read_unit_bytes, neurons_loaded,
                            resident_neurons, moved_rows, computed_neurons, which=which,
                            meta=meta)


def plan_from_ranges(layout: Layout, trace: ActivationTrace, placement: Placement,
                     tokens: np.ndarray, batch: np.ndarray, start_bytes: np.ndarray,
                     end_bytes: np.ndarray, neurons_loaded: np.ndarray,
                     resident_neurons: np.ndarray, moved_rows: np.ndarray,
                     computed_neurons: np.ndarray, *, which: str,
                     meta: dict[str, Any] | None = None) -> IOPlan:
    """IOPlan from raw byte ranges per batch (b = token * n_layers + layer), aligned + merged."""
    g = trace.geometry
    T, L = len(tokens), g.n_layers
    ptr, offset, length = align_merge(
        batch, start_bytes, end_bytes, n_batches=T * L,
        block_bytes=placement.block_bytes, gap_bytes=layout.merge_gap_bytes,
        max_read_bytes=layout.max_read_bytes)
    record = 2 * g.row_bytes  # one DRAM row = [fc1 row | fc2 col]
    plan_meta = {"set": which, "placement": placement.summary(),
                 "trace_synthetic": trace.is_synthetic, **(meta or {})}
    plan = IOPlan(layout=layout.name, params=layout.params(), geometry=g,
                  block_bytes=placement.block_bytes, file_bytes=placement.file_bytes,
                  token_index=tokens, batch_ptr=ptr, offset_bytes=offset, length_bytes=length,
                  useful_bytes=neurons_loaded.astype(np.int64) * record,
                  dram_resident_bytes=resident_neurons.astype(np.int64) * record,
                  mem_moved_bytes=moved_rows.astype(np.int64) * record,
                  neurons_loaded=neurons_loaded.astype(np.int64), meta=plan_meta,
                  computed_neurons=computed_neurons.astype(np.int64))
    plan.validate()
    return plan
