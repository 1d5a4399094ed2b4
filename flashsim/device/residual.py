"""The measured residual: what the layered model misses at the calibration points, carried
to the points between them.

The layered model (des.py) gives a device's structure — queues, units, a shared link, host
work, batch starts — from a few parameters, but a real device can do things no parameter
expresses: a blkio throttle is a token bucket, zram copies synchronously on the submitting
CPU, a virtual disk's back end has its own moods. At every steady-state calibration point
the ratio measured / modelled (throughput and mean latency, per access pattern) is known;
between points it is interpolated in (log2 chunk, log2 QD) on its logarithm, exactly as the
interpolation baseline interpolates the values themselves (baseline.Surface), and clamped at
the grid's edges. The corrected model is the layered model times that ratio:

- a steady-state point: throughput × throughput ratio, latency × latency ratio;
- a batch of n reads at QD q (a plan's layer batch, a short-batch point): the model's
  makespan × the bytes-weighted mean over its reads of a time ratio at (length, min(q, n)):
  with short-batch points in the profile, their measured / modelled makespan, interpolated
  the same way (short batches are what plans are, and a device may serve a burst unlike a
  sustained stream: a token bucket lets a burst through at full speed); without them,
  1 / the steady-state throughput ratio (a read of c bytes costs c / throughput, so a
  slower device stretches the batch by its reads' ratios). The model still decides the
  batch's own dynamics: its start, its ramp, how its reads share units and link.

At a calibration point the corrected model reproduces the measurement, so only
cross-validated and held-out errors say how good it is (calibrate reports both, with and
without the correction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from .base import DeviceModel, DeviceRun
from .baseline import Surface
from .profile import DeviceParams, DevicePoint

CORRECTIONS = ("measured-residual", "none")
KEY_QD = 1 << 17
"""(length, QD) pairs are keyed as length × KEY_QD + QD (QD ≤ 65 536 < KEY_QD)."""
"""A profile's `correction`: the measured residual on top of the layered model, or none."""


class Residual:
    """Measured / modelled throughput and latency over a profile's steady-state points."""

    def __init__(self, surfaces: dict[str, tuple[Surface, Surface]],
                 batch: Surface | None = None) -> None:
        self.surfaces = surfaces
        self.batch = batch

    @classmethod
    def of(cls, points: Sequence[DevicePoint], model: Sequence[dict[str, float]],
           batch_points: Sequence[DevicePoint] = (),
           batch_model_us: Sequence[float] = ()) -> Residual:
        """The residual at steady-state `points`, given the structural model's prediction of
        each (predict.steady_point's keys), and at short-batch points, given the model's
        makespan of each (µs)."""
        by_pattern: dict[str, list[tuple[DevicePoint, dict[str, float]]]] = {}
        for p, m in zip(points, model):
            by_pattern.setdefault(p.pattern, []).append((p, m))
        surfaces = {}
        for pattern, pairs in by_pattern.items():
            pts, model = [p for p, _ in pairs], [m for _, m in pairs]
            tput = np.array([p.throughput_mb_s / m["throughput_mb_s"] for p, m in zip(pts, model)])
            lat = np.array([(p.latency_mean_us or m["latency_mean_us"]) / m["latency_mean_us"]
                            for p, m in zip(pts, model)])
            x = np.log2([p.chunk_bytes for p in pts])
            y = np.log2([p.queue_depth for p in pts])
            surfaces[pattern] = (Surface(x, y, np.log(tput)), Surface(x, y, np.log(lat)))
        batch = None
        if len(batch_points):
            ratio = [p.batch_makespan_us / m for p, m in zip(batch_points, batch_model_us)]
            batch = Surface(np.log2([p.chunk_bytes for p in batch_points]),
                            np.log2([p.queue_depth for p in batch_points]), np.log(ratio))
        return cls(surfaces, batch)

    def _surface(self, pattern: str, which: int) -> Surface | None:
        pair = self.surfaces.get(pattern) or self.surfaces.get("random")
        return None if pair is None else pair[which]

    def _ratio(self, which: int, chunk_bytes, queue_depth, pattern: str) -> np.ndarray:
        s = self._surface(pattern, which)
        shape = np.broadcast_shapes(np.shape(chunk_bytes), np.shape(queue_depth))
        if s is None:
            return np.ones(shape)
        return np.exp(s(np.log2(chunk_bytes), np.log2(queue_depth)))

    def throughput_ratio(self, chunk_bytes, queue_depth, pattern: str = "random") -> np.ndarray:
        """Measured / modelled throughput at each (chunk, QD); 1 without points of the pattern."""
        return self._ratio(0, chunk_bytes, queue_depth, pattern)

    def latency_ratio(self, chunk_bytes, queue_depth, pattern: str = "random") -> np.ndarray:
        """Measured / modelled mean latency at each (chunk, QD)."""
        return self._ratio(1, chunk_bytes, queue_depth, pattern)

    def batch_time_factor(self, lengths: np.ndarray, batch_ptr: np.ndarray,
                          queue_depth: int) -> np.ndarray:
        """Per batch: the bytes-weighted mean over its reads of the time ratio at (read
        length, min(QD, reads in the batch)): measured / modelled makespan of the profile's
        short-batch points where it has them, else 1 / the steady-state throughput ratio;
        1 for an empty batch."""
        lengths = np.asarray(lengths, dtype=np.int64)
        ptr = np.asarray(batch_ptr, dtype=np.int64)
        n_reads = np.diff(ptr)
        out = np.ones(len(n_reads))
        full = n_reads > 0
        if not len(lengths) or not full.any():
            return out
        # a plan repeats few (length, QD) pairs: interpolate each once
        keys, where = _distinct_keys(lengths, ptr, int(queue_depth))
        order = np.argsort(keys)  # sorted, as numpy's vectorised log and exp are given them
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        keys = keys[order]
        inv = self._time_ratio(keys // KEY_QD, keys % KEY_QD)[rank[where]]
        starts = ptr[:-1][full]
        weighted = np.add.reduceat(lengths * inv, starts)
        total = np.add.reduceat(lengths.astype(float), starts)
        out[full] = weighted / total
        return out

    def _time_ratio(self, lengths: np.ndarray, qds: np.ndarray) -> np.ndarray:
        if self.batch is not None:  # measured short batches: their own time ratio
            return np.exp(self.batch(np.log2(lengths), np.log2(qds)))
        return 1.0 / self.throughput_ratio(lengths, qds)

    def correct_detail(self, detail: dict[str, float], chunk_bytes: int, queue_depth: int,
                       pattern: str = "random") -> dict[str, float]:
        """A steady-state prediction (predict.steady_point's keys) with the residual applied."""
        t = float(self.throughput_ratio(chunk_bytes, queue_depth, pattern))
        lat = float(self.latency_ratio(chunk_bytes, queue_depth, pattern))
        return {"throughput_mb_s": detail["throughput_mb_s"] * t,
                **{k: detail[k] * lat for k in ("latency_mean_us", "latency_p50_us",
                                                 "latency_p99_us")}}


@njit(cache=True)
def _slot(key, mask):
    """Where a key's search starts in a table of mask + 1 slots (a power of two): its bits
    mixed, since the low bits of length × KEY_QD + QD are the QD alone."""
    h = (key ^ (key >> 17)) * -7046029254386353131  # 0x9E3779B97F4A7C15, wrapping
    return (h ^ (h >> 31)) & mask


@njit(cache=True)
def _read_keys(lengths, ptr, queue_depth, keys, table):
    """The distinct keys length × KEY_QD + min(QD, reads in its batch) of a plan's reads
    written to `keys` in the order first met, and each read's index into them; returns
    (their number, or -1 once more than len(keys): call again with more room), and the
    indices. One pass with `table` (-1 everywhere, a power of two ≥ 2 × len(keys) long):
    a sort of every read's key cost more than the simulation it corrects."""
    where = np.empty(len(lengths), np.int64)
    mask = len(table) - 1
    n = 0
    for b in range(len(ptr) - 1):
        qd = min(queue_depth, max(ptr[b + 1] - ptr[b], 1))
        for i in range(ptr[b], ptr[b + 1]):
            key = lengths[i] * KEY_QD + qd
            h = _slot(key, mask)
            while table[h] >= 0 and keys[table[h]] != key:
                h = (h + 1) & mask
            if table[h] < 0:  # a new key
                if n == len(keys):
                    return -1, where
                keys[n] = key
                table[h] = n
                n += 1
            where[i] = table[h]
    return n, where


def _distinct_keys(lengths: np.ndarray, ptr: np.ndarray, queue_depth: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """`_read_keys` with room enough: the distinct keys and each read's index into them."""
    room = 1024
    while True:
        keys = np.empty(room, np.int64)
        n, where = _read_keys(lengths, ptr, queue_depth, keys, np.full(4 * room, -1, np.int64))
        if n >= 0:
            return keys[:n], where
        room *= 8


class CorrectedDevice(DeviceModel):
    """A device engine (fast or des) with the measured residual applied to what it returns."""

    def __init__(self, inner, residual: Residual) -> None:
        self.inner = inner
        self.residual = residual

    @property
    def params(self) -> DeviceParams:
        return self.inner.params

    def run(self, offsets: object, lengths: object, queue_depth: int):
        """One batch from an idle device, every time stretched by the batch's factor."""
        run = self.inner.run(offsets, lengths, queue_depth)
        length = np.asarray(lengths, dtype=np.int64).reshape(-1)
        f = float(self.residual.batch_time_factor(length, np.array([0, len(length)]),
                                                  queue_depth)[0])
        return DeviceRun(run.start_s * f, run.finish_s * f, run.makespan_s * f)

    def run_batches(self, offsets: object, lengths: object, batch_ptr: object,
                    queue_depth: int, shares: object = None) -> np.ndarray:
        """Makespan (s) of every batch, each times its factor (see the module doc)."""
        makespan = self.inner.run_batches(offsets, lengths, batch_ptr, queue_depth,
                                          shares=shares)
        return makespan * self.residual.batch_time_factor(
            np.asarray(lengths).reshape(-1), np.asarray(batch_ptr).reshape(-1), queue_depth)

