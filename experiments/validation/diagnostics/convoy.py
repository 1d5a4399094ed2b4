"""Do the disk's completions come one by one or in groups? Steady random 4 KiB reads at
QD 1-32 on the sparse store with the native-AIO reader, against the device model fitted in a
validate --json output (default: the committed ../results.json).

A read's finish time is when the reader reaped it; io_getevents returns as soon as one read
is done, so reads that share a finish time were completed by the disk together. Per QD:
time per read, the share of completion gaps under 3 µs (1 − 1 / the mean group size) and
the median latency, measured and modelled.

Usage: flock /tmp/flashsim-heavy.lock .venv/bin/python
experiments/validation/diagnostics/convoy.py [RESULTS.json]. Answer, with the committed fit
(QD 1 / 2 / 4 / 8 / 32): measured 52.9 / 35.3 / 29.1 / 17.8 / 12.6 µs a read, gaps under
3 µs 0.00 / 0.50 / 0.75 / 0.87 / 0.97, so the reads of a full queue complete together
(groups of about QD reads); model 68.5 / 38.5 / 22.9 / 18.8 / 12.9 µs a read, no gaps under
3 µs (a pass's reads are done together, but the model reaps them one by one, 4 µs each).
The measurement before the link served in passes, and its model: LOG.md.
"""
import json
import sys
from pathlib import Path

import numpy as np
from diag import random_reads

from flashsim.device import make_device
from flashsim.device.profile import DeviceParams

COMMITTED = Path(__file__).resolve().parents[1] / "results.json"
results = Path(sys.argv[1]) if len(sys.argv) > 1 else COMMITTED
device = make_device(DeviceParams(**json.loads(results.read_text())["profile"]["params"]))
read, rng = random_reads("sparse")


def describe(start_s: np.ndarray, finish_s: np.ndarray) -> str:
    f = np.sort(finish_s)[200:-200]
    gaps_us = np.diff(f) * 1e6
    return (f"{np.mean(gaps_us):5.1f} µs a read, gaps < 3 µs {np.mean(gaps_us < 3):.2f}, "
            f"latency p50 {np.median(finish_s - start_s) * 1e6:6.1f} µs")


for qd in (1, 2, 4, 8, 32):
    real = read(4096, 4000, qd)
    model = device.run(rng.integers(0, 1 << 18, 4000) * 4096, np.full(4000, 4096), qd)
    print(f"QD {qd:2}  measured: {describe(real.start_s, real.finish_s)}   "
          f"model: {describe(model.start_s, model.finish_s)}")
