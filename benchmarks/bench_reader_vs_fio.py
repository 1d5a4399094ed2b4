"""DirectReader vs fio on the same file: random-read throughput at 4/32/256 KiB × QD 1/8/32.

Both measured in one run, interleaved (reader, fio, fio, reader, ...) so the disk's drift
hits both alike; each cell is the median of the repeats. Goal: reader ≥ 90% of fio.
Run it alone:  flock /tmp/flashsim-heavy.lock .venv/bin/python benchmarks/bench_reader_vs_fio.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from flashsim.device.calibrate import ensure_data_file, measure_point
from flashsim.loader.reader import DirectReader
from flashsim.units import parse_size


def fio_point(path: str, chunk: int, qd: int, seconds: float, warmup: float, engine: str) -> float:
    """fio randread throughput in MB/s (direct=1)."""
    cmd = ["fio", "--name=bench", f"--filename={path}", "--rw=randread", f"--bs={chunk}",
           f"--iodepth={qd}", "--direct=1", f"--ioengine={engine}", "--time_based",
           f"--runtime={seconds}", f"--ramp_time={warmup}", "--norandommap", "--randrepeat=0",
           "--output-format=json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    job = json.loads(out[out.find("{"):])["jobs"][0]
    return job["read"]["bw_bytes"] / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default="/work/scratch/calib.bin")
    ap.add_argument("--size", default="2GiB", help="created with random data if missing")
    ap.add_argument("--chunks", default="4k,32k,256k")
    ap.add_argument("--qd", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ioengine", default="libaio")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ensure_data_file(args.file, parse_size(args.size))
    chunks = [parse_size(c) for c in args.chunks.split(",")]
    qds = [int(q) for q in args.qd.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    with DirectReader(args.file) as reader:
        if not reader.o_direct:
            sys.exit("no O_DIRECT on this file system")
        for chunk in chunks:
            for qd in qds:
                ours, theirs = [], []
                for r in range(args.repeats):
                    order = (0, 1) if r % 2 == 0 else (1, 0)
                    for who in order:
                        if who == 0:
                            ours.append(measure_point(reader, chunk, qd, duration_s=args.seconds,
                                                      warmup_s=args.warmup, rng=rng)["throughput_mb_s"])
                        else:
                            theirs.append(fio_point(args.file, chunk, qd, args.seconds,
                                                    args.warmup, args.ioengine))
                a, b = float(np.median(ours)), float(np.median(theirs))
                rows.append({"chunk_bytes": chunk, "queue_depth": qd, "reader_mb_s": a,
                             "fio_mb_s": b, "ratio": a / b,
                             "reader_spread_pct": 100 * (max(ours) - min(ours)) / a,
                             "fio_spread_pct": 100 * (max(theirs) - min(theirs)) / b,
                             "reader_runs_mb_s": ours, "fio_runs_mb_s": theirs})
                if not args.json:
                    print(f"{chunk // 1024:>5} KiB  QD {qd:>2}: reader {a:8.1f} MB/s  fio "
                          f"{b:8.1f} MB/s  ratio {a / b:5.2f}  (spread reader "
                          f"{rows[-1]['reader_spread_pct']:.0f}%, fio {rows[-1]['fio_spread_pct']:.0f}%)",
                          flush=True)
    ratios = [r["ratio"] for r in rows]
    summary = {"ioengine": args.ioengine, "seconds": args.seconds, "repeats": args.repeats,
               "min_ratio": min(ratios), "median_ratio": float(np.median(ratios)),
               "goal_ratio": 0.9, "rows": rows}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        print(f"reader / fio ({args.ioengine}): median {summary['median_ratio']:.2f}, "
              f"min {summary['min_ratio']:.2f} (goal ≥ 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
