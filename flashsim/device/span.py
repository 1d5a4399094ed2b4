"""Span: how the time of the same reads depends on how much of the device they range over.

A calibration reads random offsets over its whole data file (gigabytes), a weight store of
a small model is a few MiB. On a RAM-backed device (zram) the copy out of a small span
stays in the CPU's caches and TLB, and the same short batch takes about half the time it
takes over 2 GiB; on a disk the span hardly matters. What gets cheaper is the bytes, not
the per-read or per-batch work: a layout of few, small reads gains little, one of many
bytes a lot. So a standard calibration measures a few short batches again with the reads
confined to the first S bytes of its file (`span_points`), the fit finds per span the
factor on the unit and link bandwidths that reproduces their time ratios (`fit_span`), and
a plan over a file of S bytes is simulated with its bandwidths × the factor at S
(`at_span`).
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
FACTOR_GRID = tuple(2.0 ** (j / 16) for j in range(0, 97))
"""Bandwidth factors a span fit tries: 1 to 64 in steps of 4.4 % (a grid: the same points
give the same factor on any CPU)."""

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


def _bandwidth_factor(params: DeviceParams, ratios: dict[Key, float]) -> float:
    """The grid factor whose modelled time ratios are nearest the measured ones (least
    squares in log); the smallest of equals."""
    from .predict import predict_batch_makespan_us

    keys = sorted(ratios)
    want = np.log([ratios[k] for k in keys])
    base = np.array([predict_batch_makespan_us(params, *k) for k in keys])
    best, best_cost = 1.0, np.inf
    for m in FACTOR_GRID:
        got = np.array([predict_batch_makespan_us(faster_bytes(params, m), *k) for k in keys])
        cost = round(float(np.sum((np.log(got / base) - want) ** 2)), 9)
        if cost < best_cost:
            best, best_cost = m, cost
    return float(best)


def fit_span(profile: DeviceProfile, params: DeviceParams) -> SpanInfo | None:
    """The profile's span section for `params`: per span below the file's size the median
    time ratio and, where all batches agree on its direction and are faster, the bandwidth
    factor; factors made non-increasing in span (reads over less are never slower). None
    without span points or a file size."""
    file_bytes = profile.measured.file_bytes
    by_span = span_ratios(profile.points, profile.span_points)
    spans = sorted(s for s in by_span if file_bytes and s < file_bytes)
    if not spans:
        return None
    rows = []
    for s in spans:
        r = np.array(list(by_span[s].values()))
        agree = len(r) > 1 and (bool(np.all(r < 1.0)) or bool(np.all(r > 1.0)))
        m = _bandwidth_factor(params, by_span[s]) if agree and np.all(r < 1.0) else 1.0
        rows.append((s, float(np.median(r)), agree, m))
    running = np.maximum.accumulate([m for *_, m in rows][::-1])[::-1]
    return SpanInfo(file_bytes=int(file_bytes), spans=[
        SpanFactor(span_bytes=s, time_ratio=round(t, 4), agree=a, bandwidth_factor=float(m))
        for (s, t, a, _), m in zip(rows, running)])


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


def time_ratio(info: SpanInfo | None, span_bytes: int | None) -> float:
    """The measured time ratio for reads over `span_bytes` (1 where the batches disagreed):
    what a model-free predictor (the interpolation baseline) scales its times by."""
    if info is None:
        return 1.0
    return _interp_log(info, span_bytes, [f.time_ratio if f.agree else 1.0
                                          for f in info.spans])


def faster_bytes(params: DeviceParams, factor: float) -> DeviceParams:
    """`params` with the unit and link bandwidths × `factor`: every byte `factor` × cheaper,
    every per-read and per-batch cost as it was."""
    if factor == 1.0:
        return params
    return params.model_copy(update={
        "unit_bandwidth_mb_s": params.unit_bandwidth_mb_s * factor,
        "link_bandwidth_mb_s": params.link_bandwidth_mb_s * factor})


def at_span(device: Any, span_bytes: int | None) -> Any:
    """The device model for reads over `span_bytes`: itself, or (a profile with a span
    section) the same model with its bandwidths × the factor there, the residual, drift
    scaling and after-compute cost kept."""
    factor = bandwidth_factor(getattr(device, "span", None), span_bytes)
    if factor == 1.0:
        return device
    out = _rebuilt(device, factor)
    for name in ("interleave", "decode_wait"):
        setattr(out, name, getattr(device, name, None))
    out.span = None  # already at its span
    return out


def _rebuilt(device: Any, factor: float) -> Any:
    from .drift import ScaledDevice
    from .residual import CorrectedDevice

    if isinstance(device, CorrectedDevice):
        return CorrectedDevice(_rebuilt(device.inner, factor), device.residual)
    if isinstance(device, ScaledDevice):
        return ScaledDevice(_rebuilt(device.inner, factor), device.factor)
    return type(device)(faster_bytes(device.params, factor))
