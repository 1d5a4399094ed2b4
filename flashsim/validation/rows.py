"""The report of a validation run: one row per layout × QD comparing measured and predicted
per-token I/O, next to the noise floor (how well one real run predicts another).

- error_p50_pct: median over tokens of |predicted - measured| / measured;
- error_p99_pct: |predicted p99 - measured p99| / measured p99 (tail agreement);
- noise_p50_pct: median over tokens and repetitions of |run r - median of the other runs| /
  median of the other runs (needs ≥ 2 repetitions);
- baseline_*: the same for the interpolation baseline of the profile's points
  (`device.baseline`), so a row shows whether the device model beats it on the plan.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..layout.plan import IOPlan
from ..trace.format import ActivationTrace
from .measure import Measured
from .spec import ValidationSpec


@dataclass
class ValidationResult:
    """Rows (one per layout × QD), per-token times, and how the run was set up."""

    rows: list[dict[str, Any]]
    per_token: dict[tuple[str, int], dict[str, np.ndarray]]
    info: dict[str, Any] = field(default_factory=dict)


def _noise(times: np.ndarray) -> np.ndarray:
    """Leave-one-out relative deviation per (rep, token): |t_r - m| / m, m the median of
    the other repetitions."""
    reps = times.shape[0]
    out = np.empty_like(times)
    for r in range(reps):
        others = np.median(np.delete(times, r, axis=0), axis=0)
        out[r] = np.abs(times[r] - others) / others
    return out


def _rel_pct(predicted: float, measured: float) -> float | None:
    return float(abs(predicted - measured) / measured * 100) if measured > 0 else None


def row_stats(measured_s: np.ndarray, predicted_s: np.ndarray) -> dict[str, Any]:
    """Summary of one layout × QD row; `measured_s` is [reps, n_tokens], `predicted_s`
    [draws, n_tokens] or [n_tokens]: both sides are taken per token as the median over
    their repetitions (draws), then compared; the `_all` p99 and the mean over every
    repetition's (draw's) tokens."""
    meas = np.median(measured_s, axis=0)
    predicted_all = np.atleast_2d(predicted_s)
    predicted_s = np.median(predicted_all, axis=0)
    ok = meas > 0
    err = np.abs(predicted_s[ok] - meas[ok]) / meas[ok] * 100
    m50, m99 = np.percentile(meas, [50, 99])
    p50, p99 = np.percentile(predicted_s, [50, 99])
    row: dict[str, Any] = {
        "measured_io_ms_p50": m50 * 1e3, "predicted_io_ms_p50": p50 * 1e3,
        "measured_io_ms_p99": m99 * 1e3, "predicted_io_ms_p99": p99 * 1e3,
        "measured_io_ms_mean": float(meas.mean()) * 1e3,
        "predicted_io_ms_mean": float(predicted_s.mean()) * 1e3,
        "error_p50_pct": float(np.median(err)) if len(err) else None,
        "error_p99_pct": float(abs(p99 - m99) / m99 * 100) if m99 > 0 else None,
        # over every repetition's (draw's) tokens, not per token: a tail that hits different
        # tokens each time (a throttle's held batches) shows here, not in the p99 above
        "error_p99_all_pct": _rel_pct(np.percentile(predicted_all, 99),
                                      np.percentile(measured_s, 99)),
        "error_mean_pct": _rel_pct(float(predicted_all.mean()), float(measured_s.mean())),
        "token_error_p90_pct": float(np.percentile(err, 90)) if len(err) else None,
        "bias_pct": float(np.median((predicted_s[ok] - meas[ok]) / meas[ok]) * 100)
        if ok.any() else None,
        "ratio": float(p50 / m50) if m50 > 0 else None,
        "noise_p50_pct": None, "noise_p90_pct": None,
    }
    if measured_s.shape[0] >= 2:
        nz = _noise(measured_s[:, ok]) * 100
        row["noise_p50_pct"] = float(np.median(nz))
        row["noise_p90_pct"] = float(np.percentile(nz, 90))
    return row


BASELINE_KEYS = {"predicted_io_ms_p50": "baseline_io_ms_p50",
                 "predicted_io_ms_p99": "baseline_io_ms_p99",
                 "predicted_io_ms_mean": "baseline_io_ms_mean",
                 "error_p50_pct": "baseline_error_p50_pct",
                 "error_p99_pct": "baseline_error_p99_pct", "bias_pct": "baseline_bias_pct"}
"""row_stats' prediction columns, and their names for the baseline's prediction."""


def baseline_stats(measured_s: np.ndarray, baseline_s: np.ndarray | None) -> dict[str, Any]:
    """The baseline's per-token I/O (ms) and its errors, by row_stats' rules; None values
    when there is no baseline (a profile given as bare parameters)."""
    if baseline_s is None:
        return dict.fromkeys(BASELINE_KEYS.values())
    stats = row_stats(measured_s, baseline_s)
    return {name: stats[key] for key, name in BASELINE_KEYS.items()}


def layout_row(name: str, plan: IOPlan, queue_depth: int, reps: int, measured_s: np.ndarray,
               dispatch_s: np.ndarray, predicted_s: np.ndarray) -> dict[str, Any]:
    """One report row: the plan's read counts, the statistics, the median issue wait."""
    return {"layout": name, "queue_depth": int(queue_depth), "n_tokens": plan.n_tokens,
            "reads_per_token": float(plan.reads_per_token().mean()),
            "bytes_per_token": float(plan.bytes_per_token().mean()),
            "mean_read_bytes": float(plan.length_bytes.mean()) if plan.n_reads else 0.0,
            "reps": reps, **row_stats(measured_s, predicted_s),
            "dispatch_ms_p50": float(np.median(dispatch_s)) * 1e3}


def run_info(spec: ValidationSpec, trace: ActivationTrace, measured: Measured,
             profile_info: dict[str, Any]) -> dict[str, Any]:
    """How the run was set up: trace, model, engines, stores, the profile, the date."""
    return {"trace": trace.meta.get("name") or trace.meta.get("source"),
            "trace_synthetic": trace.is_synthetic, "model": trace.geometry.name,
            "tokens": trace.n_tokens - trace.n_prompt_tokens, "set": spec.which,
            "engine": spec.model_engine, "reps": spec.reps, "o_direct": measured.o_direct,
            "reader_engine": measured.reader_engine, "stores": measured.stores,
            "profile": profile_info,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def meets_goal(row: dict[str, Any], *, p50_pct: float = 10.0, p99_pct: float = 20.0) -> bool:
    """The goal for one row: error_p50 ≤ 10 % and error of the p99 ≤ 20 %."""
    e50, e99 = row.get("error_p50_pct"), row.get("error_p99_pct")
    return e50 is not None and e99 is not None and e50 <= p50_pct and e99 <= p99_pct
