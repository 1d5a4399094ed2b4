"""The runtime's memory management (paper §3.3) as one piece of code: decide, derive, store.

Per (token, layer) the flash runtime runs `DramManager.prepare` (the layout's `Residency`
decides which neurons to read and which rows leave; `Layout.batch_reads` derives the
reads), reads, then `DramManager.store` (fp16 record bytes → fp32 rows, written straight
into the layer's preallocated matrix after the leaving rows are overwritten by the last
ones). The cost model times exactly this code (`flashsim.cost.memory`), with the read
replaced by a buffer of the right length, so the memory time it predicts is the runtime's.
"""

from __future__ import annotations

import numpy as np

from ..geometry import ModelGeometry
from .base import Layout
from .window import WindowStep

_NO_READS = np.zeros(0, np.int64)


def locate(read_off: np.ndarray, read_len: np.ndarray, want: np.ndarray,
           nbytes: int) -> np.ndarray:
    """Position in the concatenated read data of each byte range [want, want + nbytes), or -1."""
    if len(read_off) == 0:
        return np.full(len(want), -1, np.int64)
    base = np.cumsum(read_len) - read_len
    r = np.searchsorted(read_off, want, side="right") - 1
    rc = np.clip(r, 0, None)
    ok = (r >= 0) & (want + nbytes <= read_off[rc] + read_len[rc])
    return np.where(ok, base[rc] + want - read_off[rc], -1)


def row_view(data: np.ndarray, dtype: np.dtype, d_model: int) -> np.ndarray:
    """Every run of `d_model` elements of the read bytes as a row (a strided view, no copy):
    row p starts at element p, so a row that sits at byte b is row b // itemsize."""
    item = dtype.itemsize
    n = len(data) // item
    if n < d_model:
        return np.zeros((0, d_model), dtype)
    return np.ndarray((n - d_model + 1, d_model), dtype, buffer=data, strides=(item, item))


class DramMatrix:
    """One layer's preallocated DRAM matrix of [fc1 row | fc2 col] rows (fp32).

    Which row holds which neuron is the residency's (`Residency.rows_of`); this copies the
    rows as each `WindowStep` says: deletion by overwrite, then the new rows appended.
    """

    def __init__(self, capacity: int, d_model: int) -> None:
        self.data = np.zeros((capacity, 2 * d_model), np.float32)
        self.d_model = d_model

    def evict(self, step: WindowStep) -> None:
        """Overwrite the holes with the surviving tail rows (holes lie below every source)."""
        moves = step.evict
        if len(moves.dst_rows):
            self.data[moves.dst_rows] = self.data[moves.src_rows]

    def apply(self, step: WindowStep, new_rows: np.ndarray) -> None:
        """Overwrite the holes with the surviving tail rows, then append `new_rows`."""
        self.evict(step)
        self.data[step.first_new_row:step.first_new_row + len(step.new)] = new_rows

    def append_from(self, step: WindowStep, rows: np.ndarray, fc1_at: np.ndarray,
                    fc2_at: np.ndarray) -> None:
        """Append the new neurons' rows taken from `rows` (a `row_view`), cast to fp32."""
        lo, hi, d = step.first_new_row, step.first_new_row + len(step.new), self.d_model
        self.data[lo:hi, :d] = rows[fc1_at]
        self.data[lo:hi, d:] = rows[fc2_at]


class DramManager:
    """All layers' residency, read derivation and DRAM matrices for one layout."""

    def __init__(self, layout: Layout, geometry: ModelGeometry, dtype: np.dtype) -> None:
        self.layout = layout
        self.geometry = geometry
        self.dtype = np.dtype(dtype)
        self.placement = layout.placement(geometry)
        self.residency = layout.residency(geometry)
        self.matrices = [DramMatrix(geometry.d_ffn, geometry.d_model)
                         for _ in range(geometry.n_layers)]
        self.copies = self.placement.copies()  # friend copies (closest-friend placements)

    def prepare(self, token: int, layer: int, ids: np.ndarray
                ) -> tuple[WindowStep, np.ndarray, np.ndarray]:
        """The residency's step for `ids` and the (offsets, lengths) of the reads it needs."""
        step = self.residency.step(token, layer, ids)
        if len(step.new) == 0:  # nothing to read (the plan's batch is empty too)
            return step, _NO_READS, _NO_READS
        off, length = self.layout.batch_reads(layer, step.new, self.placement)
        return step, off, length

    def store(self, layer: int, step: WindowStep, off: np.ndarray, length: np.ndarray,
              data: np.ndarray) -> None:
        """Leaving rows overwritten, then the new neurons' rows decoded from the read bytes."""
        matrix = self.matrices[layer]
        matrix.evict(step)
        if len(step.new) == 0:
            return
        fc1_at, fc2_at = self._positions(layer, step.new, off, length)
        item = self.dtype.itemsize
        rows = row_view(data, self.dtype, self.geometry.d_model)
        matrix.append_from(step, rows, fc1_at // item, fc2_at // item)

    def rows(self, layer: int, ids: np.ndarray) -> np.ndarray:
        """The [fc1 row | fc2 col] rows of resident `ids` (a gathered copy)."""
        return self.matrices[layer].data[self.residency.rows_of(layer, ids)]

    def _positions(self, layer: int, new: np.ndarray, off: np.ndarray, length: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Byte positions in the read data of each new neuron's fc1 row and fc2 column."""
        p, row, n = self.placement, self.geometry.row_bytes, len(new)
        want = np.concatenate([p.fc1_offset_bytes[layer, new], p.fc2_offset_bytes[layer, new]])
        at = locate(off, length, want, row)
        fc1_at, fc2_at = at[:n], at[n:]
        missing = np.flatnonzero((fc1_at < 0) | (fc2_at < 0))
        if len(missing):  # closest-friend placements: the neuron came as a friend copy
            fc1_at[missing], fc2_at[missing] = self._friend_copies(layer, new[missing], off,
                                                                    length)
        return fc1_at, fc2_at

    def _friend_copies(self, layer: int, ids: np.ndarray, off: np.ndarray, length: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the read data of the fc1 row and fc2 column of `ids`, taken from the
        first record read that carries each as its friend copy."""
        c_layer, c_neuron, c_fc1, c_fc2 = self.copies
        sel = c_layer == layer
        row = self.geometry.row_bytes
        a1 = locate(off, length, c_fc1[sel], row)
        a2 = locate(off, length, c_fc2[sel], row)
        ok = np.flatnonzero((a1 >= 0) & (a2 >= 0))
        carried, first = np.unique(c_neuron[sel][ok], return_index=True)  # lowest record
        at = np.searchsorted(carried, ids)
        found = at < len(carried)
        found[found] = carried[at[found]] == ids[found]
        if not found.all():
            raise RuntimeError(f"neuron {ids[~found][0]} of layer {layer} is not in the reads")
        pick = ok[first[at]]
        return a1[pick], a2[pick]
