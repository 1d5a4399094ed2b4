"""Fit the device model's parameters to a profile's points; predict any chunk × QD point.

A point's prediction runs the fast path on the same kind of workload the measurement used
(random chunk-aligned reads over a 2 GiB file, or sequential ones) and reads throughput and
latency off its steady state, exactly as calibration reads them off the real reader.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from ..errors import InputError
from .fast import FastDevice
from .profile import DeviceParams, DevicePoint, DeviceProfile, FitInfo, PointError

SPAN_BYTES = 2 << 30
"""Random offsets of a predicted point cover a file this large (the calibration default)."""

N_UNITS_GRID = (1, 2, 4, 8, 16, 32, 64, 128)
STRIPE_GRID = (4096, 16384, 65536, 262144)


def steady_point(start_s: np.ndarray, finish_s: np.ndarray, chunk_bytes: int,
                 queue_depth: int) -> dict[str, float]:
    """Throughput and latency of a closed-loop run, ramp-up and drain excluded.

    Throughput counts completions between the k-th and (n-k)-th finish (k = max(QD, n/20));
    latency statistics are over the reads issued in between (by index).
    """
    n = len(finish_s)
    if n < 2:
        lat = float(np.mean(finish_s - start_s)) if n else float("nan")
        tput = chunk_bytes / float(finish_s.max()) / 1e6 if n else float("nan")
        return {"throughput_mb_s": tput, "latency_mean_us": lat * 1e6,
                "latency_p50_us": lat * 1e6, "latency_p99_us": lat * 1e6}
    k = max(int(queue_depth), n // 20)
    if 2 * k >= n - 1:
        k = max(0, (n - 2) // 4)
    f = np.sort(finish_s)
    span = f[n - 1 - k] - f[k]
    tput = (n - 1 - 2 * k) * chunk_bytes / span / 1e6 if span > 0 else float("nan")
    lat = (finish_s - start_s)[k:n - k] * 1e6
    return {"throughput_mb_s": float(tput), "latency_mean_us": float(lat.mean()),
            "latency_p50_us": float(np.percentile(lat, 50)),
            "latency_p99_us": float(np.percentile(lat, 99))}


def point_reads(chunk_bytes: int, queue_depth: int, pattern: str = "random",
                n_reads: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The workload behind a predicted point: (offsets, lengths)."""
    n = n_reads or max(2000, 64 * int(queue_depth))
    if pattern == "sequential":
        off = np.arange(n, dtype=np.int64) * chunk_bytes
    else:
        slots = max(1, SPAN_BYTES // chunk_bytes)
        off = np.random.default_rng(seed).integers(0, slots, size=n, dtype=np.int64) * chunk_bytes
    return off, np.full(n, chunk_bytes, dtype=np.int64)


def predict_detail(params: DeviceParams | dict, chunk_bytes: int, queue_depth: int,
                   pattern: str = "random", n_reads: int | None = None) -> dict[str, float]:
    """Predicted throughput (MB/s) and mean / p50 / p99 latency (µs) of one point."""
    device = params if isinstance(params, FastDevice) else FastDevice(params)
    off, length = point_reads(chunk_bytes, queue_depth, pattern, n_reads)
    run = device.run(off, length, queue_depth)
    return steady_point(run.start_s, run.finish_s, chunk_bytes, queue_depth)


def predict_point(params: DeviceParams | dict, chunk_bytes: int,
                  queue_depth: int) -> tuple[float, float]:
    """(throughput_mb_s, latency_us) of random reads of `chunk_bytes` at `queue_depth`."""
    d = predict_detail(params, int(chunk_bytes), int(queue_depth))
    return d["throughput_mb_s"], d["latency_mean_us"]


def point_errors(params: DeviceParams, points: list[DevicePoint]) -> list[PointError]:
    """Signed % error (model − measured) of throughput and mean latency at every point."""
    device = FastDevice(params)
    out = []
    for p in points:
        d = predict_detail(device, p.chunk_bytes, p.queue_depth, p.pattern)
        lat_err = None
        if p.latency_mean_us is not None:
            lat_err = 100.0 * (d["latency_mean_us"] - p.latency_mean_us) / p.latency_mean_us
        out.append(PointError(
            chunk_bytes=p.chunk_bytes, queue_depth=p.queue_depth, pattern=p.pattern,
            throughput_error_pct=round(100.0 * (d["throughput_mb_s"] - p.throughput_mb_s)
                                       / p.throughput_mb_s, 3),
            latency_error_pct=None if lat_err is None else round(lat_err, 3)))
    return out


def summarize(errors: list[PointError]) -> FitInfo:
    """Median and worst absolute error over every throughput and latency error."""
    values = [abs(e.throughput_error_pct) for e in errors]
    values += [abs(e.latency_error_pct) for e in errors if e.latency_error_pct is not None]
    return FitInfo(median_abs_error_pct=round(float(np.median(values)), 3),
                   worst_abs_error_pct=round(float(np.max(values)), 3), points=errors)


_CONT = ("host_overhead_us", "command_latency_us", "unit_bandwidth_mb_s", "link_bandwidth_mb_s",
         "link_congestion_per_read", "link_overhead_us")
_LOWER = np.array([*np.log([0.01, 0.1, 1.0, 1.0]), 0.0, 0.0])
_UPPER = np.array([*np.log([5000.0, 1e5, 1e5, 1e6]), 0.1, 1e3])
_TOLERATED = math.log(1.12)
"""Errors beyond ±12% get a heavy extra residual: close to minimax, every point in reach."""
_PENALTY = 30.0
MIN_POINTS_FOR_EXTRAS = 10
"""With fewer points the link congestion and link overhead stay 0 (unidentified)."""


def _params_from(x: np.ndarray, n_units: int, stripe_bytes: int) -> DeviceParams:
    values = dict(zip(_CONT[:4], (float(v) for v in np.exp(x[:4]))))
    return DeviceParams(n_units=n_units, stripe_bytes=stripe_bytes,
                        link_congestion_per_read=float(x[4]) if len(x) > 4 else 0.0,
                        link_overhead_us=float(x[5]) if len(x) > 5 else 0.0, **values)


def _residuals(x: np.ndarray, n_units: int, stripe_bytes: int, points: list[DevicePoint],
               n_reads: int | None = None) -> np.ndarray:
    device = FastDevice(_params_from(x, n_units, stripe_bytes))
    res = []
    for p in points:
        n = None if n_reads is None else max(n_reads, 16 * p.queue_depth)
        d = predict_detail(device, p.chunk_bytes, p.queue_depth, p.pattern, n)
        res.append(math.log(d["throughput_mb_s"] / p.throughput_mb_s))
        if p.latency_mean_us is not None:
            res.append(math.log(d["latency_mean_us"] / p.latency_mean_us))
    res = np.asarray(res)
    return np.concatenate([res, _PENALTY * np.maximum(0.0, np.abs(res) - _TOLERATED)])


def _initial_guess(points: list[DevicePoint], n_units: int, extras: bool) -> np.ndarray:
    lat = [p.latency_mean_us for p in points if p.latency_mean_us is not None]
    small = min(points, key=lambda p: (p.queue_depth, p.chunk_bytes))
    base_us = min(lat) if lat else small.queue_depth * small.chunk_bytes / small.throughput_mb_s
    link = 1.1 * max(p.throughput_mb_s for p in points)
    x0 = np.log([max(0.05, 0.1 * base_us), max(0.2, 0.7 * base_us),
                 max(1.5, 2.0 * link / n_units), link])
    x0 = np.clip(x0, _LOWER[:4] + 1e-6, _UPPER[:4] - 1e-6)
    return np.append(x0, [0.002, 0.1 * base_us]) if extras else x0


def fit_params(points: list[DevicePoint], *, quick: bool = False) -> DeviceParams:
    """Least-squares fit (log errors of throughput and latency) over a small grid of units × stripes."""
    keys = {(p.chunk_bytes, p.queue_depth, p.pattern) for p in points}
    if len(keys) < 4:
        raise InputError(f"{len(keys)} distinct points are too few to fit the device model",
                         key="points", expected="at least 4 chunk × queue depth points")
    extras = len(keys) >= MIN_POINTS_FOR_EXTRAS
    n_x = 6 if extras else 4
    bounds = (_LOWER[:n_x], _UPPER[:n_x])
    candidates = []
    grid_units = N_UNITS_GRID[1::2] if quick else N_UNITS_GRID
    for n_units in grid_units:
        for stripe in STRIPE_GRID:
            x0 = _initial_guess(points, n_units, extras)
            r = least_squares(_residuals, x0, args=(n_units, stripe, points, 500),
                              bounds=bounds, diff_step=1e-2, max_nfev=25)
            candidates.append((float(np.sum(r.fun ** 2)), n_units, stripe, r.x))
    candidates.sort(key=lambda c: c[0])
    best = None
    for _, n_units, stripe, x in candidates[: (1 if quick else 4)]:
        r = least_squares(_residuals, x, args=(n_units, stripe, points), bounds=bounds,
                          diff_step=1e-2, max_nfev=150)
        cost = float(np.sum(r.fun ** 2))
        if best is None or cost < best[0]:
            best = (cost, n_units, stripe, r.x)
    params = _params_from(best[3], best[1], best[2])
    rounded = {k: float(f"{getattr(params, k):.5g}") for k in _CONT}
    return DeviceParams(n_units=params.n_units, stripe_bytes=params.stripe_bytes, **rounded)


def fit_profile(profile: DeviceProfile, *, quick: bool = False) -> DeviceProfile:
    """A copy of `profile` with fitted `params` and `fit` (per-point errors)."""
    params = fit_params(profile.points, quick=quick)
    fit = summarize(point_errors(params, profile.points))
    return profile.model_copy(update={"params": params, "fit": fit})
