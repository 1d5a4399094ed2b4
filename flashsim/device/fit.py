"""Fit the device model's parameters to a profile's points; predict any chunk × QD point.

The fit is least squares on log errors (a heavy extra residual beyond ±12 %), regularised
toward absent terms so that terms which trade off get one answer, searched over units ×
stripes × host modes from fixed seeds (`fitsearch`). The same points give the same
parameters on any CPU, within the last of their SIGNIFICANT_DIGITS.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.optimize import minimize_scalar

from ..errors import InputError
from .crossval import CV_FOLDS, cross_validate, holdout_record, layered_device
from .fast import FastDevice
from .fitsearch import FULL, QUICK, FitResult, Problem, fit_progress, make_pool, search
from .fitspace import (
    HOST_MODES,
    N_UNITS_GRID,
    STRIPE_GRID,
    Space,
    base_time_us,
    round_params,
)
from .predict import (
    BATCH_SAMPLE_READS,
    SPAN_BYTES,
    batch_workload,
    cached_reads,
    median_and_worst,
    point_errors,
    point_reads,
    predict_batch_makespan_us,
    predict_detail,
    predict_point,
    steady_core,
    steady_point,
    steady_run,
    summarize,
)
from .profile import DeviceParams, DevicePoint, DeviceProfile, ThrottleInfo
from .residual import CORRECTIONS
from .span import fit_span
from .throttle import throttled

_steady_core = steady_core
"""The old name of steady_core (tests' shared cases import it)."""

__all__ = ["BATCH_SAMPLE_READS", "BATCH_WEIGHT", "CV_FOLDS", "HOST_MODES", "N_UNITS_GRID", "SPAN_BYTES",
           "STRIPE_GRID", "batch_workload", "fit_params", "fit_profile", "fit_transfer_spread",
           "median_and_worst", "point_errors", "point_reads", "predict_batch_makespan_us",
           "predict_detail", "predict_point", "steady_point", "summarize"]

BATCH_WEIGHT = 3.0
"""Weight of a short-batch point's log error in the fit, relative to a steady-state value:
short batches are what a plan's (token, layer) batches are, and with weight 1 the fit traded
them for the steady-state latencies."""
MIN_POINTS_FOR_EXTRAS = 10
"""With fewer points only the first four parameters are fitted; the others keep their
defaults (no congestion, link overhead, completion cost, transport delay; unshared host)."""

FIT_METHOD = ("least squares on log errors (beyond ±12 % penalised), terms beyond the core "
              "four pulled toward 0, forward differences of 1 %; units × stripes × host modes "
              "searched from fixed seeds by neighbour moves")


def check_points(points: list[DevicePoint]) -> int:
    """The number of distinct steady-state points; InputError when too few to fit."""
    keys = {(p.chunk_bytes, p.queue_depth, p.pattern) for p in points if p.batch_reads is None}
    if len(keys) < 4:
        raise InputError(f"{len(keys)} distinct points are too few to fit the device model",
                         key="points", expected="at least 4 chunk × queue depth points")
    return len(keys)


def fit_model(points: list[DevicePoint], *, quick: bool = False,
              batch_weight: float = BATCH_WEIGHT,
              host_modes: tuple[tuple[int, bool], ...] | None = None,
              quiet: bool = True, exclude: frozenset[str] = frozenset(),
              throttle: ThrottleInfo | None = None) -> FitResult:
    """The fit behind `fit_params`, with the form and coordinates it ended on; `exclude`:
    terms beyond the core four to leave out (an ablation); `throttle`: the blk-throttle the
    points were measured behind (the device behind it is fitted)."""
    extras = check_points(points) >= MIN_POINTS_FOR_EXTRAS
    space = Space(base_time_us(points), extras, any(p.batch_reads is not None for p in points),
                  frozenset(exclude), throttle)
    if host_modes is None:
        host_modes = HOST_MODES if extras and not quick else HOST_MODES[:1]
    pool = make_pool()
    try:
        problem = Problem(points, space, batch_weight, pool)
        with fit_progress("device fit", quiet) as tick:
            best = search(problem, tuple(host_modes), QUICK if quick else FULL, tick)
    finally:
        if pool is not None:
            pool.shutdown()
    params = round_params(space.params(best.u, best.form), space.base_us)
    spread = fit_transfer_spread(params, points, throttle)
    params = params.model_copy(update={"link_transfer_spread": round(spread, 3) + 0.0})
    return FitResult(params, space, best.form, best.u)


def fit_params(points: list[DevicePoint], *, quick: bool = False,
               batch_weight: float = BATCH_WEIGHT,
               host_modes: tuple[tuple[int, bool], ...] | None = None,
               quiet: bool = True) -> DeviceParams:
    """Fit the model to the points (see the module doc).

    `batch_weight` multiplies a short-batch point's log error (steady-state ones count 1).
    `host_modes`: the (host_cpus, link_passes) pairs to try (default HOST_MODES with enough
    points and not quick, else unshared without passes). `quick`: one seed form and fewer
    steps. `quiet`: no progress counter."""
    return fit_model(points, quick=quick, batch_weight=batch_weight, host_modes=host_modes,
                     quiet=quiet).params


TRANSFER_SPREAD_MIN_CHUNK = 65536
"""The transfer spread is fitted on a QD 1 point of at least this chunk size, where the
link transfer is most of a read's time (below it the command latency dominates)."""
TRANSFER_SPREAD_READS = 4000
"""Reads simulated per trial of the transfer-spread fit (a stable p99)."""


def fit_transfer_spread(params: DeviceParams, points: list[DevicePoint],
                        throttle: ThrottleInfo | None = None) -> float:
    """`link_transfer_spread` that gives the model the measured latency p99 / p50 at the
    largest-chunk steady QD 1 point (≥ TRANSFER_SPREAD_MIN_CHUNK, with both percentiles);
    0 without such a point. A 1-D fit after the others: the spread (mean 1) leaves QD 1
    means alone, and means are all the main fit sees."""
    tails = [p for p in points if p.queue_depth == 1 and p.batch_reads is None
             and p.pattern == "random" and p.chunk_bytes >= TRANSFER_SPREAD_MIN_CHUNK
             and p.latency_p50_us and p.latency_p99_us]
    if not tails:
        return 0.0
    p = max(tails, key=lambda q: q.chunk_bytes)
    target = math.log(p.latency_p99_us / p.latency_p50_us)
    if target <= 0.0:
        return 0.0
    off, length = cached_reads(int(p.chunk_bytes), 1, "random", TRANSFER_SPREAD_READS)

    def miss(spread: float) -> float:
        device = FastDevice(params.model_copy(update={"link_transfer_spread": spread}))
        run = steady_run(throttled(device, throttle), off, length, 1)
        _, lat = steady_core(run.start_s, run.finish_s, p.chunk_bytes, 1)
        p50, p99 = np.percentile(lat, [50, 99])
        return (math.log(p99 / p50) - target) ** 2

    r = minimize_scalar(miss, bounds=(0.0, 1.0), method="bounded", options={"xatol": 2e-3})
    return float(r.x) if r.fun < miss(0.0) else 0.0


def fit_profile(profile: DeviceProfile, *, quick: bool = False,
                batch_weight: float = BATCH_WEIGHT, cv_folds: int = 0,
                quiet: bool = True, correction: str = "auto") -> DeviceProfile:
    """A copy of `profile` with fitted `params`, its `correction` and `fit`: per-point errors
    of the layered model, the error at its holdout points (measured, never fitted) and, with
    `cv_folds` ≥ 2, the k-fold cross-validated error (`crossval`), each of the corrected
    model and of the layered model alone. In sample the corrected model is exact, so the
    per-point errors are the layered model's.

    `correction` auto keeps the measured residual only where it earns its place: when its
    cross-validated median |error| is below the layered model's alone (auto runs the
    cross-validation with CV_FOLDS folds if `cv_folds` is 0)."""
    if correction not in (*CORRECTIONS, "auto"):
        raise InputError(f"unknown correction {correction!r}", key="correction",
                         expected="auto, " + " or ".join(CORRECTIONS))
    if correction == "auto" and not cv_folds:
        cv_folds = CV_FOLDS
    t0 = time.perf_counter()
    result = fit_model(profile.points, quick=quick, batch_weight=batch_weight, quiet=quiet,
                       throttle=profile.throttle)
    fit = summarize(point_errors(layered_device(result.params, profile.throttle),
                                 profile.points))
    cv = {}
    if cv_folds:
        cv = cross_validate(profile.points, result, cv_folds, batch_weight=batch_weight,
                            quiet=quiet, correction=CORRECTIONS[0])
    chosen, why = choose_correction(correction, cv)
    if cv and chosen == "none":  # the profile's own errors are then the layered model's
        cv = {**cv, "cv_median_abs_error_pct": cv["uncorrected_cv_median_abs_error_pct"],
              "cv_worst_abs_error_pct": cv["uncorrected_cv_worst_abs_error_pct"],
              "cv_points": cv["uncorrected_cv_points"]}
    cv.pop("uncorrected_cv_points", None)
    fit = fit.model_copy(update={
        "method": FIT_METHOD, "duration_s": round(time.perf_counter() - t0, 1),
        "correction_method": why, **cv,
        **holdout_record(result.params, profile.points, profile.holdout_points, chosen,
                         profile.throttle)})
    return profile.model_copy(update={"params": result.params, "fit": fit,
                                      "correction": chosen,
                                      "span": fit_span(profile, result.params)})


def choose_correction(setting: str, cv: dict) -> tuple[str, str]:
    """The correction `setting` gives and why: auto picks the measured residual when its
    cross-validated median |error| is below the layered model's alone."""
    if setting != "auto":
        return setting, f"{setting}: as asked"
    with_pct = cv["cv_median_abs_error_pct"]
    without_pct = cv["uncorrected_cv_median_abs_error_pct"]
    chosen = CORRECTIONS[0] if with_pct < without_pct else "none"
    return chosen, (f"auto: {chosen} ({cv['cv_folds']}-fold cross-validated median |error| "
                    f"{with_pct:.1f}% with the measured residual, {without_pct:.1f}% without)")
