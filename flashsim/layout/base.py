"""Shared machinery of the layouts: pick the planned tokens, turn loads into an IOPlan.

A layout = a Placement (where bytes sit) + a rule for which neurons each token reads. A
layout's `read_ranges` is the one derivation of the byte ranges a (token, layer) batch
needs; `merge_reads` (the shared `align_merge`) aligns them to the block and merges them.
The plan applies both to all batches at once with numpy (`build_plan`); the flash runtime
applies them to one batch at a time as the predictor's ids arrive (`Layout.batch_reads`),
so it reads exactly the plan's bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ..errors import InputError
from ..geometry import ModelGeometry, NeuronSets
from ..trace.format import ActivationTrace
from .align import (
    align_merge,
    align_merge_kernel,
    check_merge,
    layer_merge_kernel,
    records_merge_kernel,
)
from .placement import Placement
from .plan import IOPlan
from .window import Residency

SETS = ("predicted", "active")


class Layout:
    """Base class: `placement(geometry)` says where bytes sit, `plan(trace)` what is read."""

    name = "layout"
    # True: every token reads the layer's whole flash share and multiplies the dense FFN
    # (no predictor, no per-neuron DRAM residency); False: the sparse decode's layouts.
    dense_ffn = False

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

    def read_ranges(self, layer: int, loads: NeuronSets, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token, start_bytes, end_bytes) of the byte ranges that bring `loads` of `layer`.

        `token` indexes `loads`; ranges are neither aligned nor merged (see `merge_reads`).
        """
        raise NotImplementedError

    def merge_reads(self, batch: np.ndarray, start_bytes: np.ndarray, end_bytes: np.ndarray,
                    n_batches: int, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(batch_ptr, offset_bytes, length_bytes): ranges aligned, merged, cut to size."""
        return align_merge(batch, start_bytes, end_bytes, n_batches=n_batches,
                           block_bytes=placement.block_bytes, gap_bytes=self.merge_gap_bytes,
                           max_read_bytes=self.max_read_bytes)

    def reads_own_records(self, placement: Placement) -> bool:
        """True when a batch's reads are `unit_batch_reads` of its loads (each neuron's own
        record(s) at the placement's offsets), so a runtime may derive them in one kernel."""
        return False

    def batch_reads(self, layer: int, loads: np.ndarray, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, lengths) of the reads that bring neurons `loads` of one (token, layer).

        The plan's derivation for a single batch: what a runtime issues once it knows the ids.
        """
        ids = np.asarray(loads, dtype=np.int32)
        one = NeuronSets(np.array([0, len(ids)], dtype=np.int64), ids)
        tok, start, end = self.read_ranges(layer, one, placement)
        _, offset, length = self.merge_reads(tok, start, end, 1, placement)
        return offset, length

    def residency(self, geometry: ModelGeometry) -> Residency:
        """A fresh per-layer DRAM residency (window, budget) as the plan steps it."""
        raise InputError(f"layout {self.name!r} keeps no per-neuron DRAM residency",
                         key="layout", expected="a sparse layout")


def unit_ranges(layer: int, units: NeuronSets, placement: Placement
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token, start, end) of the neuron records `units` of `layer`: each unit is read at the
    placement's fc1 offset (and, for split placements, also at its fc2 offset)."""
    return _unit_ranges(np.ascontiguousarray(units.ptr, dtype=np.int64),
                        np.ascontiguousarray(units.ids), placement.fc1_offset_bytes[layer],
                        placement.fc2_offset_bytes[layer], placement.kind == "split",
                        placement.read_unit_bytes)


@njit(cache=True)
def _unit_ranges(ptr, ids, fc1_offset, fc2_offset, split, unit_bytes):
    """Numba kernel of `unit_ranges`: the fc1 ranges of every token, then (split) the fc2."""
    n = len(ids)
    tok = np.empty(2 * n if split else n, np.int64)
    start = np.empty(len(tok), np.int64)
    for t in range(len(ptr) - 1):
        for j in range(ptr[t], ptr[t + 1]):
            tok[j], start[j] = t, fc1_offset[ids[j]]
            if split:
                tok[n + j], start[n + j] = t, fc2_offset[ids[j]]
    return tok, start, start + unit_bytes


def unit_batch_reads(layout: Layout, layer: int, loads: np.ndarray, placement: Placement
                     ) -> tuple[np.ndarray, np.ndarray]:
    """`Layout.batch_reads` of a layout whose read units are the loads themselves, in one
    kernel call: the same `_unit_ranges` and `align_merge_kernel` kernels as the plan's."""
    ids = np.ascontiguousarray(loads, dtype=np.int64)
    offsets, params = unit_read_args(layout, layer, placement)
    room = 2 * len(ids)  # reads ≤ ranges, unless `max_read_bytes` cuts runs into pieces
    while True:
        offset, length = np.empty(room, np.int64), np.empty(room, np.int64)
        n = unit_batch_reads_kernel(ids, offsets, params, offset, length)
        if n <= room:
            return offset[:n], length[:n]
        room = n


def unit_read_args(layout: Layout, layer: int, placement: Placement
                   ) -> tuple[np.ndarray, np.ndarray]:
    """What `unit_batch_reads_kernel` needs besides the ids and the output: the layer's
    [fc1; fc2] record offsets and [split, unit bytes, block, merge gap, largest read or 0]."""
    offsets = np.stack([placement.fc1_offset_bytes[layer], placement.fc2_offset_bytes[layer]])
    params = np.array([placement.kind == "split", placement.read_unit_bytes,
                       placement.block_bytes, layout.merge_gap_bytes,
                       layout.max_read_bytes or 0], np.int64)
    return offsets, params


@njit(cache=True)
def unit_batch_reads_kernel(ids, offsets, params, offset, length):
    """Numba kernel of `unit_batch_reads` (arguments: `unit_read_args`): one batch's reads
    written to offset[:n] and length[:n] where they fit; returns n."""
    ptr = np.zeros(2, np.int64)
    ptr[1] = len(ids)
    split, unit_bytes, block, gap, max_read = params
    tok, start, end = _unit_ranges(ptr, ids, offsets[0], offsets[1], split != 0, unit_bytes)
    _, off, n_bytes = align_merge_kernel(tok, start, end, 1, block, gap, max_read)
    if len(off) <= len(offset):
        offset[:len(off)] = off
        length[:len(off)] = n_bytes
    return len(off)


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
               loads: list[NeuronSets], neurons_loaded: np.ndarray,
               resident_neurons: np.ndarray, moved_rows: np.ndarray,
               computed_neurons: np.ndarray, *, which: str,
               meta: dict[str, Any] | None = None) -> IOPlan:
    """IOPlan from the neurons to load per layer for the planned tokens.

    `loads[l]` is a NeuronSets over the planned tokens; `layout.read_ranges` turns each
    layer's loads into byte ranges. Per-(token, layer) counts are [n_tokens, n_layers] arrays.
    """
    L = trace.geometry.n_layers
    if type(layout).merge_reads is Layout.merge_reads:  # the shared merge, layer by layer
        ptr, offset, length = _merge_by_layer(layout, loads, placement, len(tokens), L)
        return _make_plan(layout, trace, placement, tokens, ptr, offset, length,
                          neurons_loaded, resident_neurons, moved_rows, computed_neurons,
                          which=which, meta=meta)
    batches, starts, ends = [], [], []
    for l, ld in enumerate(loads):
        tok, start, end = layout.read_ranges(l, ld, placement)
        batches.append(tok * L + l)
        starts.append(start)
        ends.append(end)
    return plan_from_ranges(layout, trace, placement, tokens, np.concatenate(batches),
                            np.concatenate(starts), np.concatenate(ends), neurons_loaded,
                            resident_neurons, moved_rows, computed_neurons, which=which,
                            meta=meta)


def _merge_by_layer(layout: Layout, loads: list[NeuronSets], placement: Placement,
                    n_tokens: int, n_layers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`Layout.merge_reads` of every layer's ranges, batch b = token * n_layers + layer,
    without concatenating them: a pass counts each batch's reads, a second derives the
    ranges again and writes the reads in place (memory: the plan and one layer's ranges;
    a layout that reads its loads' own records: the plan and one token's ranges)."""
    block, gap, max_read = placement.block_bytes, layout.merge_gap_bytes, layout.max_read_bytes
    check_merge(block, gap, max_read)
    counts = np.zeros((n_tokens, n_layers), np.int64)
    none = np.zeros(0, np.int64)
    ptr = np.zeros(n_tokens * n_layers + 1, np.int64)
    own = layout.reads_own_records(placement)  # ranges straight from the loads
    for write in (False, True):
        if write:
            np.cumsum(counts.reshape(-1), out=ptr[1:])
            offset, length = np.empty(ptr[-1], np.int64), np.empty(ptr[-1], np.int64)
        for l, ld in enumerate(loads):
            if own:
                records_merge_kernel(
                    np.ascontiguousarray(ld.ptr, dtype=np.int64), np.ascontiguousarray(ld.ids),
                    np.ascontiguousarray(placement.fc1_offset_bytes[l], dtype=np.int64),
                    np.ascontiguousarray(placement.fc2_offset_bytes[l], dtype=np.int64),
                    placement.kind == "split", placement.read_unit_bytes, block, gap,
                    max_read or 0, ptr, n_layers, l, offset if write else none,
                    length if write else none, None if write else counts[:, l])
                continue
            tok, start, end = layout.read_ranges(l, ld, placement)
            layer_merge_kernel(np.ascontiguousarray(tok, dtype=np.int64),
                               np.ascontiguousarray(start, dtype=np.int64),
                               np.ascontiguousarray(end, dtype=np.int64), n_tokens, block, gap,
                               max_read or 0, ptr, n_layers, l, offset if write else none,
                               length if write else none, None if write else counts[:, l])
    return ptr, offset, length


def plan_from_ranges(layout: Layout, trace: ActivationTrace, placement: Placement,
                     tokens: np.ndarray, batch: np.ndarray, start_bytes: np.ndarray,
                     end_bytes: np.ndarray, neurons_loaded: np.ndarray,
                     resident_neurons: np.ndarray, moved_rows: np.ndarray,
                     computed_neurons: np.ndarray, *, which: str,
                     meta: dict[str, Any] | None = None) -> IOPlan:
    """IOPlan from raw byte ranges per batch (b = token * n_layers + layer), aligned + merged."""
    T, L = len(tokens), trace.geometry.n_layers
    ptr, offset, length = layout.merge_reads(batch, start_bytes, end_bytes, T * L, placement)
    return _make_plan(layout, trace, placement, tokens, ptr, offset, length, neurons_loaded,
                      resident_neurons, moved_rows, computed_neurons, which=which, meta=meta)


def _make_plan(layout: Layout, trace: ActivationTrace, placement: Placement,
               tokens: np.ndarray, ptr: np.ndarray, offset: np.ndarray, length: np.ndarray,
               neurons_loaded: np.ndarray, resident_neurons: np.ndarray,
               moved_rows: np.ndarray, computed_neurons: np.ndarray, *, which: str,
               meta: dict[str, Any] | None = None) -> IOPlan:
    """The validated IOPlan of merged reads and the per-(token, layer) DRAM counts."""
    g = trace.geometry
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
