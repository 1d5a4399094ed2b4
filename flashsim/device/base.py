"""What both device engines share: the run result, input checks, the striping arithmetic.

The model (both engines implement exactly this; des.py is the SimPy reference):

0. host CPUs: the per-read host software work (submit and completion) runs on `host_cpus`
   shared CPUs, each a FIFO server: a job arriving at time a takes the CPU that is free
   first (lowest index on ties), begins at max(a, that CPU free) and holds it for its cost.
   `host_cpus` = 1 is one submitting thread (fio's single libaio job, flashsim's AIO reader,
   Python reader threads taking turns on the GIL): it caps reads/s at 1 / (host cost per
   read) and makes latency grow with queue depth at small chunks. `host_cpus` = 0 gives
   every worker its own CPU (no host queueing; the default, the model before host sharing).
   Every submit also pays `host_call_us` (one io_submit per read, as flashsim's AIO
   reader and fio's libaio submit), and so does a reap that does not follow a reap on its
   CPU: a run of reaps is one io_getevents (with unshared CPUs every job pays it).
1. host submit: `queue_depth` workers take reads in order. A worker that picks read i with
   its previous read reaped at time a (`batch_start_us` for its first read: the host's
   fixed cost of starting a batch, e.g. preparing and handing it to the I/O engine) runs
   the submit job
   (`host_overhead_us`) arriving at a; start_s[i] = the job's end (the read is issued).
2. flash units: read i covers stripes offset // stripe_bytes … (offset + length - 1) //
   stripe_bytes; stripe s lives on unit s % n_units. Each touched unit is a FIFO server:
   it begins at max(start, unit free), spends the read's command latency (time to first
   byte), then moves its share of the bytes at `unit_bandwidth_mb_s`. The command latency
   of read i is `command_latency_us` × command_factor(i, offset, length,
   `command_latency_spread`) (i = its index in the whole run / run_batches call): mean
   `command_latency_us`, Weibull-distributed (real flash reads vary: a busy die, read
   retries, garbage collection, a shared back end; the variation makes queues form before
   the units are saturated, so throughput approaches its cap gradually with queue depth),
   the same for every unit the read touches; spread 0 = every read alike.
3. link: when the read's first byte is ready (earliest unit begin + command latency) it
   takes the shared link, a FIFO server, for (wake + `link_overhead_us` / (1 +
   `link_amortization_per_read` × (reads in flight − 1)) + length /
   `link_bandwidth_mb_s` × transfer_factor(i, offset, length, `link_transfer_spread`)) × (1 +
   `link_congestion_per_read` × (reads in flight − 1)) (cut-through: the transfer overlaps
   the units). wake = `link_wakeup_us` if the link is idle when the read arrives (not free
   after that instant), else 0: a back end that sleeps when idle (a virtual disk's I/O
   thread, an interrupt-driven controller) pays a wake-up per idle period, and reads that
   arrive while it is busy ride along (notification suppression, batching), so the cost per
   read falls as the queue deepens. The device is done at d_i = max(last unit done, link done) +
   `transport_latency_us` (a completion-path delay that occupies nothing). Reads in flight
   = picked by a worker and not done at the device; the congestion term is empirical (0 for
   an ideal device). The amortization term (default 0) is its opposite: a back end that
   serves the requests waiting on its queue in one pass (one notification, one interrupt)
   spends less command processing per read the more reads are in flight, so a virtual
   disk's per-read time keeps falling with queue depth.
   transfer_factor is a per-read Weibull multiplier of mean 1 like the command factor (but
   drawn apart from it): large reads on a real disk vary too (1 MiB at QD 1: p99 / p50 =
   1.43 measured), and a token's tail follows from its reads' spread; 0 = none.
3'. link in passes (`link_passes`; replaces step 3): the link is a back end that serves the
   reads waiting on it in one pass, and completes them together (a virtual disk: its I/O
   thread drains the queue, one interrupt reaps them all; validation measured that a full
   queue completes as one group, and a read's time falls as host work + pass / QD). A read
   joins the back end's queue when it is issued (start_s). If no pass is open, it opens one
   that begins at the link's free time, or `link_wakeup_us` after the read when the link is
   idle; reads issued before the pass begins join it, later ones open the next. With shared
   host CPUs a pass begins only when every host CPU is idle (else it is put off to the time
   the last one frees, and checked again then): the back end does not run while the host
   thread is submitting or reaping, so host work and back-end work add up. The pass lasts
   `link_pass_us` + the sum over its reads (in join order) of (`link_overhead_us` / (1 +
   amortization × (in flight − 1)) + length / `link_bandwidth_mb_s` × transfer_factor) × (1
   + congestion × (in flight − 1)), in flight counted when the read joined; every read of
   the pass is done at max(pass end, its last unit done) + `transport_latency_us`. The
   engines schedule, in this order: one event at the begin (and one more each time it is
   put off), one at the close (every member waits on it), then each member's done event in
   join order.
4. host completion: at d_i the worker runs the completion job (`host_completion_us`, the
   reaping) arriving at d_i; finish_s[i] = its end, so host queueing for the reap counts
   in latency. The worker then picks its next read; the submit job arrives at finish_s[i]
   and, with shared CPUs, is claimed only then (an event at finish_s[i]), so it queues
   behind reaps that arrived meanwhile: a single-threaded event loop reaps what completed
   before it submits more, and that wait falls outside the reads' latency. Flash units of
   a read are claimed when its submit is claimed, for its issue time.
Events with equal times are handled in the order they were scheduled (SimPy's rule). The
makespan is the last finish_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from ..units import check_queue_depth
from .profile import DeviceParams


class DeviceModel:
    """What every device engine is (FlashDevice, FastDevice, a CorrectedDevice): `run` one
    batch and `run_batches`; a made device passes through `make_device` unchanged."""


@dataclass
class DeviceRun:
    """Per-read submit and completion times (seconds from the batch start) and the makespan."""

    start_s: np.ndarray
    finish_s: np.ndarray
    makespan_s: float

    @property
    def latency_s(self) -> np.ndarray:
        return self.finish_s - self.start_s


def check_reads(offsets: object, lengths: object,
                queue_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 arrays of offsets and lengths; InputError on negative, empty or mismatched reads."""
    off = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    length = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    if off.shape != length.shape:
        raise InputError(f"{len(off)} offsets but {len(length)} lengths", key="reads")
    if len(off) and (off.min() < 0 or length.min() <= 0):
        raise InputError("reads need offsets ≥ 0 and lengths > 0", key="reads")
    check_queue_depth(queue_depth)
    return off, length


def check_batch_ptr(batch_ptr: object, n_reads: int) -> np.ndarray:
    """int64 batch pointer: starts at 0, never decreases, ends at the number of reads."""
    ptr = np.ascontiguousarray(batch_ptr, dtype=np.int64).reshape(-1)
    if len(ptr) < 1 or ptr[0] != 0 or ptr[-1] != n_reads or np.any(np.diff(ptr) < 0):
        raise InputError("batch pointer must start at 0, never decrease and end at the "
                         f"number of reads ({n_reads})", key="batch_ptr")
    return ptr


def check_shares(shares: object, ptr: np.ndarray, queue_depth: int) -> np.ndarray:
    """int64 [n_batches, queue_depth + 1]: batch b's reads cut into queue_depth contiguous
    shares, share w = reads shares[b, w] … shares[b, w + 1] - 1 (from ptr[b] to ptr[b + 1],
    never decreasing). A worker that issues only its own share is a thread that faults
    its own part of a batch's rows, one page run at a time."""
    out = np.ascontiguousarray(shares, dtype=np.int64)
    n_batches = len(ptr) - 1
    if (out.shape != (n_batches, queue_depth + 1) or np.any(out[:, 0] != ptr[:-1])
            or np.any(out[:, -1] != ptr[1:]) or np.any(np.diff(out, axis=1) < 0)):
        raise InputError(f"read shares must be {n_batches} × {queue_depth + 1} read indices "
                         "from each batch's first read to its end, never decreasing",
                         key="shares")
    return out


class ModelConstants(NamedTuple):
    """DeviceParams in the units the engines compute with (seconds, bytes per second).

    A NamedTuple of plain ints, floats, a bool and the two factors' quantile tables
    (factors.py; empty for a spread of 0), so the numba kernel takes it as one argument (its
    fields compile to scalars, as separate arguments would).
    """

    host_s: float
    command_s: float
    n_units: int
    unit_bytes_per_s: float
    link_bytes_per_s: float
    stripe_bytes: int
    congestion: float
    transport_s: float
    link_overhead_s: float
    host_cpus: int = 0
    amortization: float = 0.0
    completion_s: float = 0.0
    wakeup_s: float = 0.0
    command_spread: float = 0.0
    command_inv_gamma: float = 1.0
    batch_start_s: float = 0.0
    call_s: float = 0.0
    transfer_spread: float = 0.0
    transfer_inv_gamma: float = 1.0
    passes: bool = False
    pass_s: float = 0.0
    command_table: np.ndarray = np.zeros(0)
    transfer_table: np.ndarray = np.zeros(0)

    @classmethod
    def from_params(cls, params: DeviceParams) -> ModelConstants:
        command_spread, transfer_spread = (float(params.command_latency_spread),
                                           float(params.link_transfer_spread))
        command_inv_gamma, transfer_inv_gamma = (1.0 / math.gamma(1.0 + command_spread),
                                                 1.0 / math.gamma(1.0 + transfer_spread))
        return cls(host_s=params.host_overhead_us * 1e-6,
                   command_s=params.command_latency_us * 1e-6,
                   n_units=int(params.n_units),
                   unit_bytes_per_s=params.unit_bandwidth_mb_s * 1e6,
                   link_bytes_per_s=params.link_bandwidth_mb_s * 1e6,
                   stripe_bytes=int(params.stripe_bytes),
                   congestion=float(params.link_congestion_per_read),
                   transport_s=params.transport_latency_us * 1e-6,
                   link_overhead_s=params.link_overhead_us * 1e-6,
                   amortization=float(params.link_amortization_per_read),
                   host_cpus=int(params.host_cpus),
                   completion_s=params.host_completion_us * 1e-6,
                   wakeup_s=params.link_wakeup_us * 1e-6,
                   command_spread=command_spread, command_inv_gamma=command_inv_gamma,
                   batch_start_s=params.batch_start_us * 1e-6,
                   call_s=params.host_call_us * 1e-6,
                   transfer_spread=transfer_spread, transfer_inv_gamma=transfer_inv_gamma,
                   passes=bool(params.link_passes),
                   pass_s=params.link_pass_us * 1e-6,
                   command_table=factor_table(command_spread, command_inv_gamma),
                   transfer_table=factor_table(transfer_spread, transfer_inv_gamma))


def factor_table(spread: float, inv_gamma: float) -> np.ndarray:
    """A factor's quantile table (factors.quantile_table); empty for a spread of 0."""
    if spread == 0.0:
        return np.zeros(0)
    from .factors import quantile_table  # numba: imported when first drawn
    return quantile_table(spread, inv_gamma)


def command_factor(i: int, offset: int, length: int, spread: float, inv_gamma: float) -> float:
    """Read i's command-latency multiplier E^spread / Γ(1 + spread), E ~ Exp(1): mean 1.

    `inv_gamma` = 1 / Γ(1 + spread) (ModelConstants.command_inv_gamma).
    A Weibull of shape 1/spread: 0 = every read alike, 1 = exponential, more = a heavier
    tail. E comes from a seedless hash of (i = the read's index in the whole `run` /
    `run_batches` call, its offset, its length), which both engines compute alike; not of
    the read's position in its batch, which would give every batch's j-th read one factor.
    One read of `read_factors` (factors.py): the engines draw whole calls at once.
    """
    return _one_read(i, offset, length, spread, inv_gamma, 0.0, 1.0)[0]


def transfer_factor(i: int, offset: int, length: int, spread: float, inv_gamma: float) -> float:
    """Read i's link-transfer multiplier: command_factor's Weibull (mean 1) drawn from the
    hash of (i, offset, length) mixed once more with a salt (factors.TRANSFER_SALT);
    `inv_gamma` = 1 / Γ(1 + spread) (ModelConstants.transfer_inv_gamma)."""
    return _one_read(i, offset, length, 0.0, 1.0, spread, inv_gamma)[1]


def _one_read(i: int, offset: int, length: int, command_spread: float,
              command_inv_gamma: float, transfer_spread: float,
              transfer_inv_gamma: float) -> tuple[float, float]:
    """(command, transfer) factor of one read, by the engines' loop (factors.py)."""
    from .factors import draw_factors  # numba: imported when first drawn
    command, transfer = np.empty(1), np.empty(1)
    draw_factors(i, np.array([offset], np.int64), np.array([length], np.int64),
                 command_spread, command_inv_gamma,
                 factor_table(command_spread, command_inv_gamma), transfer_spread,
                 transfer_inv_gamma, factor_table(transfer_spread, transfer_inv_gamma),
                 command, transfer)
    return float(command[0]), float(transfer[0])


def read_factors(first_index: int, offsets: np.ndarray, lengths: np.ndarray,
                 k: ModelConstants) -> tuple[np.ndarray, np.ndarray]:
    """command_factor and transfer_factor of reads first_index, first_index + 1, … (int64
    offsets and lengths ≥ 0), drawn for a call at once by the loop the fast path's kernel
    runs per batch (factors.py), so both engines multiply the same numbers."""
    n = len(offsets)
    if k.command_spread == 0.0 and k.transfer_spread == 0.0:
        return np.ones(n), np.ones(n)
    from .factors import draw_factors  # numba: imported when first drawn
    command, transfer = np.empty(n), np.empty(n)
    draw_factors(first_index, offsets, lengths, k.command_spread, k.command_inv_gamma,
                 k.command_table, k.transfer_spread, k.transfer_inv_gamma, k.transfer_table,
                 command, transfer)
    return command, transfer


SUBMIT, REAP = 1, 2
"""Host job kinds (a CPU's last kind starts at 0: none yet)."""


def host_claim(cpu_free: list[float], arrive_s: float, cost_s: float, kind: int = SUBMIT,
               cpu_kind: list[int] | None = None, call_s: float = 0.0) -> float:
    """Run a host job arriving at `arrive_s` on the first-free CPU; return its end time.

    An empty `cpu_free` means unshared host CPUs (host_cpus = 0): no waiting, and every job
    pays the call cost `call_s`; on shared CPUs every submit pays it (one io_submit per
    read) and a reap only when the CPU's last job (`cpu_kind`, updated) was not a reap.
    """
    if not cpu_free:
        return arrive_s + cost_s + call_s
    j = 0
    for c in range(1, len(cpu_free)):
        if cpu_free[c] < cpu_free[j]:
            j = c
    begin = cpu_free[j] if cpu_free[j] > arrive_s else arrive_s
    if cpu_kind is not None and (kind == SUBMIT or cpu_kind[j] != kind):
        cost_s = cost_s + call_s
        cpu_kind[j] = kind
    cpu_free[j] = begin + cost_s
    return cpu_free[j]


def unit_shares(offset: int, length: int, stripe_bytes: int, n_units: int) -> list[tuple[int, int]]:
    """(unit, bytes) for every unit a read touches, in stripe order; O(min(stripes, units)).

    Stripe s is on unit s % n_units; unit j-th touched holds stripes s0 + j, s0 + j + n, ….
    """
    s0 = offset // stripe_bytes
    s1 = (offset + length - 1) // stripe_bytes
    n_stripes = s1 - s0 + 1
    if n_stripes == 1:
        return [(s0 % n_units, length)]
    head_cut = offset - s0 * stripe_bytes  # bytes of the first stripe before the read
    tail_cut = (s1 + 1) * stripe_bytes - (offset + length)  # bytes of the last stripe after it
    last_j = (n_stripes - 1) % n_units
    shares = []
    for j in range(min(n_stripes, n_units)):
        count = (n_stripes - 1 - j) // n_units + 1
        nbytes = count * stripe_bytes
        if j == 0:
            nbytes -= head_cut
        if j == last_j:
            nbytes -= tail_cut
        shares.append(((s0 + j) % n_units, nbytes))
    return shares
