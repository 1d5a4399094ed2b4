"""fio at the held-out chunk × QD points, into huge pages like the reader's buffers.

Writes a job file (random O_DIRECT reads with libaio, `iomem=shmhuge`, every point in each
of `--rounds` rounds, each round in another order) and runs fio on `--file` with huge pages
reserved for it (vm.nr_hugepages raised for the run and put back after, also on error).
`flashsim device check --profile P --against OUT.json` then compares a profile with it.

    python experiments/device_generalization/fio_holdout.py --file PATH --out OUT.json
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

HOLDOUT = "12k/3,48k/12,96k/6,192k/2,24k/48,640k/4,384k/24,20k/16"
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
HUGE_PAGES_NEEDED = 64  # 128 MiB: the largest point (384 KiB × 24) needs 5 two-MiB pages


def job_file(path: str, points: list[tuple[str, int]], rounds: int, runtime_s: float) -> str:
    lines = ["[global]", "ioengine=libaio", "direct=1", "rw=randread", "iomem=shmhuge",
             "time_based=1", f"runtime={int(runtime_s * 1000)}ms", "ramp_time=200ms", "norandommap=1",
             "randrepeat=0", f"filename={path}", ""]
    rng = random.Random(0)
    for r in range(rounds):
        order = points[:]
        rng.shuffle(order)
        for chunk, qd in order:
            lines += [f"[{chunk}-qd{qd}-round{r + 1}]", "stonewall", f"bs={chunk}",
                      f"iodepth={qd}", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--holdout", default=HOLDOUT)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtime", type=float, default=1.0, help="seconds per job")
    args = ap.parse_args()
    points = [(c, int(q)) for c, q in (p.split("/") for p in args.holdout.split(","))]
    jobs = Path(args.out).with_suffix(".fio")
    jobs.write_text(job_file(args.file, points, args.rounds, args.runtime))
    before = NR_HUGEPAGES.read_text().strip()
    try:
        NR_HUGEPAGES.write_text(f"{max(int(before), HUGE_PAGES_NEEDED)}\n")
        done = subprocess.run(["fio", "--output-format=json", f"--output={args.out}",
                               str(jobs)], check=False)
    finally:
        NR_HUGEPAGES.write_text(f"{before}\n")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
