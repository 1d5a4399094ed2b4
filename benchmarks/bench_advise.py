"""How fast `flashsim advise` searches: the bundled trace over the default space, one core.

    flock /tmp/flashsim-heavy.lock .venv/bin/python benchmarks/bench_advise.py \
        [--device local-virtio] [--budget 2MiB] [--calibrate]

The space: every registered layout family × windows 1-6,8 × merge gaps {0, auto} × QD
{1,4,8,16,32,64} (auto resolves per QD, so a plan serves every QD sharing its gap). Reported:
the space size (configurations, plans, simulations), CPU and wall seconds per phase, and the
ratios that say where the time goes. Without --calibrate the memory and compute models are
fixed (the paper's memcpy model, a fixed linear compute model), so the number is the search
alone; with it, this machine's calibrations (~8 s here) are in the models phase.
Goal: under 60 s of CPU on one core for the whole space.
"""

from __future__ import annotations

import argparse
import json
import time

from flashsim.advise.advise import advise_layouts
from flashsim.cost.compute import ComputeModel
from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device import load_params
from flashsim.trace.format import ActivationTrace
from flashsim.units import parse_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="local-virtio")
    ap.add_argument("--budget", default="2MiB")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    trace, train = ActivationTrace.load(REFERENCE_TRACE), ActivationTrace.load(TRAINING_TRACE)
    params = load_params(args.device)
    models = {} if args.calibrate else {
        "memcpy_bytes_per_s": 10e9, "compute": ComputeModel(2e-4, 2e-7, "fixed")}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    advice = advise_layouts(trace, params, parse_size(args.budget, key="--budget"),
                            train_trace=train, **models)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    info, sec = advice.info, advice.info["seconds"]
    result = {"device": args.device, "budget": args.budget, "calibrated": args.calibrate,
              "n_candidates": info["n_candidates"], "n_plans": info["n_plans"],
              "n_configs": info["n_configs"], "cpu_s": cpu, "wall_s": wall,
              "phase_wall_s": sec, "configs_per_cpu_s": info["n_configs"] / cpu,
              "plan_share": sec["plans"] / sec["total"],
              "simulate_share": sec["simulate"] / sec["total"],
              "reads_simulated": int(sum(p.plan.n_reads for p in advice.planned.values())),
              "goal_cpu_s": 60.0, "pick": advice.best["config"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['n_configs']} configurations ({result['n_candidates']} layout settings, "
          f"{result['n_plans']} plans) on {args.device}: {cpu:.1f} s CPU, {wall:.1f} s wall "
          f"(models {sec['models']:.1f} s, plans {sec['plans']:.1f} s, simulate "
          f"{sec['simulate']:.1f} s); goal < 60 s CPU; pick {result['pick']}")


if __name__ == "__main__":
    main()
