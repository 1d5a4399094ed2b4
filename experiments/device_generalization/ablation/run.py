"""Ablation of the layered device model on three real devices: each term refitted away, the
holdout errors compared (flashsim.device.ablation). Input: the standard calibrations (with
off-grid holdout points) of the virtio disk, the throttled disk and zram in this folder.

    .venv/bin/python experiments/device_generalization/ablation/run.py [--only NAME]

Deterministic (fits from fixed seeds): needs no quiet machine, only time (~1 min a variant).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flashsim.device.ablation import ablation_row, variants
from flashsim.device.profile import DeviceProfile

HERE = Path(__file__).parent
DEVICES = ("virtio", "throttled-emmc", "zram")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=DEVICES, default=None)
    args = ap.parse_args()
    out = HERE / "results.json"
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {(r["profile"], r["variant"]) for r in rows}
    for name in [args.only] if args.only else DEVICES:
        profile = DeviceProfile.load(HERE / f"{name}.yaml")
        for v in variants():
            if (profile.name, v.name) in done:
                continue
            rows.append(ablation_row(profile, v))
            out.write_text(json.dumps(rows, indent=1) + "\n")  # resumable: one row at a time
            r = rows[-1]
            print(f"{name:15s} {v.name:38s} fit {r['fit_median_pct']:5.1f}/{r['fit_worst_pct']:5.1f}"
                  f" hold {r['holdout_median_pct']:5.1f}/{r['holdout_worst_pct']:5.1f}"
                  f" corrected hold {r['holdout_corrected_median_pct']:5.1f}/"
                  f"{r['holdout_corrected_worst_pct']:5.1f}", flush=True)


if __name__ == "__main__":
    main()
