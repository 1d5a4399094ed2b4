"""Plan batches vs the same read sizes at random or packed offsets: measured vs the model.

Usage (after a validation run built the stores): flock /tmp/flashsim-heavy.lock
.venv/bin/python experiments/validation/diagnostics/locality.py LAYOUT QD RESULTS.json (the
fitted profile of a validate --json output, e.g. ../results.json). Answer: sparse QD 8
plan / random / packed 263 / 263 / 262 ms over its first 256 batches: no locality effect on
this disk (LOG.md).
"""
import json, sys
import numpy as np
from diag import plan_and_store
from flashsim.io.reader import DirectReader
from flashsim.device import make_device
from flashsim.device.profile import DeviceParams

layout_name = sys.argv[1]; qd = int(sys.argv[2])
plan, store = plan_and_store(layout_name)
rd = DirectReader(store.path, engine='aio')
fb = rd.file_bytes
rng = np.random.default_rng(0)
ptr, off, ln = plan.batch_ptr, plan.offset_bytes, plan.length_bytes
nb = min(len(ptr) - 1, 4 * 96)
variants = {'plan': [], 'random': [], 'packed': []}
offs = {'plan': [], 'random': [], 'packed': []}
for b in range(nb):
    lo, hi = ptr[b], ptr[b + 1]
    if hi - lo < 2: continue
    L = ln[lo:hi]
    o_plan = off[lo:hi]
    # random: each read at a random aligned offset that fits
    o_rand = (rng.integers(0, (fb - L) // 4096 + 1) * 4096).astype(np.int64)
    # packed: same order and sizes, back to back with 4 KiB holes, at a random start
    span = int(L.sum() + 4096 * len(L))
    start = int(rng.integers(0, (fb - span) // 4096 + 1)) * 4096
    o_pack = start + np.concatenate([[0], np.cumsum(L[:-1] + 4096)])
    for name, o in (('plan', o_plan), ('random', o_rand), ('packed', o_pack)):
        offs[name].append((o, L))
# measure interleaved, 3 rounds
meas = {k: np.zeros((3, len(offs['plan']))) for k in offs}
for r in range(3):
    for j in range(len(offs['plan'])):
        for name in (('plan', 'random', 'packed')[r:] + ('plan', 'random', 'packed')[:r]):
            o, L = offs[name][j]
            meas[name][r, j] = rd.read_batch(o, L, qd).makespan_s
params = json.load(open(sys.argv[3]))['profile']['params']
dev = make_device(DeviceParams(**params), 'fast')
out = {}
for name in offs:
    o = np.concatenate([x[0] for x in offs[name]]); L = np.concatenate([x[1] for x in offs[name]])
    p = np.concatenate([[0], np.cumsum([len(x[1]) for x in offs[name]])]).astype(np.int64)
    pred = np.asarray(dev.run_batches(o, L, p, qd))
    m = np.median(meas[name], axis=0)
    out[name] = (m.sum() * 1e3, pred.sum() * 1e3)
for k, (m, p) in out.items():
    print(f'{layout_name} QD{qd} {k:7s} measured {m:8.2f} ms  model {p:8.2f} ms  model/meas {p/m:.3f}')
