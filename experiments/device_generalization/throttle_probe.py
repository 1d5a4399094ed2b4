"""How blk-throttle lets reads through, measured and modelled: bursts after idle and periodic
batches, inside the throttled testbed, against `ThrottledDevice` over a device profile.

Run inside the testbed (it reads {path}):
  sudo flashsim device testbed run throttled --dir /var/tmp --size 2GiB -- \
    python experiments/device_generalization/throttle_probe.py --file {path} \
      --out experiments/device_generalization/throttle/probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from flashsim.device import make_device
from flashsim.device.throttle import SliceBudget, ThrottledDevice, blkio_throttle_of, pieces
from flashsim.io.reader import DirectReader

BURSTS = [(4096, n) for n in (500, 1400, 1600, 3000, 5000)] + \
         [(65536, n) for n in (400, 500, 1400, 3000)]
PERIODIC_GAPS_MS = (2, 5, 10, 20)
PERIODIC_BATCHES, PERIODIC_READS = 60, 200
QD = 32


def measure(reader: DirectReader, rng: np.random.Generator, size: int) -> dict:
    """Bursts after 0.4 s idle (3 each) and periodic 4 KiB batches with a sleep between."""
    out: dict = {"bursts": {}, "periodic": {}}
    for chunk, n in BURSTS:
        runs = []
        for _ in range(3):
            time.sleep(0.4)
            off = rng.integers(0, size // chunk, n) * chunk
            t = reader.read_batch(off, np.full(n, chunk), QD)
            fin = np.sort(t.finish_s)
            runs.append({"makespan_s": t.makespan_s,
                         "first_stall_after": int(np.argmax(np.diff(fin) > 3e-3) + 1)
                         if np.any(np.diff(fin) > 3e-3) else None})
        out["bursts"][f"{chunk}/{n}"] = runs
    runs = []
    for _ in range(3):  # a second of 50-read batches every 5 ms (below the cap), then a burst
        time.sleep(0.4)
        t_end = time.perf_counter() + 1.0
        while time.perf_counter() < t_end:
            off = rng.integers(0, size // 4096, 50) * 4096
            reader.read_batch(off, np.full(50, 4096), 8)
            time.sleep(0.005)
        off = rng.integers(0, size // 4096, 4000) * 4096
        t = reader.read_batch(off, np.full(4000, 4096), QD)
        gaps = np.diff(np.sort(t.finish_s))
        runs.append({"makespan_s": t.makespan_s,
                     "first_stall_after": int(np.argmax(gaps > 3e-3) + 1)
                     if np.any(gaps > 3e-3) else None})
    out["after_reads_below_caps"] = runs
    for gap_ms in PERIODIC_GAPS_MS:
        time.sleep(0.4)
        starts, spans = [], []
        t0 = time.perf_counter()
        for _ in range(PERIODIC_BATCHES):
            off = rng.integers(0, size // 4096, PERIODIC_READS) * 4096
            s = time.perf_counter()
            t = reader.read_batch(off, np.full(PERIODIC_READS, 4096), QD)
            starts.append(s - t0)
            spans.append(t.makespan_s)
            time.sleep(gap_ms / 1e3)
        out["periodic"][str(gap_ms)] = {"start_s": starts, "makespan_s": spans}
    return out


def model(measured: dict, device: ThrottledDevice, rng: np.random.Generator, size: int) -> dict:
    """The same workloads through the model (the periodic gaps as measured)."""
    out: dict = {"bursts": {}, "periodic": {}}
    for key in measured["bursts"]:
        chunk, n = (int(x) for x in key.split("/"))
        off = rng.integers(0, size // chunk, n) * chunk
        out["bursts"][key] = device.run(off, np.full(n, chunk), QD).makespan_s
    # the model's budget after reads below the caps: 50 reads every ~6 ms for a second
    budget = SliceBudget.of(device.throttle)
    cum = np.arange(0, 4001) * 4096
    t = 0.0
    while t < 1.0:
        pieces(budget, cum, 0, 50, t)
        budget.busy_until(t + 0.001)
        t += 0.006
    out["after_reads_below_caps"] = pieces(budget, cum, 0, 4000, t)[0][1]
    for key, m in measured["periodic"].items():
        start, span = np.array(m["start_s"]), np.array(m["makespan_s"])
        gaps = np.concatenate([[0.0], np.diff(start) - span[:-1]])
        n = len(span) * PERIODIC_READS
        off = rng.integers(0, size // 4096, n) * 4096
        ptr = np.arange(len(span) + 1) * PERIODIC_READS
        out["periodic"][key] = device.run_batches(off, np.full(n, 4096), ptr, QD,
                                                  gaps_s=gaps).tolist()
    return out


def summary(measured: dict, modelled: dict) -> dict:
    rows = {}
    for key, runs in measured["bursts"].items():
        rows[f"burst {key}"] = {
            "measured_ms": round(1e3 * float(np.median([r["makespan_s"] for r in runs])), 1),
            "model_ms": round(1e3 * modelled["bursts"][key], 1),
            "first_stall_after": runs[0]["first_stall_after"]}
    below = measured["after_reads_below_caps"]
    rows["burst of 4000 after 1 s below the caps"] = {
        "measured_first_stall_after": [r["first_stall_after"] for r in below],
        "model_first_stall_after": modelled["after_reads_below_caps"]}
    for key, m in measured["periodic"].items():
        meas, pred = np.array(m["makespan_s"]) * 1e3, np.array(modelled["periodic"][key]) * 1e3
        rows[f"periodic gap {key} ms"] = {
            "measured_held_batches": int((meas > 5).sum()),
            "model_held_batches": int((pred > 5).sum()),
            "measured_mean_ms": round(float(meas.mean()), 2),
            "model_mean_ms": round(float(pred.mean()), 2),
            "measured_max_ms": round(float(meas.max()), 1),
            "model_max_ms": round(float(pred.max()), 1)}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="local-virtio",
                    help="the profile of the disk behind the throttle")
    args = ap.parse_args()
    caps = blkio_throttle_of(args.file)
    if caps is None:
        raise SystemExit(f"{args.file}: not read behind a blkio throttle (run it in the testbed)")
    rng = np.random.default_rng(0)
    with DirectReader(args.file) as reader:
        size = reader.file_bytes
        measured = measure(reader, rng, size)
    device = ThrottledDevice(make_device(args.device), caps)
    rows = summary(measured, model(measured, device, np.random.default_rng(1), size))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"throttle": caps.model_dump(), "device": args.device,
                                          "queue_depth": QD, "rows": rows}, indent=1) + "\n")
    for name, row in rows.items():
        print(name, row)


if __name__ == "__main__":
    main()
