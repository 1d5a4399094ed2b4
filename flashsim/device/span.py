"""Span: how the time of the same reads depends on how much of the device they range over.

A calibration reads random offsets over its whole data file (gigabytes), a weight store of
a small model is a few MiB. On a RAM-backed device (zram) the copy out of a small span
stays in the CPU's caches and TLB, and the same short batch takes about half the time it
takes over 2 GiB; on a disk the span hardly matters. No layered-model term knows the span a
workload reads, so a standard calibration measures a few short-batch points again with the
reads confined to the first S bytes of its file (`span_points`), and the model's time for
a plan is scaled by the measured ratio at the plan's file size (`SpanCurve.factor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .profile import DevicePoint

STANDARD_SPANS = (4 << 20, 32 << 20, 256 << 20)
"""The spans a standard calibration measures its span points over: a small model's store, a
layer group, a medium model's FFN; the whole file is the fourth."""
SPAN_KEYS = ((4096, 1, 64), (16384, 8, 16), (65536, 1, 4), (131072, 8, 16), (16384, 32, 64))
"""Short batches (chunk, QD, reads per batch) measured again over each span: rows and merged
ranges at the plans' queue depths. Five, so that a span's effect is kept only when all
agree on its direction (by chance: 2 in 32)."""


def _key(p: DevicePoint) -> tuple[int, int, int | None, str]:
    return (int(p.chunk_bytes), int(p.queue_depth), p.batch_reads, p.pattern)


@dataclass(frozen=True)
class SpanCurve:
    """Time factors at measured spans (ascending), 1 at and beyond the calibration file."""

    spans_bytes: tuple[int, ...]
    factors: tuple[float, ...]
    file_bytes: int

    @classmethod
    def of(cls, points: Sequence[DevicePoint], span_points: Sequence[DevicePoint],
           file_bytes: int | None) -> SpanCurve | None:
        """From a profile's points and span points: per span, the median over the keys of
        span makespan / whole-file makespan; 1 where the keys disagree on its direction
        (drift, not span); made non-decreasing in span (reads over less are never slower).
        None when nothing was measured."""
        whole = {_key(p): float(p.batch_makespan_us) for p in points if p.batch_reads}
        by_span: dict[int, list[float]] = {}
        for p in span_points:
            if p.span_bytes and _key(p) in whole and p.batch_makespan_us:
                by_span.setdefault(int(p.span_bytes), []).append(
                    float(p.batch_makespan_us) / whole[_key(p)])
        spans = sorted(s for s in by_span if not file_bytes or s < file_bytes)
        if not spans or not file_bytes:
            return None
        factors = []
        for s in spans:
            r = np.asarray(by_span[s])
            agree = len(r) > 1 and (bool(np.all(r < 1.0)) or bool(np.all(r > 1.0)))
            factors.append(float(np.median(r)) if agree else 1.0)
        f = np.minimum.accumulate(np.r_[factors, 1.0][::-1])[::-1][:-1]
        return cls(tuple(spans), tuple(float(x) for x in f), int(file_bytes))

    def factor(self, span_bytes: int | None) -> float:
        """The factor for reads over `span_bytes`: linear in log span between the measured
        spans and the whole file (1); the smallest span's below it."""
        if not span_bytes or span_bytes >= self.file_bytes:
            return 1.0
        xs = np.log2(np.r_[self.spans_bytes, self.file_bytes].astype(float))
        ys = np.r_[self.factors, 1.0]
        return float(np.interp(np.log2(float(span_bytes)), xs, ys))

    def to_dict(self) -> dict[str, Any]:
        return {"file_bytes": self.file_bytes,
                "factors": {str(s): round(f, 4) for s, f in zip(self.spans_bytes, self.factors)}}


def span_factor(device: Any, span_bytes: int | None) -> float:
    """The span factor of a device model made from a profile (1 without span points)."""
    curve = getattr(device, "span_curve", None)
    return 1.0 if curve is None else curve.factor(span_bytes)
