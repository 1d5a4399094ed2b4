"""The runtime's memory management (paper §3.3) as one piece of code: decide, derive, store.

Per (token, layer) the flash runtime runs `DramManager.prepare` (the layout's `Residency`
decides which neurons to read and which rows leave; `Layout.batch_reads` derives the
reads), reads, then `DramManager.store` (fp16 record bytes → fp32 rows, written straight
into the layer's preallocated matrix after the leaving rows are overwritten by the last
ones). The cost model times exactly this code (`flashsim.cost.memory`), with the read
replaced by a buffer of the right length, so the memory time it predicts is the runtime's.

No per-neuron Python work: each of the two is one numba kernel call (the window step, the
read derivation — the plan's own kernels — the row moves, locating the records and the
decode), so a layer's memory management costs a few calls however many neurons it moves.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from ..geometry import ModelGeometry
from .base import Layout, unit_batch_reads, unit_batch_reads_kernel, unit_read_args
from .window import RowMoves, WindowStep, window_step_kernel

_NO_READS = np.zeros(0, np.int64)


@njit(cache=True)
def locate(read_off, read_len, want, nbytes):
    """Numba kernel: position in the concatenated read data of each byte range
    [want, want + nbytes), or -1 (reads sorted by offset)."""
    at = np.full(len(want), -1, np.int64)
    if len(read_off) == 0:
        return at
    base = np.cumsum(read_len) - read_len
    for i in range(len(want)):
        r = np.searchsorted(read_off, want[i], side="right") - 1
        if r >= 0 and want[i] + nbytes <= read_off[r] + read_len[r]:
            at[i] = base[r] + want[i] - read_off[r]
    return at


@njit(cache=True)
def _move_rows(matrix, dst, src):
    """Numba kernel: deletion by overwrite, row dst[i] gets row src[i] (in order)."""
    for i in range(len(dst)):
        matrix[dst[i]] = matrix[src[i]]


@njit(cache=True)
def _decode_half(matrix, bits, first, data, fc1_at, fc2_at):
    """Numba kernel: row first + j = [fc1 | fc2] of the fp16 words at fc1_at[j], fc2_at[j]
    (word positions in `data`), as fp32; `bits` is `matrix` viewed as uint32.

    Exact and without a table (three vectorised passes over each half row): the half's
    exponent and mantissa shifted into place read as a float 2^-112 times the value,
    subnormals included; one multiply by 2^112 rescales it; an exponent of 2^16 or more
    was infinity or NaN (all-ones exponent); the sign goes on last.
    """
    d = matrix.shape[1] // 2
    scale = np.float32(2.0 ** 112)
    for j in range(len(fc1_at)):
        for half in range(2):
            at = fc1_at[j] if half == 0 else fc2_at[j]
            src = data[at:at + d]
            out_bits = bits[first + j, half * d:(half + 1) * d]
            out = matrix[first + j, half * d:(half + 1) * d]
            for c in range(d):
                out_bits[c] = np.uint32(src[c] & 0x7FFF) << np.uint32(13)
            for c in range(d):
                out[c] *= scale
            for c in range(d):
                v = out_bits[c]
                if v >= np.uint32(0x47800000):  # 65536.0: the half was inf or NaN
                    v |= np.uint32(0x7F800000)
                out_bits[c] = v | (np.uint32(src[c] & 0x8000) << np.uint32(16))


@functools.cache
def check_half_decode() -> None:
    """RuntimeError unless `_decode_half` turns every fp16 pattern into numpy's fp32 (it
    rescales subnormals with a float multiply: a library that set flush-to-zero would break
    it)."""
    halves = np.arange(1 << 16, dtype=np.uint16)
    rows = np.zeros((1, 2 << 16), np.float32)
    at = np.zeros(1, np.int64)
    _decode_half(rows, rows.view(np.uint32), 0, halves, at, at)
    want = halves.view(np.float16).astype(np.float32).view(np.uint32)
    bad = np.flatnonzero(rows.view(np.uint32)[0, :1 << 16] != want)
    if len(bad):
        raise RuntimeError(f"fp16 decode differs from numpy for {len(bad)} patterns (first "
                           f"{bad[0]:#06x}): is flush-to-zero / denormals-are-zero set?")


@njit(cache=True)
def _copy_rows(matrix, first, data, fc1_at, fc2_at):
    """Numba kernel: `_decode_half` for fp32 records (a plain copy)."""
    d = matrix.shape[1] // 2
    for j in range(len(fc1_at)):
        matrix[first + j, :d] = data[fc1_at[j]:fc1_at[j] + d]
        matrix[first + j, d:] = data[fc2_at[j]:fc2_at[j] + d]


@njit(cache=True)
def _prepare(table, n_used, k_prev, t, window, ids, offsets, params, buf):
    """Numba kernel of `DramManager.prepare` without a budget: the window step
    (`window_step_kernel` on `LayerWindow.table`), then the new neurons' reads
    (`unit_batch_reads_kernel`). `buf` (5 len(ids) + 2 n_used) gets new neurons | read
    offsets | read lengths | rows overwritten | their sources. Returns (new neurons, row
    moves, first new row, rows used, k_t, reads)."""
    n = len(ids)
    n_new, n_moves, first, n_used, k = window_step_kernel(
        table[0], table[1], table[2], n_used, k_prev, t, ids, window, False, 0, buf[:n],
        buf[5 * n:5 * n + n_used], buf[5 * n + n_used:])
    n_reads = 0
    if n_new:
        n_reads = unit_batch_reads_kernel(buf[:n_new], offsets, params, buf[n:3 * n],
                                          buf[3 * n:5 * n])
    return n_new, n_moves, first, n_used, k, n_reads


@njit(cache=True)
def _store(matrix, dst, src, first, new, offsets, off, length, words, row_bytes):
    """Numba kernel of `DramManager.store` for fp16 records: leaving rows overwritten,
    then the new neurons' rows decoded from the read words. Returns False, leaving the new
    rows to the caller, when a record was not read at its own place (a friend copy)."""
    _move_rows(matrix, dst, src)
    n = len(new)
    at = np.empty(2 * n, np.int64)  # word positions of the fc1 rows, then the fc2 columns
    base = np.cumsum(length) - length
    for j in range(2 * n):
        want = offsets[j // n, new[j % n]]
        r = np.searchsorted(off, want, side="right") - 1
        if r < 0 or want + row_bytes > off[r] + length[r]:
            return False
        at[j] = (base[r] + want - off[r]) // 2
    _decode_half(matrix, matrix.view(np.uint32), first, words, at[:n], at[n:])
    return True


class DramMatrix:
    """One layer's preallocated DRAM matrix of [fc1 row | fc2 col] rows (fp32).

    Which row holds which neuron is the residency's (`Residency.rows_of`); this copies the
    rows as each `WindowStep` says: deletion by overwrite, then the new rows appended.
    """

    def __init__(self, capacity: int, d_model: int) -> None:
        self.data = np.zeros((capacity, 2 * d_model), np.float32)
        self.bits = self.data.view(np.uint32)  # the same rows as bit patterns (the decode)
        self.d_model = d_model

    def apply(self, step: WindowStep, new_rows: np.ndarray) -> None:
        """Overwrite the holes with the surviving tail rows, then append `new_rows`."""
        _move_rows(self.data, step.evict.dst_rows, step.evict.src_rows)
        self.data[step.first_new_row:step.first_new_row + len(step.new)] = new_rows


class DramManager:
    """All layers' residency, read derivation and DRAM matrices for one layout.

    Per (token, layer), whatever the number of neurons: `prepare` is one kernel call (the
    window step, then the read derivation: the plan's kernels) where no DRAM budget couples
    the layers and each neuron's own records are read; `store` is one kernel call (row
    moves, locating the records in the read data, fp16 -> fp32 into the preallocated rows).
    """

    def __init__(self, layout: Layout, geometry: ModelGeometry, dtype: np.dtype) -> None:
        self.layout = layout
        self.geometry = geometry
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32):
            raise ValueError(f"records of {self.dtype} are neither fp16 nor fp32")
        self.placement = layout.placement(geometry)
        self.residency = layout.residency(geometry)
        self.matrices = [DramMatrix(geometry.d_ffn, geometry.d_model)
                         for _ in range(geometry.n_layers)]
        self.copies = self.placement.copies()  # friend copies (closest-friend placements)
        self._half = self.dtype == np.float16
        if self._half:
            check_half_decode()
        self._word = np.uint16 if self._half else np.float32
        # one kernel call per prepare where no budget couples the layers and each neuron's
        # own records are read
        self._fused = (self.residency.budget_rows is None
                       and layout.reads_own_records(self.placement))
        self._read_args = [unit_read_args(layout, l, self.placement)
                           for l in range(geometry.n_layers)] if self._fused else []
        self._offsets = [np.stack([self.placement.fc1_offset_bytes[l],
                                   self.placement.fc2_offset_bytes[l]])
                         for l in range(geometry.n_layers)]  # [fc1; fc2] per layer

    def prepare(self, token: int, layer: int, ids: np.ndarray
                ) -> tuple[WindowStep, np.ndarray, np.ndarray]:
        """The residency's step for `ids` and the (offsets, lengths) of the reads it needs."""
        if self._fused:
            return self._prepare_fused(token, layer, ids)
        step = self.residency.step(token, layer, ids)
        if len(step.new) == 0:  # nothing to read (the plan's batch is empty too)
            return step, _NO_READS, _NO_READS
        off, length = self.layout.batch_reads(layer, step.new, self.placement)
        return step, off, length

    def _prepare_fused(self, token: int, layer: int, ids: np.ndarray
                       ) -> tuple[WindowStep, np.ndarray, np.ndarray]:
        """`prepare` as one `_prepare` call: `LayerWindow.step`'s kernel, then the layout's
        `unit_batch_reads` kernel on the new neurons (the plan's derivation, both)."""
        w = self.residency.layers[layer]
        ids = np.asarray(ids, dtype=np.int64)
        n, held = len(ids), w.n_used
        buf = np.empty(5 * n + 2 * held, np.int64)  # new | reads (offsets, lengths) | moves
        n_new, m, first, w.n_used, w.k_prev, n_reads = _prepare(
            w.table, held, w.k_prev, token, w.window or 0, ids, *self._read_args[layer], buf)
        w.last_t = token
        at = 5 * n + held
        step = WindowStep(buf[:n_new], RowMoves(buf[5 * n:5 * n + m], buf[at:at + m]), first,
                          w.k_prev)
        if n_reads > 2 * n:  # `max_read_bytes` cut the runs into more pieces than ranges
            return step, *unit_batch_reads(self.layout, layer, step.new, self.placement)
        return step, buf[n:n + n_reads], buf[3 * n:3 * n + n_reads]

    def store(self, layer: int, step: WindowStep, off: np.ndarray, length: np.ndarray,
              data: np.ndarray) -> None:
        """Leaving rows overwritten, then the new neurons' rows decoded from the read bytes."""
        m = self.matrices[layer]
        words = data.view(self._word)  # the read bytes as fp16 bits (or fp32 values)
        if self._half and _store(m.data, step.evict.dst_rows, step.evict.src_rows,
                                 step.first_new_row, step.new, self._offsets[layer], off,
                                 length, words, self.geometry.row_bytes):
            return
        if not self._half:
            _move_rows(m.data, step.evict.dst_rows, step.evict.src_rows)
        if len(step.new):
            self._store_rows(layer, step, off, length, words)

    def _store_rows(self, layer: int, step: WindowStep, off: np.ndarray, length: np.ndarray,
                    words: np.ndarray) -> None:
        """The new rows where `_store` does not decode them: fp32 records, friend copies."""
        p, m, new = self.placement, self.matrices[layer], step.new
        row = self.geometry.row_bytes
        fc1_at = locate(off, length, p.fc1_offset_bytes[layer, new], row)
        fc2_at = locate(off, length, p.fc2_offset_bytes[layer, new], row)
        missing = np.flatnonzero((fc1_at < 0) | (fc2_at < 0))
        if len(missing):  # closest-friend placements: the neuron came as a friend copy
            fc1_at[missing], fc2_at[missing] = self._friend_copies(layer, new[missing], off,
                                                                    length)
        item = self.dtype.itemsize
        if self._half:
            _decode_half(m.data, m.bits, step.first_new_row, words, fc1_at // item,
                         fc2_at // item)
        else:
            _copy_rows(m.data, step.first_new_row, words, fc1_at // item, fc2_at // item)

    def rows(self, layer: int, ids: np.ndarray) -> np.ndarray:
        """The [fc1 row | fc2 col] rows of resident `ids` (a gathered copy)."""
        return self.matrices[layer].data[self.residency.rows_of(layer, ids)]

    def _friend_copies(self, layer: int, ids: np.ndarray, off: np.ndarray, length: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the read data of the fc1 row and fc2 column of `ids`, taken from the
        first record read that carries each as its friend copy."""
        c_layer, c_neuron, c_fc1, c_fc2 = self.copies
        sel = c_layer == layer
        row = self.geometry.row_bytes
        a1 = locate(off, length, np.ascontiguousarray(c_fc1[sel]), row)
        a2 = locate(off, length, np.ascontiguousarray(c_fc2[sel]), row)
        ok = np.flatnonzero((a1 >= 0) & (a2 >= 0))
        carried, first = np.unique(c_neuron[sel][ok], return_index=True)  # lowest record
        at = np.searchsorted(carried, ids)
        found = at < len(carried)
        found[found] = carried[at[found]] == ids[found]
        if not found.all():
            raise RuntimeError(f"neuron {ids[~found][0]} of layer {layer} is not in the reads")
        pick = ok[first[at]]
        return a1[pick], a2[pick]
