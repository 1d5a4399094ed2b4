"""Predict a profile's points with the device model: the workloads behind each kind of
point, and the same steady-state rule calibration reads off the real reader.

A point's prediction runs the fast path on the workload the measurement used (random
chunk-aligned reads over a 2 GiB file, sequential ones, or short batches from an idle
device), so model and measurement are read off alike.
"""

from __future__ import annotations

import functools

import numpy as np

from ..units import check_queue_depth
from .base import DeviceModel
from .fast import FastDevice
from .profile import DeviceParams, DevicePoint, FitInfo, PointError, ThrottleInfo
from .residual import CorrectedDevice, Residual
from .throttle import throttled

SPAN_BYTES = 2 << 30
"""Random offsets of a predicted point cover a file this large (the calibration default)."""

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
    tput, lat = steady_core(start_s, finish_s, chunk_bytes, queue_depth)
    return {"throughput_mb_s": tput, "latency_mean_us": float(lat.mean()),
            "latency_p50_us": float(np.percentile(lat, 50)),
            "latency_p99_us": float(np.percentile(lat, 99))}


def steady_core(start_s: np.ndarray, finish_s: np.ndarray, chunk_bytes: int,
                queue_depth: int) -> tuple[float, np.ndarray]:
    """steady_point's throughput (MB/s) and the latencies (µs) it averages (n ≥ 2 reads)."""
    n = len(finish_s)
    k = max(int(queue_depth), n // 20)
    if 2 * k >= n - 1:
        k = max(0, (n - 2) // 4)
    f = np.sort(finish_s)
    span = f[n - 1 - k] - f[k]
    tput = (n - 1 - 2 * k) * chunk_bytes / span / 1e6 if span > 0 else float("nan")
    return float(tput), (finish_s - start_s)[k:n - k] * 1e6


def point_reads(chunk_bytes: int, queue_depth: int, pattern: str = "random",
                n_reads: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The workload behind a predicted point: (offsets, lengths)."""
    check_queue_depth(queue_depth)  # refused before 64 reads a unit of depth are allocated
    n = n_reads or max(2000, 64 * int(queue_depth))
    if pattern == "sequential":
        off = np.arange(n, dtype=np.int64) * chunk_bytes
    else:
        slots = max(1, SPAN_BYTES // chunk_bytes)
        off = np.random.default_rng(seed).integers(0, slots, size=n, dtype=np.int64) * chunk_bytes
    return off, np.full(n, chunk_bytes, dtype=np.int64)


def stream_reads(device: DeviceModel, chunk_bytes: int, queue_depth: int,
                 n_reads: int | None) -> int | None:
    """The reads a steady point's prediction runs: `n_reads` (None: point_reads' default);
    behind a throttle, whose steady state shows over several of its slices, as many as
    those let through (`ThrottledDevice.stream_reads`; at least 16 a unit of queue depth)."""
    need = getattr(device, "stream_reads", None)
    if need is None:
        return n_reads
    return max(16 * int(queue_depth), need(int(chunk_bytes)))


def steady_run(device: DeviceModel, off: np.ndarray, length: np.ndarray, queue_depth: int):
    """A closed-loop run of the reads as calibration times a steady point: from an idle
    device, or behind a throttle after a warm-up that spent its slice
    (`ThrottledDevice.steady_run`)."""
    return getattr(device, "steady_run", device.run)(off, length, queue_depth)


@functools.lru_cache(maxsize=512)
def cached_reads(chunk_bytes: int, queue_depth: int, pattern: str, n_reads: int | None):
    off, length = point_reads(chunk_bytes, queue_depth, pattern, n_reads)
    off.flags.writeable = False
    length.flags.writeable = False
    return off, length


@functools.lru_cache(maxsize=512)
def _cached_batches(chunk_bytes: int, batch_reads: int, pattern: str, n_total: int | None):
    arrays = batch_workload(chunk_bytes, batch_reads, pattern, n_total)
    for a in arrays:
        a.flags.writeable = False
    return arrays


def fit_values(device: DeviceModel, p: DevicePoint, n_reads: int | None) -> list[float]:
    """What the fit compares for one point: [throughput, mean latency] (steady state; no
    latency when the point has none) or [batch makespan µs] (short batch), as predicted."""
    if p.batch_reads is not None:
        return [predict_batch_makespan_us(device, p.chunk_bytes, p.queue_depth, p.batch_reads,
                                          p.pattern, n_reads)]
    n = None if n_reads is None else max(n_reads, 16 * p.queue_depth)
    n = stream_reads(device, p.chunk_bytes, p.queue_depth, n)
    off, length = cached_reads(int(p.chunk_bytes), int(p.queue_depth), p.pattern, n)
    run = steady_run(device, off, length, p.queue_depth)
    tput, lat = steady_core(run.start_s, run.finish_s, p.chunk_bytes, p.queue_depth)
    return [tput] if p.latency_mean_us is None else [tput, float(lat.mean())]


def predict_detail(params: DeviceParams | dict, chunk_bytes: int, queue_depth: int,
                   pattern: str = "random", n_reads: int | None = None) -> dict[str, float]:
    """Predicted throughput (MB/s) and mean / p50 / p99 latency (µs) of one point."""
    if isinstance(params, CorrectedDevice):
        detail = predict_detail(params.inner, chunk_bytes, queue_depth, pattern, n_reads)
        return params.residual.correct_detail(detail, chunk_bytes, queue_depth, pattern)
    device = params if isinstance(params, DeviceModel) else FastDevice(params)
    n_reads = stream_reads(device, chunk_bytes, queue_depth, n_reads)
    off, length = point_reads(chunk_bytes, queue_depth, pattern, n_reads)
    run = steady_run(device, off, length, queue_depth)
    return steady_point(run.start_s, run.finish_s, chunk_bytes, queue_depth)


BATCH_SAMPLE_READS = 1024
"""A short-batch point's prediction replays batches holding about this many reads in all."""


def batch_workload(chunk_bytes: int, batch_reads: int, pattern: str = "random",
                   n_total: int | None = None, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The workload behind a short-batch point: (offsets, lengths, batch pointer) of at least
    8 batches of `batch_reads` reads (about `n_total` reads in all), random chunk-aligned
    offsets over SPAN_BYTES (or each batch sequential, or clustered — every other chunk —
    from a random slot)."""
    n_batches = max(8, (n_total or BATCH_SAMPLE_READS) // int(batch_reads))
    n = n_batches * int(batch_reads)
    slots = max(1, SPAN_BYTES // chunk_bytes)
    rng = np.random.default_rng(seed)
    if pattern in ("sequential", "clustered"):
        step = 1 if pattern == "sequential" else 2
        first = rng.integers(0, max(1, slots - step * batch_reads), size=n_batches,
                             dtype=np.int64)
        off = (first[:, None] + step * np.arange(batch_reads, dtype=np.int64)[None, :])
        off = off.reshape(-1) * chunk_bytes
    else:
        off = rng.integers(0, slots, size=n, dtype=np.int64) * chunk_bytes
    ptr = np.arange(n_batches + 1, dtype=np.int64) * int(batch_reads)
    return off, np.full(n, chunk_bytes, dtype=np.int64), ptr


def predict_batch_makespan_us(params: DeviceParams | dict, chunk_bytes: int, queue_depth: int,
                              batch_reads: int, pattern: str = "random",
                              n_total: int | None = None) -> float:
    """Predicted median makespan (µs) of a batch of `batch_reads` reads at `queue_depth`, each
    batch from an idle device: what calibration's short-batch points measure."""
    device = params if isinstance(params, DeviceModel) else FastDevice(params)
    off, length, ptr = _cached_batches(int(chunk_bytes), int(batch_reads), pattern, n_total)
    return float(np.median(device.run_batches(off, length, ptr, int(queue_depth)))) * 1e6


def predict_point(params: DeviceParams | dict, chunk_bytes: int,
                  queue_depth: int) -> tuple[float, float]:
    """(throughput_mb_s, latency_us) of random reads of `chunk_bytes` at `queue_depth`."""
    d = predict_detail(params, int(chunk_bytes), int(queue_depth))
    return d["throughput_mb_s"], d["latency_mean_us"]


def corrected_device(device: FastDevice | DeviceParams, points: list[DevicePoint],
                     throttle: ThrottleInfo | None = None) -> CorrectedDevice:
    """The structural `device` times its measured residual at the steady-state `points`
    (the residual of the model behind `throttle`, when the points were measured behind one:
    what the throttle explains stays out of it)."""
    device = device if isinstance(device, FastDevice) else FastDevice(device)
    seen = throttled(device, throttle)
    steady = [p for p in points if p.batch_reads is None]
    model = [predict_detail(seen, p.chunk_bytes, p.queue_depth, p.pattern) for p in steady]
    batches = [p for p in points if p.batch_reads is not None]
    model_us = [predict_batch_makespan_us(seen, p.chunk_bytes, p.queue_depth, p.batch_reads,
                                          p.pattern) for p in batches]
    return CorrectedDevice(device, Residual.of(steady, model, batches, model_us))


def point_errors(params: DeviceParams | FastDevice | CorrectedDevice,
                 points: list[DevicePoint]) -> list[PointError]:
    """Signed % error (model − measured) of throughput and mean latency at every point."""
    device = params if isinstance(params, DeviceModel) else FastDevice(params)
    out = []
    for p in points:
        if p.batch_reads is not None:
            m = predict_batch_makespan_us(device, p.chunk_bytes, p.queue_depth, p.batch_reads,
                                          p.pattern)
            out.append(PointError(
                chunk_bytes=p.chunk_bytes, queue_depth=p.queue_depth, pattern=p.pattern,
                batch_reads=p.batch_reads,
                throughput_error_pct=round(100.0 * (p.batch_makespan_us / m - 1.0), 3)))
            continue
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


def median_and_worst(errors: list[PointError]) -> tuple[float, float]:
    """Median and worst absolute error (%) over every throughput and latency error."""
    values = [abs(e.throughput_error_pct) for e in errors]
    values += [abs(e.latency_error_pct) for e in errors if e.latency_error_pct is not None]
    return round(float(np.median(values)), 3), round(float(np.max(values)), 3)


def summarize(errors: list[PointError]) -> FitInfo:
    """Median and worst absolute error over every throughput and latency error."""
    median, worst = median_and_worst(errors)
    return FitInfo(median_abs_error_pct=median, worst_abs_error_pct=worst, points=errors)
