"""Span: how the time of the same reads depends on how much of the device they range over.

A calibration reads random offsets over its whole data file (gigabytes), a weight store of
a small model is a few MiB. On a RAM-backed device (zram) the copy out of a small span
stays in the CPU's caches and TLB, and the same short batch takes about half the time it
takes over 2 GiB; on a disk the span hardly matters. Both the bytes and the per-read work
get cheaper (the copy, and the lookups of the device's own page tables), in proportions
that differ from one calibration to the next, so a layout of few small reads gains less
than one of many bytes. A standard calibration measures five short batches of 4–128 KiB
reads again with the reads confined to the first S bytes of its file (`span_points`); the
fit finds per span a factor on the unit and link bandwidths and one on every per-read and
per-batch time that reproduce their time ratios (`fit_span`), and a plan over a file of S
bytes is simulated with its parameters scaled by the factors at S (`at_span`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .profile import DeviceParams, DevicePoint, DeviceProfile, SpanFactor, SpanInfo

STANDARD_SPANS = (4 << 20, 32 << 20, 256 << 20)
"""The spans a standard calibration measures its span points over: a small model's store, a
layer group, a medium model's FFN; the whole file is the fourth."""
SPAN_KEYS = ((4096, 1, 64), (16384, 8, 16), (65536, 1, 4), (131072, 8, 16), (16384, 32, 64))
"""Short batches (chunk, QD, reads per batch) measured again over each span: rows and merged
ranges at the plans' queue depths. Five, so that a span's effect is kept only when all
agree on its direction (by chance: 2 in 32)."""
BANDWIDTH_GRID = tuple(2.0 ** (j / 4) for j in range(0, 25))
"""Bandwidth factors a span fit tries: 1 to 64 in steps of 19 % (a grid: the same points
give the same factors on any CPU)."""
FIXED_TIME_GRID = tuple(2.0 ** (-j / 8) for j in range(0, 17))
"""Factors on the per-read and per-batch times a span fit tries: 1 down to 1/4, 8 % steps."""
FIXED_TIMES = ("host_overhead_us", "command_latency_us", "link_overhead_us", "link_wakeup_us",
               "transport_latency_us", "host_completion_us", "host_call_us", "batch_start_us",
               "link_pass_us")
"""The parameters that are time per read, per pass or per batch (no bytes in them)."""

Key = tuple[int, int, int]


def _key(p: DevicePoint) -> Key:
    return (int(p.chunk_bytes), int(p.queue_depth), int(p.batch_reads or 0))


def span_ratios(points: Sequence[DevicePoint], span_points: Sequence[DevicePoint]
                ) -> dict[int, dict[Key, float]]:
    """Per span, per batch key: makespan over the span / over the whole file."""
    whole = {_key(p): float(p.batch_makespan_us) for p in points
             if p.batch_reads and p.pattern == "random" and p.span_bytes is None}
    out: dict[int, dict[Key, float]] = {}
    for p in span_points:
        if p.span_bytes and p.batch_makespan_us and _key(p) in whole:
            out.setdefault(int(p.span_bytes), {})[_key(p)] = (
                float(p.batch_makespan_us) / whole[_key(p)])
    return out


def _span_factors(params: DeviceParams, ratios: dict[Key, float]) -> tuple[float, float]:
    """The grid (bandwidth, fixed-time) factors whose modelled time ratios are nearest the
    measured ones (least squares in log); the first of equals (the least change)."""
    from .predict import predict_batch_makespan_us

    keys = sorted(ratios)
    want = np.log([ratios[k] for k in keys])
    base = np.array([predict_batch_makespan_us(params, *k) for k in keys])
    best, best_cost = (1.0, 1.0), np.inf
    for m in BANDWIDTH_GRID:
        for t in FIXED_TIME_GRID:
            got = np.array([predict_batch_makespan_us(faster(params, m, t), *k) for k in keys])
            cost = round(float(np.sum((np.log(got / base) - want) ** 2)), 9)
            if cost < best_cost:
                best, best_cost = (m, t), cost
    return best


def fit_span(profile: DeviceProfile, params: DeviceParams) -> SpanInfo | None:
    """The profile's span section for `params`: per span below the file's size the median
    time ratio and, where all batches agree on its direction and are faster, the bandwidth
    and fixed-time factors; none stronger than a smaller span's (an effect of the span
    shows first at the smallest: one seen at a larger span only is chance). None without
    span points or a file size."""
    file_bytes = profile.measured.file_bytes
    by_span = span_ratios(profile.points, profile.span_points)
    spans = sorted(s for s in by_span if file_bytes and s < file_bytes)
    if not spans:
        return None
    rows = []
    for s in spans:
        r = np.array(list(by_span[s].values()))
        agree = len(r) > 1 and (bool(np.all(r < 1.0)) or bool(np.all(r > 1.0)))
        m, t = (_span_factors(params, by_span[s]) if agree and np.all(r < 1.0)
                else (1.0, 1.0))
        rows.append((s, float(np.median(r)), agree, m, t))
    ms = np.minimum.accumulate([row[3] for row in rows])
    ts = np.maximum.accumulate([row[4] for row in rows])
    return SpanInfo(file_bytes=int(file_bytes), spans=[
        SpanFactor(span_bytes=s, time_ratio=round(ratio, 4), agree=a, bandwidth_factor=float(m),
                   fixed_time_factor=float(t))
        for (s, ratio, a, _, _), m, t in zip(rows, ms, ts)])


def _interp_log(info: SpanInfo, span_bytes: int | None, values: list[float]) -> float:
    """Linear in log span between the spans and the whole file (1); the smallest span's
    value below it, 1 at and beyond the file's size."""
    if not span_bytes or span_bytes >= info.file_bytes or not info.spans:
        return 1.0
    xs = np.log2([*(float(f.span_bytes) for f in info.spans), float(info.file_bytes)])
    return float(np.exp(np.interp(np.log2(float(span_bytes)), xs, np.log([*values, 1.0]))))


def bandwidth_factor(info: SpanInfo | None, span_bytes: int | None) -> float:
    """The model's bandwidth factor for reads over `span_bytes`."""
    if info is None:
        return 1.0
    return _interp_log(info, span_bytes, [f.bandwidth_factor for f in info.spans])


def fixed_time_factor(info: SpanInfo | None, span_bytes: int | None) -> float:
    """The model's factor on per-read and per-batch times for reads over `span_bytes`."""
    if info is None:
        return 1.0
    return _interp_log(info, span_bytes, [f.fixed_time_factor for f in info.spans])


def time_ratio(info: SpanInfo | None, span_bytes: int | None) -> float:
    """The measured time ratio for reads over `span_bytes` (1 where the batches disagreed):
    what a model-free predictor (the interpolation baseline) scales its times by."""
    if info is None:
        return 1.0
    return _interp_log(info, span_bytes, [f.time_ratio if f.agree else 1.0
                                          for f in info.spans])


def faster(params: DeviceParams, bandwidth: float, fixed_time: float = 1.0) -> DeviceParams:
    """`params` with the unit and link bandwidths × `bandwidth` and every per-read and
    per-batch time × `fixed_time`."""
    if bandwidth == 1.0 and fixed_time == 1.0:
        return params
    update = {name: getattr(params, name) * fixed_time for name in FIXED_TIMES}
    update.update(unit_bandwidth_mb_s=params.unit_bandwidth_mb_s * bandwidth,
                  link_bandwidth_mb_s=params.link_bandwidth_mb_s * bandwidth)
    return params.model_copy(update=update)


def at_span(device: Any, span_bytes: int | None) -> Any:
    """The device model for reads over `span_bytes`: itself, or (a profile with a span
    section) the same model with its parameters scaled by the factors there, the residual,
    drift scaling and after-compute cost kept."""
    info = getattr(device, "span", None)
    factors = (bandwidth_factor(info, span_bytes), fixed_time_factor(info, span_bytes))
    if factors == (1.0, 1.0):
        return device
    out = _rebuilt(device, factors)
    for name in ("interleave", "decode_wait"):
        setattr(out, name, getattr(device, name, None))
    out.span = None  # already at its span
    return out


def _rebuilt(device: Any, factors: tuple[float, float]) -> Any:
    from .drift import ScaledDevice
    from .residual import CorrectedDevice
    from .throttle import ThrottledDevice

    if isinstance(device, CorrectedDevice):
        return CorrectedDevice(_rebuilt(device.inner, factors), device.residual)
    if isinstance(device, ScaledDevice):
        return ScaledDevice(_rebuilt(device.inner, factors), device.factor)
    if isinstance(device, ThrottledDevice):
        return ThrottledDevice(_rebuilt(device.inner, factors), device.throttle, device.gap_s)
    return type(device)(faster(device.params, *factors))
