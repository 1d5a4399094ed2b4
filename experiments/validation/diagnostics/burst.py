"""Burst vs sustained: µs a read of back-to-back batches of n random reads with the AIO
reader, with and without an idle pause, and within a long batch. Answer: a burst is no faster
than the steady state, an idle pause makes the next short batch slower, and the per-read time
keeps falling from QD 8 to 32 after saturation (the link's amortization term; LOG.md).
Run: flock /tmp/flashsim-heavy.lock .venv/bin/python experiments/validation/diagnostics/burst.py [FILE]
(FILE: a 1 GiB random-data file, created if missing and deleted afterwards; ~2 minutes)."""
import json, os, sys, time
import numpy as np
from flashsim.device.calibrate import ensure_data_file
from flashsim.io.reader import open_reader

path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/flashsim-burst.bin"
created = ensure_data_file(path, 1 << 30, seed=4)
reader = open_reader(path, "aio")
print("engine", reader.engine, flush=True)
rng = np.random.default_rng(1)
ns = [16, 64, 256, 1024, 4096]
results = []
for rnd in range(2):
    for chunk in (16384, 4096):
        slots = reader.file_bytes // chunk
        for qd in (8, 32):
            for pause in (0.0, 0.005, 0.05):
                for n in ns:
                    nb = max(5, min(150, 16000 // n))
                    if pause >= 0.05:
                        nb = min(nb, 30)
                    length = np.full(n, chunk, dtype=np.int64)
                    ms = []
                    win = []
                    time.sleep(0.05)
                    for b in range(nb):
                        off = rng.integers(0, slots, size=n, dtype=np.int64) * chunk
                        if pause:
                            time.sleep(pause)
                        t = reader.read_batch(off, length, qd)
                        ms.append(t.makespan_s)
                        if n >= 1024:
                            f = np.sort(t.finish_s)
                            # us per read in windows of 128 reads
                            win.append(np.diff(f[::128]) / 128 * 1e6)
                    row = dict(rnd=rnd, chunk=chunk, qd=qd, pause_ms=pause * 1e3, n=n, batches=nb,
                               us_per_read=float(np.median(ms)) / n * 1e6,
                               us_per_read_p25=float(np.percentile(ms, 25)) / n * 1e6,
                               us_per_read_p75=float(np.percentile(ms, 75)) / n * 1e6)
                    if win:
                        w = np.median(np.array(win), axis=0)
                        row["window_us_per_read"] = [round(float(x), 1) for x in w]
                    results.append(row)
                    print(json.dumps(row), flush=True)
reader.close()
if created:
    os.remove(path)
