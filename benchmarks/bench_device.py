"""Device model speed: SimPy reference and numba fast path, simulated reads per second.

DES: 100k random 4 KiB reads at QD 32 in one batch (goal ≥ 200k reads/s).
Fast path: run_batches over many IOPlan-like batches of 1–3000 reads, 4 KiB–1 MiB, random and
sequential, QD 32, on every usable CPU and on one (goal ≥ 10M reads/s).
Run: .venv/bin/python benchmarks/bench_device.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from flashsim.data import bundled_device_path
from flashsim.device.des import FlashDevice
from flashsim.device.fast import FastDevice, usable_cpus
from flashsim.device.profile import DeviceProfile

DEFAULT_PROFILE = bundled_device_path("m1max-paper")


def plan_like_batches(n_reads: int, seed: int = 0):
    """Batches shaped like IOPlan (token, layer) batches: mostly 16–32 KiB reads, some runs."""
    rng = np.random.default_rng(seed)
    offs, lens, ptr = [], [], [0]
    total = 0
    while total < n_reads:
        n = int(min(rng.integers(1, 3000), n_reads - total))
        length = rng.choice([4096, 8192, 16384, 32768, 65536, 262144, 1 << 20], size=n,
                            p=[0.1, 0.2, 0.35, 0.2, 0.1, 0.04, 0.01])
        if rng.random() < 0.5:
            off = np.concatenate([[0], np.cumsum(length[:-1])])
        else:
            off = rng.integers(0, 1 << 19, size=n) * 4096
        offs.append(off)
        lens.append(length)
        total += n
        ptr.append(total)
    return np.concatenate(offs), np.concatenate(lens), np.asarray(ptr)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(DEFAULT_PROFILE))
    ap.add_argument("--des-reads", type=int, default=100_000)
    ap.add_argument("--fast-reads", type=int, default=5_000_000)
    ap.add_argument("--qd", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    params = DeviceProfile.load(args.profile).require_params()
    rng = np.random.default_rng(1)
    off = rng.integers(0, 1 << 19, size=args.des_reads) * 4096
    length = np.full(args.des_reads, 4096)
    des_s = best_of(lambda: FlashDevice(params).run(off, length, args.qd), 2)
    fast = FastDevice(params)
    fast.run(off[:100], length[:100], args.qd)  # compile / load the cache
    fast_single_s = best_of(lambda: fast.run(off, length, args.qd), 3)
    b_off, b_len, b_ptr = plan_like_batches(args.fast_reads)
    fast_batches_s = best_of(lambda: fast.run_batches(b_off, b_len, b_ptr, args.qd), 3)
    fast.threads = 1
    one_cpu_s = best_of(lambda: fast.run_batches(b_off, b_len, b_ptr, args.qd), 3)
    out = {
        "profile": args.profile, "queue_depth": args.qd,
        "des_reads_per_s": args.des_reads / des_s, "des_goal": 200_000,
        "fast_single_batch_reads_per_s": args.des_reads / fast_single_s,
        "fast_batches_reads_per_s": len(b_off) / fast_batches_s, "fast_goal": 10_000_000,
        "fast_batches": len(b_ptr) - 1, "fast_cpus": usable_cpus(),
        "fast_batches_one_cpu_reads_per_s": len(b_off) / one_cpu_s,
    }
    out["des_ratio_to_goal"] = out["des_reads_per_s"] / out["des_goal"]
    out["fast_ratio_to_goal"] = out["fast_batches_reads_per_s"] / out["fast_goal"]
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print(f"DES (SimPy): {out['des_reads_per_s']:,.0f} reads/s for {args.des_reads:,} reads at "
              f"QD {args.qd} — {out['des_ratio_to_goal']:.2f}× the 200k/s goal")
        print(f"fast path, one batch: {out['fast_single_batch_reads_per_s']:,.0f} reads/s")
        print(f"fast path, run_batches ({out['fast_batches']} batches, {len(b_off):,} reads): "
              f"{out['fast_batches_reads_per_s']:,.0f} reads/s on {out['fast_cpus']} CPUs — "
              f"{out['fast_ratio_to_goal']:.2f}× the 10M/s goal; on one CPU "
              f"{out['fast_batches_one_cpu_reads_per_s']:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
