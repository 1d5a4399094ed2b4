"""The device generalization study's summary: results.json and generalization.png from what
run.sh wrote (the shipped profiles, calibrate/, fio/, validation/).

    .venv/bin/python experiments/device_generalization/summarize.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import yaml

HERE = Path(__file__).parent
SHIPPED = HERE.parents[1] / "flashsim" / "data" / "devices"
DEVICES = ("local-virtio", "testbed-throttled-emmc", "testbed-zram-ext4")
PREDICTORS = ("model", "layered", "baseline")


def held_out(check: dict) -> dict:
    """Median / worst |error| % of each predictor over throughput and latency."""
    return {p: [round(check["summary"][p]["all"]["median_abs_error_pct"], 1),
                round(check["summary"][p]["all"]["worst_abs_error_pct"], 1)]
            for p in PREDICTORS}


def validation(rows: list[dict]) -> dict:
    """Worst row's error p50 / p99 of the profile's model, the layered model and the baseline;
    and in how many rows the model beats the baseline."""
    def worst(key: str) -> float:
        return round(max(r[key] for r in rows), 1)
    return {"model_error_p50_range": [round(min(r["error_p50_pct"] for r in rows), 1),
                                      worst("error_p50_pct")],
            "model_error_p50_worst": worst("error_p50_pct"),
            "model_error_p99_worst": worst("error_p99_pct"),
            "layered_error_p50_worst": worst("layered_error_p50_pct"),
            "baseline_error_p50_worst": worst("baseline_error_p50_pct"),
            "model_beats_baseline_rows": sum(r["error_p50_pct"] < r["baseline_error_p50_pct"]
                                             for r in rows),
            "rows": len(rows)}


def device_summary(name: str) -> dict:
    profile = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text())
    val = json.loads((HERE / "validation" / f"{name}.json").read_text())
    fit = profile["fit"]
    return {
        "calibration_s": round(float((HERE / "calibrate" / f"{name}.seconds").read_text())),
        "measuring_s": profile["measured"]["total_duration_s"],
        "correction": profile.get("correction", "none"),
        "correction_method": fit.get("correction_method"),
        "fit_layered": [fit["median_abs_error_pct"], fit["worst_abs_error_pct"]],
        "cv": [fit.get("cv_median_abs_error_pct"), fit.get("cv_worst_abs_error_pct")],
        "cv_layered": [fit.get("uncorrected_cv_median_abs_error_pct"),
                       fit.get("uncorrected_cv_worst_abs_error_pct")],
        "held_out_vs_reader": held_out(json.loads(
            (HERE / "calibrate" / f"{name}.check-holdout.json").read_text())),
        "held_out_vs_fio": held_out(json.loads((HERE / "fio" / f"{name}.check.json").read_text())),
        "validation_mode_a": validation(val["mode_a"]["rows"]),
        "validation_mode_b": validation(val["mode_b"]["rows"]),
        "mode_b_correction": val["mode_b"]["correction"],
        "span": [[f["span_bytes"] >> 20, f["time_ratio"], f["agree"],
                  round(f["bandwidth_factor"], 2)] for f in (profile.get("span") or {}).get(
                      "spans", [])],
        **fio_profile(name)}


def fio_profile(name: str) -> dict:
    """fio's reads predicted by a profile of fio's own reads (fio_profile.sh), where run."""
    check = HERE / "fio" / f"{name}-fio.check.json"
    return ({"held_out_fio_profile_vs_fio": held_out(json.loads(check.read_text()))}
            if check.exists() else {})


def figure(out: Path) -> None:
    """Per device: predicted vs measured ms/token of every row, modes (a) and (b)."""
    fig, axes = plt.subplots(1, len(DEVICES), figsize=(12, 4))
    for ax, name in zip(axes, DEVICES):
        val = json.loads((HERE / "validation" / f"{name}.json").read_text())
        for mode, marker in (("mode_a", "o"), ("mode_b", "s")):
            rows = val[mode]["rows"]
            m = np.array([r["measured_io_ms_p50"] for r in rows])
            p = np.array([r["predicted_io_ms_p50"] for r in rows])
            ax.scatter(m, p, marker=marker, label=f"{mode[-1]}: " + (
                "standard calibration" if mode == "mode_a" else "same-run calibration"))
        lim = [0, ax.get_xlim()[1]]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.plot(lim, [1.15 * x for x in lim], "k:", lw=0.6)
        ax.plot(lim, [0.85 * x for x in lim], "k:", lw=0.6)
        ax.set_title(name)
        ax.set_xlabel("measured I/O ms/token (p50)")
    axes[0].set_ylabel("predicted I/O ms/token (p50)")
    axes[0].legend(fontsize=8)
    fig.suptitle("flashsim validate on three devices: 4 layouts × QD 1/8/32 (±15 % dotted)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    results = {name: device_summary(name) for name in DEVICES}
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    figure(HERE / "generalization.png")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
