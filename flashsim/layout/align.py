"""Block alignment and merging of byte ranges into reads, vectorised over all batches.

Every layout describes what it needs as byte ranges tagged with a batch (one batch per
(token, layer)); this turns them into the reads a direct-I/O runtime issues: ranges widened
to `block_bytes`, overlapping or touching ranges (or ones at most `gap_bytes` apart) of the
same batch merged, and runs longer than `max_read_bytes` cut into pieces.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..errors import InputError


def align_merge(batch: np.ndarray, start_bytes: np.ndarray, end_bytes: np.ndarray, *,
                n_batches: int, block_bytes: int, gap_bytes: int = 0,
                max_read_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch_ptr, offset_bytes, length_bytes) of the aligned, merged reads, sorted by offset.

    `batch`, `start_bytes`, `end_bytes` are parallel arrays of half-open ranges in any order.
    """
    check_merge(block_bytes, gap_bytes, max_read_bytes)
    return align_merge_kernel(np.ascontiguousarray(batch, dtype=np.int64),
                        np.ascontiguousarray(start_bytes, dtype=np.int64),
                        np.ascontiguousarray(end_bytes, dtype=np.int64), int(n_batches),
                        int(block_bytes), int(gap_bytes), int(max_read_bytes or 0))


@njit(cache=True)
def align_merge_kernel(batch, start_bytes, end_bytes, n_batches, block, gap, max_read):
    """Numba kernel of `align_merge` (max_read 0: no cut). One key space for all batches:
    batch b owns [b * span, (b + 1) * span), so one stable sort orders every batch's ranges
    (none where they come in order, as one batch's sorted ids do) and a run never crosses
    batches. Ranges are block-aligned as they are read."""
    n = len(batch)
    ptr = np.zeros(n_batches + 1, np.int64)
    if n == 0:
        return ptr, np.zeros(0, np.int64), np.zeros(0, np.int64)
    span = 0
    for i in range(n):
        span = max(span, -(-end_bytes[i] // block) * block)
    span += gap + block
    key = np.empty(n, np.int64)
    in_order = True
    for i in range(n):
        key[i] = batch[i] * span + (start_bytes[i] // block) * block
        in_order = in_order and (i == 0 or key[i] >= key[i - 1])
    order = np.empty(0, np.int64) if in_order else np.argsort(key, kind="mergesort")
    run_key = np.empty(n, np.int64)
    run_end = np.empty(n, np.int64)
    run_batch = np.empty(n, np.int64)
    m = -1
    for j in range(n):
        i = j if in_order else order[j]
        k, k_end = key[i], batch[i] * span - (-end_bytes[i] // block) * block
        if m < 0 or k > run_end[m] + gap:
            m += 1
            run_key[m], run_end[m], run_batch[m] = k, k_end, batch[i]
        elif k_end > run_end[m]:
            run_end[m] = k_end
    m += 1
    total = m
    if max_read > 0:
        total = 0
        for r in range(m):
            total += -(-(run_end[r] - run_key[r]) // max_read)
    offset = np.empty(total, np.int64)
    length = np.empty(total, np.int64)
    j = 0
    for r in range(m):
        lo, hi = run_key[r] - run_batch[r] * span, run_end[r] - run_batch[r] * span
        pieces = 1 if max_read == 0 else -(-(hi - lo) // max_read)
        for p in range(pieces):
            a = lo + p * max_read
            offset[j], length[j] = a, (hi - lo if max_read == 0 else min(max_read, hi - a))
            j += 1
        ptr[run_batch[r] + 1] += pieces
    for b in range(n_batches):
        ptr[b + 1] += ptr[b]
    return ptr, offset, length


def check_merge(block_bytes: int, gap_bytes: int, max_read_bytes: int | None) -> None:
    """InputError on a negative merge gap or a largest read that is not a block multiple."""
    if gap_bytes < 0:
        raise InputError(f"merge gap {gap_bytes} is negative", key="merge_gap_bytes",
                         expected="0 or more bytes")
    if max_read_bytes is not None and (max_read_bytes <= 0 or max_read_bytes % block_bytes):
        raise InputError(f"largest read {max_read_bytes} is not a positive multiple of the "
                         f"{block_bytes}-byte block", key="max_read_bytes")


@njit(cache=True, _nrt=False)
def _merge_runs(ks, ke, lo, hi, gap, max_read, offset, length, w, write):
    """The reads of one batch's aligned ranges ks[lo:hi], ke[lo:hi] (sorted by start): runs
    merged where at most `gap` apart, cut at max_read (0: no cut); written from offset[w] on
    when `write`; returns their number. (No reference counting: called once per batch, it
    allocates nothing, and counting the references of its arrays cost more than the merge.)"""
    m = 0
    j = lo
    while j < hi:
        a, e = ks[j], ke[j]
        j += 1
        while j < hi and ks[j] <= e + gap:  # the same run
            if ke[j] > e:
                e = ke[j]
            j += 1
        pieces = 1 if max_read == 0 or e - a <= max_read else -(-(e - a) // max_read)
        if write:
            for p in range(pieces):
                q = a + p * max_read
                offset[w + m + p] = q
                length[w + m + p] = e - a if max_read == 0 else min(max_read, e - q)
        m += pieces
    return m


@njit(cache=True)
def _sort_ranges(ks, ke, lo, hi):
    """A stable sort of ranges lo:hi by aligned start, unless they are in order already."""
    for j in range(lo + 1, hi):
        if ks[j] < ks[j - 1]:  # out of order: a stable sort of these ranges
            o = np.argsort(ks[lo:hi], kind="mergesort")
            ks[lo:hi], ke[lo:hi] = ks[lo:hi][o], ke[lo:hi][o]
            return


@njit(cache=True)
def layer_merge_kernel(tok, start_bytes, end_bytes, n_tokens, block, gap, max_read, ptr, stride,
                       col, offset, length, counts):
    """`align_merge_kernel` for one layer's ranges, batch b = token * stride + col: the same
    reads (sorted by aligned start per batch, runs merged, cut at max_read; 0: no cut),
    without a sort over all batches (ranges are bucketed by token, each token's few sorted
    only when out of order). counts None: count each token's reads into counts[token];
    else write them to offset/length from ptr[b] on."""
    n = len(tok)
    head = np.zeros(n_tokens + 1, np.int64)
    for i in range(n):
        head[tok[i] + 1] += 1
    for t in range(n_tokens):
        head[t + 1] += head[t]
    fill = head[:-1].copy()
    ks = np.empty(n, np.int64)  # aligned starts and ends, bucketed by token
    ke = np.empty(n, np.int64)
    for i in range(n):
        j = fill[tok[i]]
        fill[tok[i]] += 1
        ks[j] = (start_bytes[i] // block) * block
        ke[j] = -(-end_bytes[i] // block) * block
    for t in range(n_tokens):
        lo, hi = head[t], head[t + 1]
        _sort_ranges(ks, ke, lo, hi)
        w = 0 if counts is not None else ptr[t * stride + col]
        m = _merge_runs(ks, ke, lo, hi, gap, max_read, offset, length, w, counts is None)
        if counts is not None:
            counts[t] = m


@njit(cache=True)
def records_merge_kernel(set_ptr, ids, fc1_offset, fc2_offset, split, unit_bytes, block, gap,
                         max_read, ptr, stride, col, offset, length, counts):
    """`layer_merge_kernel` of one layer whose ranges are its loads' own records (each id's
    `unit_bytes` at fc1_offset[id], and at fc2_offset[id] when `split`), straight from the
    loads' CSR sets: each token's ranges (fc1 then fc2, as `unit_ranges` lists them) are
    made, aligned and merged in a scratch the size of one token's, so no layer-sized range
    arrays are made. The same reads, in the same order; `block` is a power of two."""
    n_tokens = len(set_ptr) - 1
    widest = 0
    for t in range(n_tokens):
        widest = max(widest, set_ptr[t + 1] - set_ptr[t])
    per = 2 if split else 1
    ks = np.empty(per * widest, np.int64)  # one token's aligned starts and ends
    ke = np.empty(per * widest, np.int64)
    down = -block  # (x // block) * block for x ≥ 0
    for t in range(n_tokens):
        m = 0
        for half in range(per):
            where = fc1_offset if half == 0 else fc2_offset
            for j in range(set_ptr[t], set_ptr[t + 1]):
                s = where[ids[j]]
                ks[m] = s & down
                ke[m] = (s + unit_bytes + block - 1) & down
                m += 1
        _sort_ranges(ks, ke, 0, m)
        w = 0 if counts is not None else ptr[t * stride + col]
        n = _merge_runs(ks, ke, 0, m, gap, max_read, offset, length, w, counts is None)
        if counts is not None:
            counts[t] = n
