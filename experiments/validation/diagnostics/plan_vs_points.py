"""Plan batches vs calibration-style batches (4 and 16 KiB, 16 and 64 reads, random and
clustered) at one QD, interleaved over 4 rounds: model / measured for each, with the fitted
profile of a validate --json output.

Usage: flock /tmp/flashsim-heavy.lock .venv/bin/python
experiments/validation/diagnostics/plan_vs_points.py LAYOUT QD RESULTS.json. Answer (sparse,
QD 8, a fit without the link in passes): plan 0.95, points 0.95-1.14 (LOG.md).
"""
import json, sys
import numpy as np
from diag import plan_and_store
from flashsim.io.reader import DirectReader
from flashsim.device import make_device
from flashsim.device.profile import DeviceParams

layout_name, qd, prof = sys.argv[1], int(sys.argv[2]), sys.argv[3]
plan, store = plan_and_store(layout_name)
rd = DirectReader(store.path, engine='aio')
rng = np.random.default_rng(1)
ptr, off, ln = plan.batch_ptr, plan.offset_bytes, plan.length_bytes
groups = {'plan': [(off[ptr[b]:ptr[b+1]], ln[ptr[b]:ptr[b+1]]) for b in range(256) if ptr[b+1] > ptr[b]]}
slots = lambda c: rd.file_bytes // c
for chunk in (4096, 16384):
    for n in (16, 64):
        groups[f'{chunk>>10}K n{n} random'] = [(rng.integers(0, slots(chunk), n) * chunk, np.full(n, chunk)) for _ in range(60)]
        groups[f'{chunk>>10}K n{n} clustered'] = [((rng.integers(0, slots(chunk) - 2 * n) + 2 * np.arange(n)) * chunk, np.full(n, chunk)) for _ in range(60)]
meas = {k: [] for k in groups}
names = list(groups)
for r in range(4):
    for k in names[r % len(names):] + names[:r % len(names)]:
        meas[k].append([rd.read_batch(o, l, qd).makespan_s for o, l in groups[k]])
dev = make_device(DeviceParams(**json.load(open(prof))['profile']['params']), 'fast')
for k, g in groups.items():
    m = np.median(np.array(meas[k]), axis=0)
    o = np.concatenate([x[0] for x in g]).astype(np.int64); l = np.concatenate([x[1] for x in g]).astype(np.int64)
    p = np.concatenate([[0], np.cumsum([len(x[1]) for x in g])]).astype(np.int64)
    pred = np.asarray(dev.run_batches(o, l, p, qd))
    print(f'{k:20s} model/measured {np.median(pred / m):.3f}  (sum {pred.sum()/m.sum():.3f})')
