"""The device fit's parameter space: the terms a candidate fits, their bounds (each with its
physical meaning), the scaled coordinates the optimizer moves in, and the discrete forms.

The optimizer works in coordinates u of similar reach: log(value) for the four core terms
(positive, spanning decades), value / scale for the others, the scale being the points' own
time scale for times (`base_us`) and a natural unit for fractions. One step of 0.01 in u is
then a 1 % change of a core term or 1 % of the device's base time, which keeps the fit's
finite differences well above floating-point noise and comparable across terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .profile import DeviceParams, DevicePoint, ThrottleInfo


class Term(NamedTuple):
    """One continuous parameter: its bounds, coordinates and whether it is pulled to 0."""

    name: str
    log: bool
    """Fitted as log(value) (positive, wide range); else as value / scale."""
    lower: float
    upper: float
    scale: float | None
    """Unit of the coordinate of a linear term; None: the points' base time (µs)."""
    pulled: bool
    """Regularised toward 0 ("absent"): among parameter sets that fit alike, the fit takes
    the one with the least of it, which makes trade-offs between terms unique."""


BASE = None
TERMS = (
    # submit software time: 50 ns (a few hundred instructions, below any real submit path)
    # to 1 ms (a host that slow would hide any flash device)
    Term("host_overhead_us", True, 0.05, 1000.0, None, False),
    # time to first byte: 1 µs (storage-class memory) to 10 ms (a disk seek)
    Term("command_latency_us", True, 1.0, 1e4, None, False),
    # one unit's transfer rate: 1 MB/s (a slow SD-card die) to 100 GB/s (no single flash unit)
    Term("unit_bandwidth_mb_s", True, 1.0, 1e5, None, False),
    # the shared link: 10 MB/s (USB 1) to 200 GB/s (above PCIe 6 x16)
    Term("link_bandwidth_mb_s", True, 10.0, 2e5, None, False),
    # each read in flight slows transfers by at most 10 % (QD 64: 7.3x): past that the
    # term would be standing in for a missing mechanism
    Term("link_congestion_per_read", False, 0.0, 0.1, 0.01, True),
    # per-read command processing on the link: up to 1 ms (slower is no flash back end)
    Term("link_overhead_us", False, 0.0, 1000.0, BASE, True),
    # reaping one completion: up to 1 ms of host software per read
    Term("host_completion_us", False, 0.0, 1000.0, BASE, True),
    # a completion-path delay occupying nothing: up to 10 ms (a network round trip)
    Term("transport_latency_us", False, 0.0, 1e4, BASE, True),
    # waking an idle back end: up to 10 ms (a drive spinning up is not in the model)
    Term("link_wakeup_us", False, 0.0, 1e4, BASE, True),
    # command-latency variation: 0 (every read alike) to 1 (exponential). Unbounded, a fit
    # drove it to ~2.7: means within 22 %, but the median command latency at 0.09 x the
    # mean (QD 1, 4 KiB: p50 43 µs, p99 600 µs against 66 / 127 µs measured)
    Term("command_latency_spread", False, 0.0, 1.0, 1.0, True),
    # one system call: up to 1 ms
    Term("host_call_us", False, 0.0, 1000.0, BASE, True),
    # 0 (no amortization) to 1 (the per-read overhead divided by the reads in flight: one
    # pass serves the whole queue for the cost of one read)
    Term("link_amortization_per_read", False, 0.0, 1.0, 1.0, True),
    # fixed time of one pass of the link: up to 10 ms
    Term("link_pass_us", False, 0.0, 1e4, BASE, True),
    # fixed cost of starting a batch: up to 10 ms
    Term("batch_start_us", False, 0.0, 1e4, BASE, True),
)
NAMES = tuple(t.name for t in TERMS)
N_CORE = 4
"""The first four terms: always fitted, never pulled."""

N_UNITS_GRID = (1, 2, 4, 8, 16, 32, 64, 128)
STRIPE_GRID = (4096, 16384, 65536, 262144)
HOST_MODES = ((0, False), (1, False), (1, True))
"""(host_cpus, link_passes) a full fit tries (with enough points): each worker its own CPU;
one shared CPU (a single submitting thread: flashsim's AIO reader, fio's libaio job); one
shared CPU with a link serving in passes that wait for it (the lock step a virtual disk
showed). Listed from the simplest: ties go to the earlier."""


class Form(NamedTuple):
    """The discrete choices of one candidate and the terms it fits (indices into TERMS)."""

    n_units: int
    stripe_bytes: int
    host_cpus: int
    passes: bool
    free: tuple[int, ...]

    def simplicity(self) -> tuple[int, int, int]:
        """Order among candidates that fit alike: host mode as listed, fewer units, smaller
        stripes."""
        return (HOST_MODES.index((self.host_cpus, self.passes)), self.n_units,
                self.stripe_bytes)


def base_time_us(points: list[DevicePoint]) -> float:
    """The points' time scale: the smallest mean latency, else the time per read of the
    lowest point (QD × chunk / throughput)."""
    steady = [p for p in points if p.batch_reads is None]
    lat = [p.latency_mean_us for p in steady if p.latency_mean_us is not None]
    if lat:
        return float(min(lat))
    small = min(steady, key=lambda p: (p.queue_depth, p.chunk_bytes))
    return small.queue_depth * small.chunk_bytes / small.throughput_mb_s


@dataclass(frozen=True)
class Space:
    """The coordinates of one fit: its time scale and which terms its points can pin down."""

    base_us: float
    extras: bool
    """Enough points for the terms beyond the core four."""
    batches: bool
    """Short-batch points: batch_start_us is fitted (nothing else sees it)."""
    exclude: frozenset[str] = frozenset()
    """Terms beyond the core four left out of every form (an ablation: absent, at 0)."""
    throttle: ThrottleInfo | None = None
    """The blk-throttle the points were measured behind: every candidate runs behind it."""

    def form(self, n_units: int, stripe_bytes: int, host_cpus: int, passes: bool) -> Form:
        """A candidate: the core terms, and with enough points those its mode can tell
        apart. Unshared CPUs make the reap and system-call costs pure per-read delays, the
        same as the transport delay and the submit cost: they are left at 0 there."""
        passes = passes and self.extras
        if not self.extras:
            return Form(n_units, stripe_bytes, host_cpus, passes, tuple(range(N_CORE)))
        skip = set(self.exclude)
        if not passes:
            skip.add("link_pass_us")
        if not self.batches:
            skip.add("batch_start_us")
        if host_cpus == 0:
            skip.update(("host_completion_us", "host_call_us"))
        free = tuple(j for j, name in enumerate(NAMES) if name not in skip)
        return Form(n_units, stripe_bytes, host_cpus, passes, free)

    def _scales(self, form: Form) -> np.ndarray:
        return np.array([self.base_us if TERMS[j].scale is None else TERMS[j].scale
                         for j in form.free])

    def bounds(self, form: Form) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the coordinates."""
        lo = [math.log(TERMS[j].lower) if TERMS[j].log else TERMS[j].lower for j in form.free]
        hi = [math.log(TERMS[j].upper) if TERMS[j].log else TERMS[j].upper for j in form.free]
        scales = self._scales(form)
        logs = np.array([TERMS[j].log for j in form.free])
        lo, hi = np.array(lo), np.array(hi)
        return np.where(logs, lo, lo / scales), np.where(logs, hi, hi / scales)

    def pulls(self, form: Form) -> np.ndarray:
        """1 for the coordinates regularised toward 0, else 0."""
        return np.array([1.0 if TERMS[j].pulled else 0.0 for j in form.free])

    def values(self, u: np.ndarray, form: Form) -> dict[str, float]:
        """Parameter values from coordinates."""
        scales = self._scales(form)
        return {NAMES[j]: float(math.exp(v) if TERMS[j].log else v * s)
                for j, v, s in zip(form.free, u, scales)}

    def params(self, u: np.ndarray, form: Form) -> DeviceParams:
        """Parameters from coordinates; terms the form does not fit stay at 0 (absent)."""
        return DeviceParams(n_units=form.n_units, stripe_bytes=form.stripe_bytes,
                            host_cpus=form.host_cpus, link_passes=form.passes,
                            **self.values(u, form))

    def coords(self, values: dict[str, float], form: Form) -> np.ndarray:
        """Coordinates of `values` (every free term named), clipped inside the bounds."""
        scales = self._scales(form)
        u = np.array([math.log(values[NAMES[j]]) if TERMS[j].log else values[NAMES[j]] / s
                      for j, s in zip(form.free, scales)])
        lo, hi = self.bounds(form)
        span = hi - lo
        return np.clip(u, lo + 1e-9 * span, hi - 1e-9 * span)

    def initial(self, points: list[DevicePoint], form: Form) -> np.ndarray:
        """A generic start from the points' time scale and their highest throughput, every
        term beyond the core four absent: the data bring in what they need."""
        link = 1.1 * max(p.throughput_mb_s for p in points if p.batch_reads is None)
        b = self.base_us
        start = dict.fromkeys(NAMES, 0.0)
        start.update({"host_overhead_us": max(0.05, 0.1 * b),
                      "command_latency_us": max(1.0, 0.7 * b),
                      "unit_bandwidth_mb_s": max(1.5, 2.0 * link / form.n_units),
                      "link_bandwidth_mb_s": max(10.0, link)})
        return self.coords(start, form)

    def carry(self, u: np.ndarray, form: Form, to: Form, points: list[DevicePoint]
              ) -> np.ndarray:
        """Coordinates for `to` from a fit of `form` (a warm start): shared terms kept, the
        unit rate scaled so that units × rate stays, the others from the generic start."""
        values = dict(zip(NAMES, (math.nan,) * len(NAMES)))
        start = self.values(self.initial(points, to), to)
        values.update(start)
        values.update(self.values(u, form))
        values["unit_bandwidth_mb_s"] *= form.n_units / to.n_units
        return self.coords(values, to)


def neighbours(form: Form, space: Space) -> list[Form]:
    """Forms one step away on the grid: half or twice the units, a quarter or four times
    the stripe, same host mode."""
    out = []
    j = N_UNITS_GRID.index(form.n_units)
    for k in (j - 1, j + 1):
        if 0 <= k < len(N_UNITS_GRID):
            out.append(space.form(N_UNITS_GRID[k], form.stripe_bytes, form.host_cpus,
                                  form.passes))
    j = STRIPE_GRID.index(form.stripe_bytes)
    for k in (j - 1, j + 1):
        if 0 <= k < len(STRIPE_GRID):
            out.append(space.form(form.n_units, STRIPE_GRID[k], form.host_cpus, form.passes))
    return out


SIGNIFICANT_DIGITS = 3
"""Fitted values are kept to this many digits (a time term to 1/1000 of the points' base
time): 0.1–1 %, far below the points' noise, and coarse enough that runs of the same fit on
different CPUs write the same numbers."""


def round_params(params: DeviceParams, base_us: float) -> DeviceParams:
    """Every fitted value to SIGNIFICANT_DIGITS: core terms relative to themselves, the
    others to 10^-SIGNIFICANT_DIGITS of their scale (so a term near 0 becomes 0)."""
    update = {}
    for term in TERMS:
        v = getattr(params, term.name)
        if term.log:
            update[term.name] = float(f"{v:.{SIGNIFICANT_DIGITS}g}")
        else:
            scale = base_us if term.scale is None else term.scale
            digits = SIGNIFICANT_DIGITS - math.floor(math.log10(scale))
            update[term.name] = round(v, digits) + 0.0
    return params.model_copy(update=update)
