"""Plan-level validation on one device, in both modes, from one set of real reads.

The real reader replays each layout's plan (per-token I/O, `flashsim validate`'s steps) with
a quick calibration dealt out between the blocks. Then the same measurements are predicted
twice: (a) with a profile from a standard `flashsim calibrate` of this device, minutes
before (no refit on the plans' short batches); (b) with the run's own calibration, as
`flashsim validate --calibrate` does. Each with the profile's model (layered + measured
residual where the fit kept it), the layered model alone, and the interpolation baseline.

    flashsim device testbed run NAME ... -- python experiments/device_generalization/validate_device.py \\
        --name NAME --profile PROFILE.yaml --store {dir}/stores --out OUT.json

Run it alone on the machine: it measures time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device.baseline import Baseline
from flashsim.device.profile import DeviceProfile
from flashsim.trace.format import ActivationTrace
from flashsim.validation.calibration import Calibration
from flashsim.validation.measure import Measured, measure_rows
from flashsim.validation.schedule import schedule
from flashsim.validation.setup import prepare
from flashsim.validation.spec import spec_from_options
from flashsim.validation.validate import predicted_rows

LAYOUTS = ["sparse", "bundled", "windowed+bundled", "coactivation"]
KEEP = ("layout", "queue_depth", "reads_per_token", "measured_io_ms_p50", "predicted_io_ms_p50",
        "error_mean_pct", "error_p99_all_pct", "measured_io_ms_mean", "predicted_io_ms_mean",
        "error_p50_pct", "error_p99_pct", "noise_p50_pct", "baseline_error_p50_pct",
        "baseline_error_p99_pct", "baseline_io_ms_p50")


def rows_of(spec, setup, measured, profile: DeviceProfile) -> list[dict]:
    """Rows predicted by `profile` (its own correction) and by its layered model alone."""
    rows, _ = predicted_rows(spec, setup, measured, profile, {},
                             baseline=Baseline(profile.points))
    layered, _ = predicted_rows(spec, setup, measured,
                                profile.model_copy(update={"correction": "none"}), {})
    out = []
    for r, lay in zip(rows, layered):
        row = {k: r[k] for k in KEEP}
        row["layered_error_p50_pct"] = lay["error_p50_pct"]
        row["layered_error_p99_pct"] = lay["error_p99_pct"]
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--profile", required=True, help="mode (a): a standard calibration")
    ap.add_argument("--store", required=True, help="folder for the weight stores")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--repredict", action="store_true",
                    help="no reads: predict the measurements OUT.npz holds again (mode b: the "
                         "NAME-validated profile beside --profile)")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=PROFILE",
                    help="predict the same measurements with another profile too (ablations)")
    args = ap.parse_args()
    spec = spec_from_options(LAYOUTS, [1, 8, 32], {
        "store": args.store, "build_stores": True, "tokens": args.tokens, "reps": args.reps,
        "calibrate": True, "calibrate_on": "store", "reader_engine": "aio"})
    trace = ActivationTrace.load(REFERENCE_TRACE)
    setup = prepare(spec, trace, ActivationTrace.load(TRAINING_TRACE))
    own_path = Path(args.profile).with_name(f"{args.name}-validated.yaml")
    saved = Path(args.out).with_suffix(".npz")
    if args.repredict:
        measured = load_measured(saved, setup.keys)
        own = DeviceProfile.load(own_path)
    else:
        calibration = Calibration.target(spec, setup.plans, setup.stores, setup.folder)
        slots = schedule(setup.keys, setup.n_tokens, spec.reps)
        measured = measure_rows(spec, setup, slots, calibration.measure_part)
        save_measured(saved, measured)
        own, info = calibration.fit()
        own = own.model_copy(update={"name": f"{args.name}-validated", "description": (
            f"{args.name}: the profile flashsim validate calibrated and fitted in the run of "
            f"{args.out} (short-batch points included): the model validated on plans")})
        own.save(own_path)  # ships beside it
    given = DeviceProfile.load(args.profile)
    result = {"device": args.name, "layouts": LAYOUTS, "qds": [1, 8, 32],
              "tokens": args.tokens, "reps": measured.io_s[setup.keys[0]].shape[0],
              "mode_a": {"profile": args.profile, "correction": given.correction,
                         "rows": rows_of(spec, setup, measured, given)},
              "mode_b": {"correction": own.correction,
                         "correction_method": own.fit.correction_method,
                         "fit_median_abs_error_pct": own.fit.median_abs_error_pct,
                         "rows": rows_of(spec, setup, measured, own)}}
    for item in args.also:
        label, path = item.split("=", 1)
        result.setdefault("also", {})[label] = {
            "profile": path, "rows": rows_of(spec, setup, measured, DeviceProfile.load(path))}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for mode in ("mode_a", "mode_b", *(f"also:{k}" for k in result.get("also", {}))):
        rows = (result[mode] if ":" not in mode else result["also"][mode[5:]])["rows"]
        for r in rows:
            print(f"{args.name} {mode} {r['layout']:17s} QD {r['queue_depth']:2d}: "
                  f"err p50 {r['error_p50_pct']:5.1f}% p99 {r['error_p99_pct']:5.1f}% "
                  f"(layered {r['layered_error_p50_pct']:5.1f}%, baseline "
                  f"{r['baseline_error_p50_pct']:5.1f}%)")


def save_measured(path: Path, measured: Measured) -> None:
    """The per-token I/O of every row and repetition, for predictions made later."""
    arrays = {f"io_{i}_{q}": v for (i, q), v in measured.io_s.items()}
    arrays.update({f"dispatch_{i}_{q}": v for (i, q), v in measured.dispatch_s.items()})
    np.savez_compressed(path, o_direct=measured.o_direct, reader_engine=measured.reader_engine,
                        stores=np.array(measured.stores), **arrays)


def load_measured(path: Path, keys) -> Measured:
    with np.load(path) as z:
        return Measured({k: z[f"io_{k[0]}_{k[1]}"] for k in keys},
                        {k: z[f"dispatch_{k[0]}_{k[1]}"] for k in keys}, bool(z["o_direct"]),
                        str(z["reader_engine"]), [str(s) for s in z["stores"]])


if __name__ == "__main__":
    main()
