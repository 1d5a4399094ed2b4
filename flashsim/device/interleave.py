"""What a batch of reads costs more when the CPU computed just before it, as in a decode.

A decode reads layer l's rows, computes layer l, then reads layer l + 1's: every batch comes
after a few hundred µs of matrix work that has refilled the core's caches and TLB with
weights. The read path (the reader's checks, io_submit, the block layer, the completion
interrupt, the wake-up of the waiting thread) then runs cold, and on a virtual machine the
host's side of the queue may have gone idle too. Measured on the virtio disk of this VM:
the same short batches take 59-75 µs longer after 400 µs of single-thread matvec over
4 MiB than back to back, about the same at QD 1, 8 and 32 — a per-batch cost, not a
per-read one — and ~155 µs after a 32 MiB matvec: it grows with what the compute touches.

`flashsim calibrate` measures it beside the short-batch points (`measure_interleave`):
the same batches, alternately back to back and after a fixed compute gap, in one loop, so
that the disk's drift falls on both alike; the profile keeps the median difference. The
cost model adds it to every non-empty batch of a decode (`simulate`, `advise`, end-to-end
validation), and not to `validate`'s replay, which reads its batches back to back.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..io.reader import DirectReader

INTERLEAVE_POINTS = ((16384, 1, 4), (16384, 8, 16), (16384, 32, 16), (65536, 1, 4),
                     (65536, 8, 16), (65536, 32, 16))
"""(chunk, QD, reads per batch) measured: a decode's layer batches are a few to tens of
reads of 4-64 KiB at the queue depths users pick."""
GAP_US = 400.0
"""The compute between two batches: a small model's layer (opt-mini: 0.37-0.46 ms measured
between a decode's batches)."""
WORK_MATRIX = (1024, 1024)
"""fp32 matvec over 4 MiB — more than a core's L2, as a layer's weights are."""


def _compute_gap(matrix: np.ndarray, vector: np.ndarray, gap_s: float) -> None:
    """Matrix-vector products until `gap_s` has passed (one BLAS thread: a decode's)."""
    end = time.perf_counter() + gap_s
    while time.perf_counter() < end:
        matrix @ vector


def measure_interleave_point(reader: DirectReader, chunk: int, qd: int, batch_reads: int, *,
                             batches: int, rng: np.random.Generator, gap_us: float = GAP_US
                             ) -> dict[str, float]:
    """Median wall time (µs) of `read_batch` back to back and after a compute gap, the two
    kinds alternating in one loop over `batches` random batches."""
    from threadpoolctl import threadpool_limits
    slots = reader.file_bytes // chunk
    off = rng.integers(0, max(slots, 1), size=(batches, batch_reads), dtype=np.int64) * chunk
    length = np.full(batch_reads, chunk, dtype=np.int64)
    matrix = rng.standard_normal(WORK_MATRIX).astype(np.float32)
    vector = np.ones(WORK_MATRIX[1], np.float32)
    times: tuple[list[float], list[float]] = ([], [])
    with threadpool_limits(limits=1, user_api="blas"):
        for b in range(batches):
            after_work = b % 2
            if after_work:
                _compute_gap(matrix, vector, gap_us * 1e-6)
            t0 = time.perf_counter()
            reader.read_batch(off[b], length, qd)
            times[after_work].append(time.perf_counter() - t0)
    back, after = (float(np.median(t)) * 1e6 for t in times)
    return {"chunk_bytes": chunk, "queue_depth": qd, "batch_reads": batch_reads,
            "back_to_back_us": round(back, 2), "after_compute_us": round(after, 2),
            "overhead_us": round(after - back, 2)}


def measure_interleave(reader: DirectReader, rng: np.random.Generator, *,
                       batches: int = 400, gap_us: float = GAP_US) -> dict[str, Any]:
    """The profile's `interleave` section: every point of INTERLEAVE_POINTS measured (chunks
    that fit the file) and the median per-batch overhead over them."""
    points = [measure_interleave_point(reader, c, q, n, batches=batches, rng=rng,
                                       gap_us=gap_us)
              for c, q, n in INTERLEAVE_POINTS if reader.file_bytes >= c * n]
    overhead = float(np.median([p["overhead_us"] for p in points])) if points else 0.0
    return {"batch_overhead_us": round(max(overhead, 0.0), 2), "gap_us": gap_us,
            "work": f"fp32 matvec {WORK_MATRIX[0]}x{WORK_MATRIX[1]}, one BLAS thread",
            "points": points}


def batch_overhead_s(profile: Any) -> float:
    """Seconds a decode's batch pays beyond a back-to-back one, from a profile's
    `interleave` section (0 for bare parameters or a profile measured without it)."""
    section = getattr(profile, "interleave", None)
    return 0.0 if section is None else float(section.batch_overhead_us) * 1e-6
