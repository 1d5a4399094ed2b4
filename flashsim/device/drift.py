"""Drift: the same device measured slower or faster now than when it was calibrated.

A virtual disk's speed wanders by 15–30 % over minutes (its host's other tenants, its back
end's caches), so a profile calibrated minutes ago can be off by that much for reasons no
device parameter holds. Re-measuring a few of the profile's own calibration points (same
file, chunk, QD, batch length, reader) gives, per point, how much longer a read takes now
than then; their median is the drift factor, and `ScaledDevice` is the profile's model with
every time stretched by it. The model's structure (which batches cost what relative to
each other) stays the calibration's; only its time scale follows the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import DeviceModel, DeviceRun
from .profile import DeviceParams, DevicePoint


def point_key(p: DevicePoint) -> tuple[int, int, int, str]:
    """What makes two measurements the same point: chunk, QD, batch length, pattern."""
    return (int(p.chunk_bytes), int(p.queue_depth), int(p.batch_reads or 0), p.pattern)


def time_ratio(then: DevicePoint, now: DevicePoint) -> float:
    """How many times longer the point's reads take now: a short batch's makespan ratio, a
    steady point's inverse throughput ratio (a read of c bytes costs c / throughput)."""
    if then.batch_makespan_us is not None and now.batch_makespan_us is not None:
        return float(now.batch_makespan_us) / float(then.batch_makespan_us)
    return float(then.throughput_mb_s) / float(now.throughput_mb_s)


@dataclass
class Drift:
    """The drift factor (median of the per-point time ratios) and the ratios it rests on."""

    factor: float
    ratios: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, profile_points: Sequence[DevicePoint], probe_points: Sequence[DevicePoint]
           ) -> Drift | None:
        """Each probe measurement against the profile's point of the same key; per point the
        median over its measurements, the factor their median (None: no point in common)."""
        then = {point_key(p): p for p in profile_points}
        by_key: dict[tuple[int, int, int, str], list[float]] = {}
        for p in probe_points:
            if point_key(p) in then:
                by_key.setdefault(point_key(p), []).append(time_ratio(then[point_key(p)], p))
        if not by_key:
            return None
        ratios = [{"chunk_bytes": k[0], "queue_depth": k[1], "batch_reads": k[2] or None,
                   "pattern": k[3], "measurements": len(v), "time_ratio": float(np.median(v))}
                  for k, v in sorted(by_key.items())]
        return cls(float(np.median([r["time_ratio"] for r in ratios])), ratios)

    def to_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "points": self.ratios}


def scaled(device: Any, factor: float) -> Any:
    """`device` with its times × `factor`; behind a throttle, the device behind it (the
    throttle's caps are settings, not speeds that drift)."""
    from .throttle import ThrottledDevice

    if isinstance(device, ThrottledDevice):
        return ThrottledDevice(scaled(device.inner, factor), device.throttle, device.gap_s)
    return ScaledDevice(device, factor)


class ScaledDevice(DeviceModel):
    """A device model (fast, des or corrected) with every time `factor` × the inner one's,
    its after-compute batch cost included; the decode's wait cost (compute) is kept."""

    def __init__(self, inner: Any, factor: float) -> None:
        if not factor > 0.0:
            raise ValueError(f"drift factor must be > 0, got {factor}")
        self.inner = inner
        self.factor = float(factor)
        section = getattr(inner, "interleave", None)
        self.interleave = None if section is None else section.model_copy(
            update={"batch_overhead_us": float(section.batch_overhead_us) * self.factor})
        self.decode_wait = getattr(inner, "decode_wait", None)
        self.span = getattr(inner, "span", None)

    @property
    def params(self) -> DeviceParams:
        return self.inner.params

    def run(self, offsets: object, lengths: object, queue_depth: int) -> DeviceRun:
        """One batch from an idle device, every time stretched by the factor."""
        run = self.inner.run(offsets, lengths, queue_depth)
        f = self.factor
        return DeviceRun(run.start_s * f, run.finish_s * f, run.makespan_s * f)

    def run_batches(self, offsets: object, lengths: object, batch_ptr: object,
                    queue_depth: int, shares: object = None) -> np.ndarray:
        """Makespan (s) of every batch, times the factor."""
        return np.asarray(self.inner.run_batches(offsets, lengths, batch_ptr, queue_depth,
                                                 shares=shares)) * self.factor
