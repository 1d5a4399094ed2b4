"""Block alignment and merging of byte ranges into reads, vectorised over all batches.

Every layout describes what it needs as byte ranges tagged with a batch (one batch per
(token, layer)); this turns them into the reads a direct-I/O runtime issues: ranges widened
to `block_bytes`, overlapping or touching ranges (or ones at most `gap_bytes` apart) of the
same batch merged, and runs longer than `max_read_bytes` cut into pieces.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def align_merge(batch: np.ndarray, start_bytes: np.ndarray, end_bytes: np.ndarray, *,
                n_batches: int, block_bytes: int, gap_bytes: int = 0,
                max_read_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch_ptr, offset_bytes, length_bytes) of the aligned, merged reads, sorted by offset.

    `batch`, `start_bytes`, `end_bytes` are parallel arrays of half-open ranges in any order.
    """
    if gap_bytes < 0:
        raise InputError(f"merge gap {gap_bytes} is negative", key="merge_gap_bytes",
                         expected="0 or more bytes")
    if max_read_bytes is not None and (max_read_bytes <= 0 or max_read_bytes % block_bytes):
        raise InputError(f"largest read {max_read_bytes} is not a positive multiple of the "
                         f"{block_bytes}-byte block", key="max_read_bytes")
    batch = np.asarray(batch, dtype=np.int64)
    start = (np.asarray(start_bytes, dtype=np.int64) // block_bytes) * block_bytes
    end = -(-np.asarray(end_bytes, dtype=np.int64) // block_bytes) * block_bytes
    ptr = np.zeros(n_batches + 1, dtype=np.int64)
    if len(batch) == 0:
        return ptr, np.zeros(0, np.int64), np.zeros(0, np.int64)
    # one key space for all batches: batch b owns [b * span, (b + 1) * span)
    span = int(end.max()) + gap_bytes + block_bytes
    key = batch * span + start
    order = np.argsort(key, kind="stable")
    key, key_end, b = key[order], (batch * span + end)[order], batch[order]
    run_max = np.maximum.accumulate(key_end)
    new_run = np.ones(len(key), dtype=bool)
    new_run[1:] = key[1:] > run_max[:-1] + gap_bytes
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], len(key)) - 1
    run_batch = b[first]
    offset = key[first] - run_batch * span
    length = run_max[last] - key[first]
    if max_read_bytes is not None:
        pieces = -(-length // max_read_bytes)
        if np.any(pieces > 1):
            idx = np.repeat(np.arange(len(offset)), pieces)
            within = np.arange(len(idx)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
            piece_off = offset[idx] + within * max_read_bytes
            length = np.minimum(max_read_bytes, offset[idx] + length[idx] - piece_off)
            offset, run_batch = piece_off, run_batch[idx]
    np.cumsum(np.bincount(run_batch, minlength=n_batches), out=ptr[1:])
    return ptr, offset, length
