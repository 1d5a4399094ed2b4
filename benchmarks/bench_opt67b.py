"""Seconds and peak memory to plan and simulate one layout on the OPT-6.7B-sized trace.

    flock /tmp/flashsim-heavy.lock .venv/bin/python benchmarks/bench_opt67b.py \
        [--trace results/paper_table2/opt-6.7b-synthetic.trace] [--device m1max-paper] \
        [--layouts sparse windowed+bundled] [--qd 32]

The trace is the SYNTHETIC OPT-6.7B stand-in of paper_table2 (made and cached at --trace if
missing: ~40 s). Each layout runs in a fresh child process (the paper's read settings: one
row per read, two for bundled): load the trace, plan, simulate the I/O with the fast path
(I/O only, as `paper_table2` does); the child reports its seconds per stage and its peak
resident memory (ru_maxrss, the trace's own arrays included). Goal (issue: a search is only
as fast as its simulator): < 5 s per layout and < 1 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "results" / "paper_table2" / "opt-6.7b-synthetic.trace"
GOAL_S, GOAL_BYTES = 5.0, 1 << 30


def one_layout(trace_path: str, layout: str, device: str, qd: int) -> dict:
    """Plan and simulate `layout` in this process: seconds per stage and peak RSS."""
    from flashsim.cost.paper_table2 import table2_configs
    from flashsim.cost.simulate import io_seconds
    from flashsim.device import make_device
    from flashsim.layout.registry import make_layout
    from flashsim.trace.format import ActivationTrace

    make_device(device, "fast").run_batches([0], [4096], [0, 1], qd)  # load the kernel
    t0 = time.perf_counter()
    trace = ActivationTrace.load(trace_path)
    t1 = time.perf_counter()
    options = {name: opts for _, name, opts, _, _ in table2_configs(trace.geometry.row_bytes)}
    plan = make_layout(layout, **options.get(layout, {})).plan(trace)
    t2 = time.perf_counter()
    io_s = io_seconds(plan, device, qd)
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"layout": layout, "reads": plan.n_reads, "load_s": t1 - t0, "plan_s": t2 - t1,
            "simulate_s": t3 - t2, "total_s": t3 - t1, "peak_rss_bytes": peak,
            "io_ms_per_token": float(io_s.sum(axis=1).mean() * 1e3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--device", default="m1max-paper")
    ap.add_argument("--layouts", nargs="+", default=["sparse", "windowed+bundled"])
    ap.add_argument("--qd", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_layout(args.trace, args.child, args.device, args.qd)))
        return
    from flashsim.trace.synthetic import ensure_opt_6_7b_trace  # the parent only
    ensure_opt_6_7b_trace(args.trace)
    rows = []
    for layout in args.layouts:
        out = subprocess.run([sys.executable, __file__, "--trace", args.trace, "--device",
                              args.device, "--qd", str(args.qd), "--child", layout],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["time_vs_goal"] = row["total_s"] / GOAL_S
        row["memory_vs_goal"] = row["peak_rss_bytes"] / GOAL_BYTES
        rows.append(row)
    if args.json:
        print(json.dumps({"trace": args.trace, "device": args.device, "queue_depth": args.qd,
                          "goal_s": GOAL_S, "goal_bytes": GOAL_BYTES, "layouts": rows}, indent=2))
        return
    print(f"OPT-6.7B-sized trace, {args.device}, QD {args.qd} (goal: < {GOAL_S:.0f} s, < 1 GiB)")
    for r in rows:
        print(f"{r['layout']:>18}: {r['reads']:>9} reads, plan {r['plan_s']:6.2f} s + simulate "
              f"{r['simulate_s']:5.2f} s = {r['total_s']:6.2f} s ({r['time_vs_goal']:.2f}× goal), "
              f"peak {r['peak_rss_bytes'] / 2**30:.2f} GiB ({r['memory_vs_goal']:.2f}× goal), "
              f"load {r['load_s']:.2f} s")


if __name__ == "__main__":
    main()
