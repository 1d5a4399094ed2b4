"""What form would a back-end warmth state take? A 1 MiB (and a 16 KiB) read at QD 1 timed
after four reads of its own size followed by small reads or by a pause (a busy spin),
interleaved over rounds, on the sparse store.

Usage: flock /tmp/flashsim-heavy.lock .venv/bin/python
experiments/validation/diagnostics/warmth.py [ROUNDS]. Answer (30 rounds, p50 µs; 1 MiB /
16 KiB): after four 1 MiB reads 359 / 85; then one 4 KiB read 361 / 89 (the warm size is
the largest recent read, not the last); then 8 4 KiB reads 367, 40 of them (5.5 ms) 397,
4 × 40 at QD 8 (2.9 ms) 371; after 10 × 40 4 KiB reads only (7 ms) 437 / 88; after a
0.3 / 1 / 3 / 10 ms pause 383 / 388 / 404 / 532 (16 KiB: 90 / 102 / 113 / 180). The warmth
fades over milliseconds whether the disk is idle or busy with small reads; the full cold
cost was ~80 µs a MiB one day and ~170 the day before (it drifts too). Simulated, such a
state moves the plans' predictions by under 1 %, so the model does not carry it (LOG.md).
"""
import sys
import time

import numpy as np
from diag import random_reads, times_after

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
read, rng = random_reads("sparse")


def spin(seconds: float) -> None:
    """A busy pause (a sleep's wake-up is too coarse for 0.3 ms)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def large_then(then):
    """Four reads of the timed chunk, then `then` (small reads or a pause)."""
    return lambda chunk: ([read(chunk, 1, 1) for _ in range(4)], then())


contexts = {
    "x4": large_then(lambda: None),
    "x4,4K": large_then(lambda: read(4096, 1, 1)),
    "x4,4Kx8": large_then(lambda: [read(4096, 1, 1) for _ in range(8)]),
    "x4,4Kx40": large_then(lambda: [read(4096, 1, 1) for _ in range(40)]),
    "x4,4Kx40qd8": large_then(lambda: [read(4096, 40, 8) for _ in range(4)]),
    "x4,p0.3ms": large_then(lambda: spin(0.0003)),
    "x4,p1ms": large_then(lambda: spin(0.001)),
    "x4,p3ms": large_then(lambda: spin(0.003)),
    "x4,p10ms": large_then(lambda: spin(0.010)),
    "4Kx40 only": lambda chunk: [read(4096, 40, 8) for _ in range(10)],
}
chunks = (16384, 1 << 20)
times = times_after(read, rng, contexts, chunks, rounds)
for chunk in chunks:
    for name in contexts:
        print(f"{chunk >> 10:5} KiB after {name:12} p50 {np.median(times[(chunk, name)]):6.0f} µs")
