"""The same plan batches through a long-lived reader (slots grown as in validate) and a fresh
reader per round (as the calibration opens one): does the reader instance matter?

Usage: flock /tmp/flashsim-heavy.lock .venv/bin/python
experiments/validation/diagnostics/reader_instance.py LAYOUT QD. Answer (sparse QD 8,
8 rounds, huge-page buffers): fresh / long-lived 1.02, rounds vary ±15 % (LOG.md).
"""
import sys
import numpy as np
from diag import plan_and_store
from flashsim.io.reader import DirectReader

layout_name = sys.argv[1]; qd = int(sys.argv[2])
plan, store = plan_and_store(layout_name)
long = DirectReader(store.path, engine='aio')
long.read_batch(np.zeros(32, np.int64), np.full(32, 1 << 20), 32)  # grown like validation's
ptr, off, ln = plan.batch_ptr, plan.offset_bytes, plan.length_bytes
B = [(off[ptr[b]:ptr[b+1]], ln[ptr[b]:ptr[b+1]]) for b in range(4 * 64) if ptr[b+1] > ptr[b]]
res = {'long': [], 'fresh': [], 'long_small': []}
small = DirectReader(store.path, engine='aio')
for r in range(8):
    for name in ('long', 'fresh', 'long_small'):
        if name == 'fresh':
            rd = DirectReader(store.path, engine='aio')
        else:
            rd = long if name == 'long' else small
        t = sum(rd.read_batch(o, l, qd).makespan_s for o, l in B)
        if name == 'fresh': rd.close()
        res[name].append(t * 1e3)
for k, v in res.items():
    print(k, np.round(v, 1), 'median', np.median(v))
print('fresh/long', np.median(np.array(res['fresh']) / np.array(res['long'])), 'small/long', np.median(np.array(res['long_small']) / np.array(res['long'])))
