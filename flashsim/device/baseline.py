"""An interpolation baseline over a profile's measured points: no device model, only the
measured curve, so that the layered model (fit.py) has a plain predictor to beat.

Steady state: throughput and mean latency are interpolated linearly in (log2 chunk, log2 QD)
on the logarithm of the value: bilinear on a full chunk × QD grid (RegularGridInterpolator),
over a Delaunay triangulation of scattered points (LinearNDInterpolator; the nearest point
outside their hull). A query outside the measured range is clamped to its edge. At a
measured point the measured value comes back; along a grid row whose values are monotone
the interpolated throughput is monotone too. Latency is interpolated as its ratio to the
closed-loop latency QD × chunk / throughput (Little's law), so beyond the measured range it
scales with chunk and QD at the clamped throughput; a point without a measured latency
counts ratio 1.

Short batches: a batch of n reads at QD q runs each read at the steady pace of its size at
QD min(q, n), so a read of c bytes costs c / throughput(c, min(q, n)); reads of mixed sizes
each cost their own, summed. On top every batch pays one start term:
    makespan = start + Σ_i len_i / throughput(len_i, min(q, n)).
The start is the median, over the profile's short-batch points, of measured makespan minus
that sum (at least 0; 0 for a profile without short-batch points). Offsets play no part:
the baseline knows no striping or locality.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator, RegularGridInterpolator
from scipy.spatial import QhullError

from ..errors import InputError
from .profile import DevicePoint, DeviceProfile


class Surface:
    """A value interpolated over (x, y) points (here log2 chunk, log2 QD), clamped outside."""

    def __init__(self, x: np.ndarray, y: np.ndarray, v: np.ndarray) -> None:
        keys, inverse = np.unique(np.column_stack([x, y]), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        v = np.bincount(inverse, weights=v) / np.bincount(inverse)  # repeats: their mean
        self.lo, self.hi = keys.min(axis=0), keys.max(axis=0)
        ux, uy = np.unique(keys[:, 0]), np.unique(keys[:, 1])
        self._const = self._line = self._grid = self._tri = self._near = None
        if len(keys) == 1:
            self._const = float(v[0])
        elif len(ux) == 1 or len(uy) == 1:  # one row or one column: a line
            axis = 1 if len(ux) == 1 else 0
            self._line = (axis, keys[:, axis], v)
        elif len(keys) == len(ux) * len(uy):  # a full grid, keys sorted by x then y
            self._grid = RegularGridInterpolator((ux, uy), v.reshape(len(ux), len(uy)))
        else:
            self._near = NearestNDInterpolator(keys, v)
            try:
                self._tri = LinearNDInterpolator(keys, v)
            except QhullError:  # all points on one line: the nearest one
                self._tri = None

    def __call__(self, x, y) -> np.ndarray:
        x, y = np.broadcast_arrays(np.clip(np.asarray(x, dtype=float), self.lo[0], self.hi[0]),
                                   np.clip(np.asarray(y, dtype=float), self.lo[1], self.hi[1]))
        if self._const is not None:
            return np.full(x.shape, self._const)
        if self._line is not None:
            axis, at, v = self._line
            return np.interp(y if axis == 1 else x, at, v)
        q = np.column_stack([x.ravel(), y.ravel()])
        if self._grid is not None:
            return self._grid(q).reshape(x.shape)
        out = self._tri(q) if self._tri is not None else np.full(len(q), np.nan)
        miss = ~np.isfinite(out)
        if miss.any():
            out[miss] = self._near(q[miss])
        return out.reshape(x.shape)


def _log2(values) -> np.ndarray:
    return np.log2(np.asarray(values, dtype=float))


@dataclass
class _Curve:
    """Steady-state throughput of one access pattern, and its latency as a fraction of the
    closed-loop latency QD × chunk / throughput (Little's law)."""

    log_tput: Surface
    log_latency_ratio: Surface

    @classmethod
    def of(cls, points: Sequence[DevicePoint]) -> _Curve:
        x = _log2([p.chunk_bytes for p in points])
        y = _log2([p.queue_depth for p in points])
        tput = np.array([p.throughput_mb_s for p in points])
        little_us = np.array([p.queue_depth * p.chunk_bytes for p in points]) / tput
        lat = np.array([p.latency_mean_us or little for p, little in zip(points, little_us)])
        return cls(Surface(x, y, np.log(tput)), Surface(x, y, np.log(lat / little_us)))


class Baseline:
    """The interpolation predictor of one profile's points (see the module doc)."""

    def __init__(self, points: Iterable[DevicePoint]) -> None:
        points = list(points)
        steady: dict[str, list[DevicePoint]] = {}
        for p in points:
            if p.batch_reads is None:
                steady.setdefault(p.pattern, []).append(p)
        if not steady:
            raise InputError("no steady-state points to interpolate", key="points",
                             expected="chunk × queue depth points without batch_reads")
        self.curves = {pattern: _Curve.of(pts) for pattern, pts in steady.items()}
        self.start_us = self._fit_start([p for p in points if p.batch_reads is not None])

    def _curve(self, pattern: str, *, fall_back: bool = False) -> _Curve:
        if pattern in self.curves:
            return self.curves[pattern]
        if fall_back and "random" in self.curves:
            return self.curves["random"]
        raise InputError(f"the profile has no steady-state {pattern} points", key="pattern",
                         expected="one of " + ", ".join(sorted(self.curves)))

    def throughput_mb_s(self, chunk_bytes, queue_depth, pattern: str = "random") -> np.ndarray:
        """Interpolated steady-state throughput (MB/s) at each (chunk, QD)."""
        curve = self._curve(pattern)
        return np.exp(curve.log_tput(_log2(chunk_bytes), _log2(queue_depth)))

    def latency_us(self, chunk_bytes, queue_depth, pattern: str = "random") -> np.ndarray:
        """Interpolated steady-state mean latency (µs) at each (chunk, QD)."""
        curve = self._curve(pattern)
        ratio = np.exp(curve.log_latency_ratio(_log2(chunk_bytes), _log2(queue_depth)))
        little_us = (np.asarray(queue_depth, dtype=float) * np.asarray(chunk_bytes, dtype=float)
                     / self.throughput_mb_s(chunk_bytes, queue_depth, pattern))
        return ratio * little_us

    def read_time_us(self, chunk_bytes, queue_depth, pattern: str = "random") -> np.ndarray:
        """Steady-state time per read (µs): chunk / throughput, the pace of completions."""
        tput = self.throughput_mb_s(chunk_bytes, queue_depth, pattern)
        return np.asarray(chunk_bytes, dtype=float) / tput

    def _batch_sum_us(self, chunk_bytes: int, queue_depth: int, batch_reads: int,
                      pattern: str) -> float:
        """Σ of per-read times of a uniform batch, on the pattern's curve (else random's)."""
        curve_pattern = pattern if pattern in self.curves else "random"
        self._curve(curve_pattern)
        qd = min(int(queue_depth), int(batch_reads))
        return float(batch_reads * self.read_time_us(chunk_bytes, qd, curve_pattern))

    def _fit_start(self, batch_points: Sequence[DevicePoint]) -> float:
        if not batch_points:
            return 0.0
        gaps = [p.batch_makespan_us - self._batch_sum_us(p.chunk_bytes, p.queue_depth,
                                                          p.batch_reads, p.pattern)
                for p in batch_points]
        return max(0.0, float(np.median(gaps)))

    def batch_makespan_us(self, chunk_bytes: int, queue_depth: int, batch_reads: int,
                          pattern: str = "random") -> float:
        """Makespan (µs) of a batch of `batch_reads` reads of `chunk_bytes` at `queue_depth`:
        what a short-batch point measures."""
        return self.start_us + self._batch_sum_us(chunk_bytes, queue_depth, batch_reads,
                                                  pattern)

    def batch_makespan_s(self, offsets, lengths, batch_ptr, queue_depth: int) -> np.ndarray:
        """Makespan (s) of each batch of a plan (reads offsets/lengths[ptr[b]:ptr[b+1]]) at
        `queue_depth`, each from an idle device; an empty batch takes 0."""
        length = np.asarray(lengths, dtype=np.int64).reshape(-1)
        ptr = np.asarray(batch_ptr, dtype=np.int64).reshape(-1)
        if len(np.asarray(offsets).reshape(-1)) != len(length):
            raise InputError(f"{len(np.asarray(offsets).reshape(-1))} offsets but "
                             f"{len(length)} lengths", key="reads")
        n_per = np.diff(ptr)
        qd_read = np.repeat(np.minimum(int(queue_depth), np.maximum(n_per, 1)), n_per)
        pairs, inverse = np.unique(np.column_stack([length, qd_read]), axis=0,
                                   return_inverse=True)
        per_read_us = self.read_time_us(pairs[:, 0], pairs[:, 1])[inverse.reshape(-1)] \
            if len(length) else np.zeros(0)
        csum = np.concatenate([[0.0], np.cumsum(per_read_us)])
        total_us = csum[ptr[1:]] - csum[ptr[:-1]]
        return np.where(n_per > 0, total_us + self.start_us, 0.0) * 1e-6


def baseline_of(source: Baseline | DeviceProfile | Sequence[DevicePoint] | str | os.PathLike
                ) -> Baseline:
    """A Baseline from a profile (object or YAML path), its points, or a Baseline."""
    if isinstance(source, Baseline):
        return source
    if isinstance(source, DeviceProfile):
        return Baseline(source.points)
    if isinstance(source, (str, os.PathLike)):
        return Baseline(DeviceProfile.load(source).points)
    return Baseline(source)


def predict_detail(profile, chunk_bytes: int, queue_depth: int,
                   pattern: str = "random") -> dict[str, float]:
    """Baseline throughput (MB/s) and mean latency (µs) of one steady-state point."""
    b = baseline_of(profile)
    return {"throughput_mb_s": float(b.throughput_mb_s(chunk_bytes, queue_depth, pattern)),
            "latency_mean_us": float(b.latency_us(chunk_bytes, queue_depth, pattern))}


def predict_point(profile, chunk_bytes: int, queue_depth: int) -> tuple[float, float]:
    """(throughput_mb_s, latency_us) of random reads of `chunk_bytes` at `queue_depth`, as
    `fit.predict_point` gives them for the model."""
    d = predict_detail(profile, chunk_bytes, queue_depth)
    return d["throughput_mb_s"], d["latency_mean_us"]


def predict_batch_makespan_us(profile, chunk_bytes: int, queue_depth: int, batch_reads: int,
                              pattern: str = "random") -> float:
    """Baseline makespan (µs) of one short batch, as `fit.predict_batch_makespan_us`."""
    return baseline_of(profile).batch_makespan_us(chunk_bytes, queue_depth, batch_reads,
                                                  pattern)


def batch_makespan_s(profile, offsets, lengths, batch_ptr, queue_depth: int) -> np.ndarray:
    """Baseline makespan (s) per batch of a plan, as a device model's `run_batches`."""
    return baseline_of(profile).batch_makespan_s(offsets, lengths, batch_ptr, queue_depth)
