"""Memcpy bandwidth of this machine for DRAM-matrix row moves, measured once per process.

The paper's memory management copies whole rows ([fc1 row | fc2 col], `record_bytes`
each) inside a preallocated matrix: deleted rows are overwritten by the last rows and new
rows appended. This times exactly that with numpy: scattered row copies of the right size
within a matrix larger than the last-level cache.
"""

from __future__ import annotations

import functools
import time

import numpy as np

MATRIX_BYTES = 64 << 20  # bigger than any LLC here: copies go to DRAM
ROWS_PER_COPY = 256
REPEATS = 30


@functools.cache
def measure_memcpy_bytes_per_s(record_bytes: int, seed: int = 0) -> float:
    """Bytes/s of numpy row copies of `record_bytes` rows (median of repeated trials; cached)."""
    width = max(record_bytes // 4, 1)
    n_rows = max(MATRIX_BYTES // (width * 4), 2 * ROWS_PER_COPY)
    matrix = np.ones((n_rows, width), dtype=np.float32)
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(REPEATS):
        src = rng.choice(n_rows, ROWS_PER_COPY, replace=False)
        dst = rng.choice(n_rows, ROWS_PER_COPY, replace=False)
        t0 = time.perf_counter()
        matrix[dst] = matrix[src]
        elapsed = time.perf_counter() - t0
        rates.append(ROWS_PER_COPY * width * 4 / max(elapsed, 1e-9))
    return float(np.median(rates))
