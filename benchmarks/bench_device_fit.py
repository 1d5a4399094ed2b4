"""Device fit speed and stability on committed profiles: the fit and its 8-fold
cross-validation (goal: ≤ 120 s together on local-virtio.yaml, 2 cores, so that with about
150 s of reads the standard `flashsim calibrate` stays within 5 min), and with `--perturb`
the same fit of copies of the points moved by ±REL (what another CPU's arithmetic could
change, and far more): the parameters and errors should stay put.

Run: .venv/bin/python benchmarks/bench_device_fit.py [--profile P ...] [--perturb 1e-3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from flashsim.data import DEVICES_DIR
from flashsim.device.crossval import CV_FOLDS, perturbed_points
from flashsim.device.fit import fit_profile
from flashsim.device.profile import DeviceProfile

DEVICES = DEVICES_DIR
GOAL_S = 120.0


def perturbed(profile: DeviceProfile, rel: float) -> DeviceProfile:
    """The profile with every measured value moved by ±rel (sign alternating)."""
    return profile.model_copy(update={"points": perturbed_points(profile.points, rel)})


def run_one(profile: DeviceProfile, label: str, cv_folds: int) -> dict:
    t0 = time.perf_counter()
    fitted = fit_profile(profile, cv_folds=cv_folds)
    f = fitted.fit
    return {"case": label, "seconds": round(time.perf_counter() - t0, 1),
            "fit_s": f.duration_s, "cv_s": f.cv_duration_s,
            "fit_median_pct": f.median_abs_error_pct, "fit_worst_pct": f.worst_abs_error_pct,
            "cv_median_pct": f.cv_median_abs_error_pct, "cv_worst_pct": f.cv_worst_abs_error_pct,
            "params": fitted.params.model_dump()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", nargs="+", default=[str(DEVICES / "local-virtio.yaml")])
    parser.add_argument("--cv-folds", type=int, default=CV_FOLDS)
    parser.add_argument("--perturb", type=float, default=0.0,
                        help="also fit copies moved by +REL and -REL (0: not)")
    args = parser.parse_args()
    rows = []
    for path in args.profile:
        profile = DeviceProfile.load(path)
        cases = [(profile, "as committed")]
        if args.perturb:
            cases += [(perturbed(profile, args.perturb), f"+{args.perturb:g}"),
                      (perturbed(profile, -args.perturb), f"-{args.perturb:g}")]
        for prof, label in cases:
            row = {"profile": Path(path).name, **run_one(prof, label, args.cv_folds)}
            row["within_goal"] = row["seconds"] <= GOAL_S
            rows.append(row)
            print(json.dumps(row), flush=True)
    return 0 if all(r["within_goal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
