"""How well the device fit predicts points it did not see: k-fold cross-validation over a
profile's points, and the error at holdout points (measured, never fitted).

Each fold refits the continuous parameters without its points, from the full fit's values
on the full fit's discrete form (units, stripes, host mode), and predicts its points. Keeping
the form is the quick part (a fold does not redo the discrete search): the error is of the
continuous fit, which is what moves with the points.
"""

from __future__ import annotations

import time
from typing import Any

from .fast import FastDevice
from .fitsearch import FitResult, Problem, fit_progress, make_pool, solve
from .fitspace import round_params
from .predict import corrected_device, median_and_worst, point_errors
from .profile import DeviceParams, DevicePoint, PointError, ThrottleInfo
from .throttle import throttled

CV_FOLDS = 8
"""Folds of the standard cross-validation: on an 8 × 7 chunk × QD grid each fold leaves out
one point of every chunk but one, at different QDs (a diagonal)."""
CV_STEPS = 5
"""Least-squares steps of a fold's refit, warm-started from the full fit, with the full read
count (fewer reads would add their own sampling error to the fold's predictions)."""
CV_METHOD = ("k-fold along diagonals of the grid (fold = (row + QD column) mod k, a row "
             "being a batch size, pattern and chunk); each fold refits the continuous "
             f"parameters without its points (at most {CV_STEPS} least-squares steps from the "
             "full fit's values; units, stripes, host mode and transfer spread kept from the "
             "full fit) and predicts its points")


def fold_of(points: list[DevicePoint], k: int) -> list[int]:
    """Fold of each point: (row + column) mod k, a row being a (batch size, pattern, chunk)
    and a column a QD, each numbered in sorted order. Folds run along diagonals, so no fold
    takes a whole row or a whole column (every QD 1 point, say) when the grid allows."""
    rows = sorted({(p.batch_reads or 0, p.pattern, p.chunk_bytes) for p in points})
    cols = sorted({p.queue_depth for p in points})
    return [(rows.index((p.batch_reads or 0, p.pattern, p.chunk_bytes))
             + cols.index(p.queue_depth)) % k for p in points]


def fold_device(params: DeviceParams, train: list[DevicePoint], correction: str,
                throttle: ThrottleInfo | None = None):
    """The model a fit of `train` gives: the layered model, times its measured residual at
    `train`'s points when `correction` is measured-residual, behind `throttle` if any."""
    if correction == "measured-residual":
        return throttled(corrected_device(params, train, throttle), throttle)
    return throttled(FastDevice(params), throttle)


def layered_device(params: DeviceParams, throttle: ThrottleInfo | None = None):
    """The layered model alone (behind `throttle` if any)."""
    return throttled(FastDevice(params), throttle)


def cross_validate(points: list[DevicePoint], full: FitResult, k: int = CV_FOLDS, *,
                   batch_weight: float, quiet: bool = True,
                   correction: str = "measured-residual") -> dict[str, Any]:
    """FitInfo fields of a k-fold cross-validation of `full` (the fit of all `points`), with
    the profile's correction refitted per fold too (and the layered model's errors alone)."""
    t0 = time.perf_counter()
    k = max(2, min(int(k), len(points)))
    fold = fold_of(points, k)
    errors: list[PointError | None] = [None] * len(points)
    uncorrected: list[PointError | None] = [None] * len(points)
    pool = make_pool()
    try:
        with fit_progress(f"{k}-fold cross-validation", quiet) as tick:
            for f in range(k):
                train = [p for p, g in zip(points, fold) if g != f]
                problem = Problem(train, full.space, batch_weight, pool)
                c = solve(problem, full.form, full.u, None, CV_STEPS)
                params = round_params(full.space.params(c.u, full.form), full.space.base_us)
                params = params.model_copy(update={
                    "link_transfer_spread": full.params.link_transfer_spread})
                held = [i for i, g in enumerate(fold) if g == f]
                held_points = [points[i] for i in held]
                throttle = full.space.throttle
                for i, e, u in zip(held, point_errors(fold_device(params, train, correction,
                                                                  throttle), held_points),
                                   point_errors(layered_device(params, throttle), held_points)):
                    errors[i], uncorrected[i] = e, u
                tick()
    finally:
        if pool is not None:
            pool.shutdown()
    median, worst = median_and_worst(errors)
    u_median, u_worst = median_and_worst(uncorrected)
    return {"cv_folds": k, "cv_method": CV_METHOD, "cv_median_abs_error_pct": median,
            "cv_worst_abs_error_pct": worst, "cv_points": errors,
            "uncorrected_cv_median_abs_error_pct": u_median,
            "uncorrected_cv_worst_abs_error_pct": u_worst, "uncorrected_cv_points": uncorrected,
            "cv_duration_s": round(time.perf_counter() - t0, 1)}


def holdout_record(params: DeviceParams, points: list[DevicePoint], holdout: list[DevicePoint],
                   correction: str = "measured-residual",
                   throttle: ThrottleInfo | None = None) -> dict[str, Any]:
    """FitInfo fields of the error at the holdout points (none: nothing): of the profile's
    model (with its correction from `points`) and of the layered model alone."""
    if not holdout:
        return {}
    errors = point_errors(fold_device(params, points, correction, throttle), holdout)
    median, worst = median_and_worst(errors)
    u_median, u_worst = median_and_worst(point_errors(layered_device(params, throttle),
                                                      holdout))
    return {"holdout_median_abs_error_pct": median, "holdout_worst_abs_error_pct": worst,
            "holdout_points": errors, "uncorrected_holdout_median_abs_error_pct": u_median,
            "uncorrected_holdout_worst_abs_error_pct": u_worst}


def perturbed_points(points: list[DevicePoint], rel: float) -> list[DevicePoint]:
    """Every measured value moved by ±rel, the sign alternating from value to value: a fit
    that is stable gives the same answer on these (a stand-in for last-bit differences)."""
    out, sign = [], 1.0
    for p in points:
        update = {}
        for key in ("throughput_mb_s", "latency_mean_us", "batch_makespan_us"):
            if getattr(p, key) is not None:
                update[key] = getattr(p, key) * (1.0 + sign * rel)
                sign = -sign
        out.append(p.model_copy(update=update))
    return out
