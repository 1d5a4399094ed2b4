"""Does a read's time depend on what the disk did just before it? One read of each chunk
size (QD 1) timed after different contexts, interleaved over rounds, on the sparse store.

Usage: flock /tmp/flashsim-heavy.lock .venv/bin/python
experiments/validation/diagnostics/history.py [ROUNDS]. Answer (30 rounds, µs, p50): 1 MiB
took 401 after four 1 MiB reads, 426 after 1 MiB reads back to back, 524 after 256 KiB
reads, 575 after small 4 KiB batches and 815 after 20 ms idle; 256 KiB 170 / 172 / 197 /
209 / 399; 16 KiB 96-102 after any reads and 300 after idle. The device model has no such
state; simulated, it moves the plans' predictions by under 1 % (LOG.md).
"""
import sys
import time

import numpy as np
from diag import random_reads, times_after

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
read, rng = random_reads("sparse")
contexts = {
    "after 1 MiB x4": lambda chunk: [read(1 << 20, 1, 1) for _ in range(4)],
    "after same chunk x40": lambda chunk: [read(chunk, 8, 1) for _ in range(5)],
    "after 256 KiB x16": lambda chunk: [read(262144, 8, 8) for _ in range(2)],
    "after 4 KiB 10x40": lambda chunk: [read(4096, 40, 8) for _ in range(10)],
    "after 20 ms idle": lambda chunk: time.sleep(0.02),
}
chunks = (16384, 65536, 262144, 1 << 20)
times = times_after(read, rng, contexts, chunks, rounds)
print("chunk   " + "".join(f"{name:>22}" for name in contexts))
for chunk in chunks:
    print(f"{chunk >> 10:5} K " + "".join(f"{np.median(times[(chunk, n)]):20.0f}us"
                                         for n in contexts))
