"""What the slowest tokens of a device's plan rows are: the kept measurements
(validation/NAME.npz) predicted again per token by the run's own profile (mode b), and for
each row the measured p50 / p99, the model's, the model's share of the measured time at
the four slowest measured tokens, their reads against the median token's, and the
per-token correlation. No reads; builds the 4 MiB stores in --store.

    .venv/bin/python experiments/device_generalization/slow_tokens.py --name testbed-zram-ext4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import validate_device as vd

from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device.profile import DeviceProfile
from flashsim.trace.format import ActivationTrace
from flashsim.validation.setup import prepare
from flashsim.validation.spec import spec_from_options
from flashsim.validation.validate import predicted_rows

HERE = Path(__file__).resolve().parent
SHIP = HERE.parents[1] / "flashsim" / "data" / "devices"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="device, e.g. testbed-throttled-emmc")
    ap.add_argument("--store", default="/tmp/flashsim-slow-tokens-stores")
    args = ap.parse_args()
    spec = spec_from_options(vd.LAYOUTS, [1, 8, 32], {
        "store": args.store, "build_stores": True, "tokens": 128, "reps": 5,
        "calibrate": True, "calibrate_on": "store", "reader_engine": "aio", "quiet": True})
    setup = prepare(spec, ActivationTrace.load(REFERENCE_TRACE),
                    ActivationTrace.load(TRAINING_TRACE))
    measured = vd.load_measured(HERE / "validation" / f"{args.name}.npz", setup.keys)
    own = DeviceProfile.load(SHIP / f"{args.name}-validated.yaml")
    _, per_token = predicted_rows(spec, setup, measured, own, {})
    names = [lay.name for lay in setup.layouts]
    for (layout, qd), d in per_token.items():
        meas = np.median(d["measured_s"], axis=0)
        pred = np.median(np.atleast_2d(d["predicted_s"]), axis=0)
        reads = setup.plans[names.index(layout)].reads_per_token()
        top = np.argsort(meas)[::-1][:4]
        print(f"{layout:17s} QD {qd:2d}  measured p50 {np.median(meas) * 1e3:6.3f} "
              f"p99 {np.percentile(meas, 99) * 1e3:6.3f} ms | model p50 "
              f"{np.median(pred) * 1e3:6.3f} p99 {np.percentile(pred, 99) * 1e3:6.3f} ms | "
              f"slowest {top.tolist()}: model/measured {(pred[top] / meas[top]).round(2)}, "
              f"reads/median {(reads[top] / np.median(reads)).round(2)} | "
              f"correlation {np.corrcoef(meas, pred)[0, 1]:.2f}")


if __name__ == "__main__":
    main()
