"""DirectReader vs fio on the same file: random-read throughput at 4/32/256 KiB × QD 1/8/32.

Measured in one run, interleaved (each repeat runs the reader engines and fio in a rotating
order) so the disk's drift hits all alike; each cell is the median of the repeats.
Goal: reader ≥ 90% of fio. Engines: aio (native Linux AIO from one thread, the compiled
loop), aio-python (the same with the Python loop, the fallback without numba) and threads
(pool). The readers are opened (and the aio loop compiled) before anything is timed.
At 32 KiB and up the reader's transparent-huge-page buffers (loader/buffers.py) make it
faster than fio, whose buffers are 4 KiB pages (more DMA segments per read).
Run it alone:  flock /tmp/flashsim-heavy.lock .venv/bin/python benchmarks/bench_reader_vs_fio.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from flashsim.device.calibrate import ensure_data_file, measure_point
from flashsim.io import aio_loop
from flashsim.io.reader import DirectReader
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
    ap.add_argument("--ioengine", default="libaio", help="fio's engine")
    ap.add_argument("--engines", default="aio,threads",
                    help="reader engines to measure: aio, aio-python, threads; a -4k "
                         "suffix (aio-4k) reads into 4 KiB-page buffers, like fio")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ensure_data_file(args.file, parse_size(args.size))
    chunks = [parse_size(c) for c in args.chunks.split(",")]
    qds = [int(q) for q in args.qd.split(",")]
    rng = np.random.default_rng(0)
    engines = args.engines.split(",")
    readers = {}
    for e in engines:
        # "-4k": the same engine reading into 4 KiB-page buffers, as fio does
        base = e.removesuffix("-4k")
        readers[e] = DirectReader(args.file, engine="aio" if base.startswith("aio") else base,
                                  huge_pages=not e.endswith("-4k"))
        if base == "aio-python":
            readers[e]._aio.loop = None  # the fallback loop
        elif base == "aio" and not readers[e]._aio.compiled:
            print(f"note: the compiled aio loop is unavailable ({aio_loop.load_error()})",
                  file=sys.stderr)
    rows = []
    try:
        for chunk in chunks:
            for qd in qds:
                runs: dict[str, list[float]] = {e: [] for e in engines + ["fio"]}
                who_all = engines + ["fio"]
                for r in range(args.repeats):
                    order = who_all[r % len(who_all):] + who_all[:r % len(who_all)]
                    for who in order:
                        if who == "fio":
                            runs["fio"].append(fio_point(args.file, chunk, qd, args.seconds,
                                                         args.warmup, args.ioengine))
                        else:
                            runs[who].append(measure_point(
                                readers[who], chunk, qd, duration_s=args.seconds,
                                warmup_s=args.warmup, rng=rng)["throughput_mb_s"])
                med = {k: float(np.median(v)) for k, v in runs.items()}
                row = {"chunk_bytes": chunk, "queue_depth": qd, "fio_mb_s": med["fio"],
                       "fio_runs_mb_s": runs["fio"]}
                for e in engines:
                    row[f"{e}_mb_s"] = med[e]
                    row[f"{e}_ratio"] = med[e] / med["fio"]
                    row[f"{e}_runs_mb_s"] = runs[e]
                row["ratio"] = max(row[f"{e}_ratio"] for e in engines)
                rows.append(row)
                if not args.json:
                    parts = "  ".join(f"{e} {med[e]:8.1f} MB/s ({med[e] / med['fio']:4.2f})"
                                      for e in engines)
                    print(f"{chunk // 1024:>5} KiB  QD {qd:>2}: fio {med['fio']:8.1f} MB/s  {parts}",
                          flush=True)
    finally:
        for reader in readers.values():
            reader.close()
    summary = {"ioengine": args.ioengine, "seconds": args.seconds, "repeats": args.repeats,
               "goal_ratio": 0.9, "aio_compile_s": aio_loop.compile_s, "rows": rows}
    for e in engines:
        ratios = [r[f"{e}_ratio"] for r in rows]
        summary[f"{e}_min_ratio"] = min(ratios)
        summary[f"{e}_median_ratio"] = float(np.median(ratios))
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        for e in engines:
            print(f"reader {e} / fio ({args.ioengine}): median {summary[e + '_median_ratio']:.2f}, "
                  f"min {summary[e + '_min_ratio']:.2f} (goal ≥ 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
