"""The kernel's blk-throttle in front of a device model: a cgroup's read caps, by slices.

blk-throttle (cgroup v1 `blkio.throttle.read_iops_device` / `read_bps_device`) does not
pace reads: a slice (HZ/10, 100 ms) lets `iops × slice` reads and `bps × slice` bytes
through at the device's own speed, and holds what is over until the slice's end, when the
next slice's budget opens. A group idle past its slice starts afresh with a whole slice's
budget; a busy one keeps its slice, trimmed once two whole slices went by (all but the
last leave with their budget). Measured here behind 15 000 IOPS: a burst of 1600 reads
after idle ran its first 1500 in 15-17 ms and the rest ~100 ms after the first; after a
second at half the cap, 2959-3001 before the first wait; 64 KiB reads behind 300 MB/s,
457 a slice. So a plan's batches mostly run at the device's speed and now and then one
waits most of a slice: the state carries from batch to batch and across the time between
them, which a model timing each batch from an idle device cannot show.

`ThrottledDevice` wraps any device model (fast, des, corrected, scaled): `run` is one
closed-loop stream after idle, `run_batches` the batches one after another, `gap_s` apart.
A batch the budget cuts runs as pieces, each from an idle device (the held reads are
dispatched together when the slice opens), one after another.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from ..errors import InputError
from .base import DeviceModel, DeviceRun, check_batch_ptr, check_reads
from .cgroup import MOUNTS, SYS_DEV_BLOCK, blkio_root, disk_of
from .profile import DeviceParams, ThrottleInfo

STREAM_SLICES = 2.2
"""A steady-state point's prediction reads this many slices' budget: calibration times a
point over 0.32 s (3.2 slices of 100 ms) after a warm-up that leaves its slice spent, so
the prediction starts with a spent slice; 2.2 slices give the rates of 3.2 within 3 % in
less time (the fit predicts every point many times)."""
REPLAY_GAP_S = 5e-6
"""Idle time between two back-to-back batches of a replay (the reader's loop between its
`read_batch` calls): far below a slice, so it only orders the batches in time."""


@dataclass
class SliceBudget:
    """One cgroup's read budget, as blk-throttle keeps it (times in seconds)."""

    ios_per_slice: float
    bytes_per_slice: float
    slice_s: float
    start_s: float = -math.inf
    end_s: float = -math.inf
    ios: float = 0.0
    bytes: float = 0.0

    @classmethod
    def of(cls, info: ThrottleInfo) -> SliceBudget:
        """A group idle for long: the next read starts a fresh slice."""
        slice_s = info.slice_ms * 1e-3
        ios = math.inf if info.read_iops is None else math.floor(info.read_iops * slice_s)
        nbytes = math.inf if info.read_mb_s is None else math.floor(info.read_mb_s * 1e6 * slice_s)
        return cls(max(ios, 1.0), max(nbytes, 1.0), slice_s)

    @classmethod
    def spent(cls, info: ThrottleInfo) -> SliceBudget:
        """A slice begun at time 0 whose budget is gone (a warm-up read it)."""
        out = cls.of(info)
        out.start_s, out.end_s = 0.0, out.slice_s
        out.ios, out.bytes = out.ios_per_slice, out.bytes_per_slice
        return out

    def renew(self, t_s: float) -> None:
        """The slice a read arriving at `t_s` meets (`_renewed`)."""
        self.start_s, self.end_s, self.ios, self.bytes = _renewed(
            t_s, self.start_s, self.end_s, self.ios, self.bytes, self.ios_per_slice,
            self.bytes_per_slice, self.slice_s)

    def _room(self, t_s: float) -> tuple[float, float]:
        return _room_at(t_s, self.start_s, self.ios, self.bytes, self.ios_per_slice,
                        self.bytes_per_slice, self.slice_s)

    def admit(self, t_s: float, cum_bytes: np.ndarray, first: int, last: int) -> int:
        """How many of the reads first..last-1 (in order; `cum_bytes` the running byte count,
        0 before the first read) pass at `t_s`; they are charged."""
        room_ios, room_bytes = self._room(t_s)
        room_ios = max(0.0, room_ios)
        n = last - first if room_ios >= last - first else int(room_ios)
        if room_bytes != math.inf and n > 0:
            limit = cum_bytes[first] + max(0.0, room_bytes)
            n = min(n, int(np.searchsorted(cum_bytes[first + 1:last + 1], limit, side="right")))
        if n == 0 and self.ios == 0.0 and self.bytes == 0.0:
            n = 1  # one read larger than a whole slice's bytes: it goes when a slice opens
        self.ios += n
        self.bytes += float(cum_bytes[first + n] - cum_bytes[first])
        return n

    def next_slice(self, t_s: float) -> float:
        """When reads held at `t_s` go: the next slice boundary, where its budget opens."""
        release = self.start_s + (_slices(t_s, self.start_s, self.slice_s) + 1) * self.slice_s
        self.end_s = max(self.end_s, release + self.slice_s)
        self.renew(release)
        return release

    def busy_until(self, t_s: float) -> None:
        """Reads were dispatched until `t_s`: the slice lasts at least one more slice."""
        self.end_s = max(self.end_s, t_s + self.slice_s)


@njit(cache=True)
def _slices(t_s: float, start_s: float, slice_s: float) -> int:
    """Whole slices from a slice's start to `t_s` (the 1e-9 absorbs rounding)."""
    return math.floor((t_s - start_s) / slice_s + 1e-9)


@njit(cache=True)
def _renewed(t_s: float, start_s: float, end_s: float, ios: float, nbytes: float,
             ios_per_slice: float, bytes_per_slice: float, slice_s: float
             ) -> tuple[float, float, float, float]:
    """(start, end, reads, bytes) of the slice a read arriving at `t_s` meets: a fresh one
    after idle past the slice's end; else the current one, trimmed once two whole slices
    went by: all but the last of them leave, with as much of the budget (none of it below
    zero). The last one is kept, so a group that read below its caps can go at twice them
    for a slice."""
    if t_s > end_s:
        return t_s, t_s + slice_s, 0.0, 0.0
    k = _slices(t_s, start_s, slice_s) - 1
    if k >= 1:
        ios = max(0.0, ios - k * ios_per_slice)
        nbytes = max(0.0, nbytes - k * bytes_per_slice)
        start_s += k * slice_s
    return start_s, end_s, ios, nbytes


@njit(cache=True)
def _room_at(t_s: float, start_s: float, ios: float, nbytes: float, ios_per_slice: float,
             bytes_per_slice: float, slice_s: float) -> tuple[float, float]:
    """Reads and bytes that may still go at `t_s`: the budget of every slice begun."""
    slices = _slices(t_s, start_s, slice_s) + 1
    return slices * ios_per_slice - ios, slices * bytes_per_slice - nbytes


def pieces(budget: SliceBudget, cum_bytes: np.ndarray, first: int, last: int,
           t_s: float) -> list[tuple[float, int]]:
    """The batch of reads first..last-1 arriving at `t_s` cut by the budget: (release time,
    read count) of each piece, in order (one piece when it fits)."""
    budget.renew(t_s)
    out = [(t_s, budget.admit(t_s, cum_bytes, first, last))]
    done, release = first + out[0][1], t_s
    while done < last:
        release = budget.next_slice(release)
        n = budget.admit(release, cum_bytes, done, last)
        out.append((release, n))
        done += n
    return [(t, n) for t, n in out if n > 0]


class ThrottledDevice(DeviceModel):
    """A device model behind a blk-throttle read budget (see the module doc)."""

    def __init__(self, inner: Any, throttle: ThrottleInfo, gap_s: float = REPLAY_GAP_S) -> None:
        self.inner = inner
        self.throttle = throttle
        self.gap_s = float(gap_s)
        for name in ("interleave", "decode_wait", "span"):
            setattr(self, name, getattr(inner, name, None))

    @property
    def params(self) -> DeviceParams:
        return self.inner.params

    def stream_reads(self, chunk_bytes: int) -> int:
        """Reads of `chunk_bytes` a steady point's prediction runs (`steady_run`): as many as
        STREAM_SLICES slices let through."""
        b = SliceBudget.of(self.throttle)
        return int(STREAM_SLICES * min(b.ios_per_slice, b.bytes_per_slice / chunk_bytes)) + 1

    def steady_run(self, offsets: object, lengths: object, queue_depth: int) -> DeviceRun:
        """A closed-loop stream as calibration times one, after a warm-up that spent the
        slice: nothing goes until the next slice opens (the steady window leaves out the
        first reads, which waited for it)."""
        return self.run(offsets, lengths, queue_depth, budget=SliceBudget.spent(self.throttle))

    def run(self, offsets: object, lengths: object, queue_depth: int,
            budget: SliceBudget | None = None) -> DeviceRun:
        """One closed-loop stream of reads at `queue_depth` (after idle, or meeting `budget`
        at time 0): the budget's pieces one after another; a held read is issued when a slot
        freed, before its slice opens."""
        off, length = check_reads(offsets, lengths, queue_depth)
        cum = np.concatenate([[0], np.cumsum(length)])
        parts = pieces(budget or SliceBudget.of(self.throttle), cum, 0, len(off), 0.0)
        start, finish = np.empty(len(off)), np.empty(len(off))
        lo, end = 0, 0.0
        for release, n in parts:
            run = self.inner.run(off[lo:lo + n], length[lo:lo + n], queue_depth)
            t0 = max(release, end)
            start[lo:lo + n] = run.start_s + t0
            finish[lo:lo + n] = run.finish_s + t0
            if lo:  # read i was issued when the (i - QD)-th read before it completed
                idx = np.arange(lo, lo + min(int(queue_depth), n)) - int(queue_depth)
                ok = idx >= 0
                start[lo:lo + len(idx)][ok] = np.sort(finish[:lo])[idx[ok]]
            end = t0 + run.makespan_s
            lo += n
        return DeviceRun(start, finish, end)

    def run_batches(self, offsets: object, lengths: object, batch_ptr: object,
                    queue_depth: int, shares: object = None, gaps_s: object = None
                    ) -> np.ndarray:
        """Makespan (s) of every batch, read one after another `gap_s` apart (`gaps_s`: the
        idle time before each batch, e.g. a decode's compute), from a fresh budget. With
        `shares` (threads that each read their own share) a batch the budget cuts is timed
        in pieces without them."""
        off, length = check_reads(offsets, lengths, queue_depth)
        ptr = check_batch_ptr(batch_ptr, len(off))
        free = np.asarray(self.inner.run_batches(off, length, ptr, queue_depth, shares=shares),
                          dtype=np.float64)
        return self.sequence(off, length, ptr, queue_depth, free, gaps_s)

    def sequence(self, off: np.ndarray, length: np.ndarray, ptr: np.ndarray, queue_depth: int,
                 free_s: np.ndarray, gaps_s: object = None,
                 budget: SliceBudget | None = None) -> np.ndarray:
        """`run_batches` given the batches' makespans without the throttle (`free_s`, from
        the inner model) and the budget at time 0 (None: fresh)."""
        free = np.asarray(free_s, dtype=np.float64)
        gaps = np.broadcast_to(np.asarray(self.gap_s if gaps_s is None else gaps_s,
                                          dtype=np.float64), free.shape)
        cum = np.concatenate([[0], np.cumsum(length)])
        return _sequence(self.inner, off, length, ptr, int(queue_depth), free, gaps, cum,
                         budget or SliceBudget.of(self.throttle))


def _sequence(inner: Any, off: np.ndarray, length: np.ndarray, ptr: np.ndarray, qd: int,
              free: np.ndarray, gaps: np.ndarray, cum: np.ndarray, budget: SliceBudget
              ) -> np.ndarray:
    """The batches' makespans along one timeline: `free` where a batch fits its slice,
    its pieces one after another where it does not.

    A cut batch's pieces are timed by the inner model, which a timeline needs before it
    can go on; rather than one inner call per cut, the timeline is run with the pieces it
    has not timed yet guessed (a share of the batch's own time), all of them are then
    timed in one call, and the timeline is run again, until every cut it makes is timed
    (a cut depends on the time only through which slice a batch meets: usually once)."""
    timed: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    cum_f = cum.astype(np.float64)
    while True:
        trial = dataclasses.replace(budget)
        out, guessed = _timeline(free, gaps, ptr, cum, cum_f, trial, timed)
        if not guessed:
            budget.__dict__.update(trial.__dict__)
            return out
        reads, sub = [], [0]
        for b, counts in guessed:
            lo, hi = int(ptr[b]), int(ptr[b + 1])
            reads.append(np.arange(lo, hi))
            sub.extend(sub[-1] + np.cumsum(counts))
        index = np.concatenate(reads)
        made = np.asarray(inner.run_batches(off[index], length[index], np.array(sub), qd),
                          dtype=np.float64)
        first = 0
        for b, counts in guessed:
            timed[(b, counts)] = made[first:first + len(counts)]
            first += len(counts)


def _timeline(free: np.ndarray, gaps: np.ndarray, ptr: np.ndarray, cum: np.ndarray,
              cum_f: np.ndarray, budget: SliceBudget,
              timed: dict[tuple[int, tuple[int, ...]], np.ndarray]
              ) -> tuple[np.ndarray, list[tuple[int, tuple[int, ...]]]]:
    """One pass of `_sequence`: the makespans, and the cuts whose pieces it guessed."""
    out = free.copy()
    b, t_s, nb = 0, 0.0, len(free)
    guessed = []
    while b < nb:
        # the batches that fit, compiled (a fit predicts tens of thousands); stops at the
        # first that does not, with the budget renewed at its arrival time
        state = np.array([budget.start_s, budget.end_s, budget.ios, budget.bytes])
        b, t_s = _fitting(b, t_s, state, budget.ios_per_slice, budget.bytes_per_slice,
                          budget.slice_s, ptr, cum_f, free, gaps)
        budget.start_s, budget.end_s, budget.ios, budget.bytes = (float(x) for x in state)
        if b == nb:
            break
        lo, hi = int(ptr[b]), int(ptr[b + 1])
        parts = pieces(budget, cum, lo, hi, t_s)
        counts = tuple(n for _, n in parts)
        spans = timed.get((b, counts))
        if spans is None:
            guessed.append((b, counts))
            spans = free[b] * np.array(counts) / (hi - lo)
        end = t_s
        for (release, _), span in zip(parts, spans):
            end = max(release, end) + span
        out[b] = end - t_s
        t_s = end
        budget.busy_until(t_s)
        b += 1
    return out, guessed


@njit(cache=True)
def _fitting(b: int, t_s: float, state: np.ndarray, ios_per_slice: float,
             bytes_per_slice: float, slice_s: float, ptr: np.ndarray, cum: np.ndarray,
             free: np.ndarray, gaps: np.ndarray) -> tuple[int, float]:
    """The budget over batches b, b+1, ... while each fits whole; `state` (slice start,
    end, reads and bytes charged) updated in place. Returns the first batch that does not
    fit (len(free) if none) and its arrival time, else the time after the last."""
    start, end, ios, nbytes = state[0], state[1], state[2], state[3]
    for i in range(b, len(free)):
        t = t_s + gaps[i]
        n = ptr[i + 1] - ptr[i]
        if n == 0:
            t_s = t
            continue
        start, end, ios, nbytes = _renewed(t, start, end, ios, nbytes, ios_per_slice,
                                          bytes_per_slice, slice_s)
        room_ios, room_bytes = _room_at(t, start, ios, nbytes, ios_per_slice,
                                        bytes_per_slice, slice_s)
        size = cum[ptr[i + 1]] - cum[ptr[i]]
        if n > room_ios or size > room_bytes:
            state[0], state[1], state[2], state[3] = start, end, ios, nbytes
            return i, t
        ios += n
        nbytes += size
        t_s = t + free[i]
        end = max(end, t_s + slice_s)
    state[0], state[1], state[2], state[3] = start, end, ios, nbytes
    return len(free), t_s


def throttled(device: Any, throttle: ThrottleInfo | None) -> Any:
    """`device` behind `throttle` (itself without one)."""
    return device if throttle is None else ThrottledDevice(device, throttle)


def _rule(group: Path, name: str, disk: str) -> float:
    """A group's cap on `disk` ('major:minor') from blkio file `name` (inf: none)."""
    try:
        text = (group / name).read_text()
    except OSError:
        return math.inf
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == disk:
            return float(parts[1])
    return math.inf


def blkio_throttle_of(path: str | os.PathLike, *, proc_cgroup: str | os.PathLike
                      = "/proc/self/cgroup", mounts: str | os.PathLike = MOUNTS,
                      sys_dev_block: Path = SYS_DEV_BLOCK) -> ThrottleInfo | None:
    """The read caps on this process's reads of `path`: its blkio cgroup's rules for the
    file's disk and its ancestors' (the tightest wins); None where there are none, or no
    cgroup v1 blkio hierarchy, or `path` is on no local disk."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
        root = blkio_root(mounts)
        major, minor, _ = disk_of(path, sys_dev_block)
    except (OSError, InputError):
        return None
    rel = next((line.split(":", 2)[2] for line in lines if line.count(":") >= 2
                and "blkio" in line.split(":", 2)[1].split(",")), None)
    if rel is None:
        return None
    disk, group = f"{major}:{minor}", root / rel.strip().lstrip("/")
    iops = bps = math.inf
    for g in (group, *group.parents):
        iops = min(iops, _rule(g, "blkio.throttle.read_iops_device", disk))
        bps = min(bps, _rule(g, "blkio.throttle.read_bps_device", disk))
        if g == root:
            break
    if iops == math.inf and bps == math.inf:
        return None
    return ThrottleInfo(read_iops=None if iops == math.inf else iops,
                        read_mb_s=None if bps == math.inf else bps / 1e6,
                        source=f"blkio cgroup {group}, disk {disk}")
