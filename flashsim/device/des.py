"""The reference device model in SimPy: host workers → flash units → shared link.

One read's path (base.py gives the model): a worker process (`_Batch.worker`) picks the
read and runs its submit on the host CPUs (`_HostCpus`); the read claims its flash units
(`_FlashUnits`) for its issue time; at its first byte it takes the link (`_Link`, FIFO) or
joins the back end's next pass (`_PassLink`); when the device is done the worker reaps it
on the host CPUs and picks the next read.

The process structure is built for speed: one SimPy process per host worker (not per read)
and two timeouts per read; every read's command and transfer factors are drawn for the
whole call before its batches run (base.read_factors: the loop the fast path runs per batch).
Flash units and the link are FIFO servers kept as "free at" times: a read claims a server
when its event is processed, in event order, which is what a `simpy.Resource` of capacity 1
with FIFO queueing does, without an event per stripe (a 1 MiB read is one reservation per
unit it touches, not 256 events).
"""

from __future__ import annotations

import numpy as np
import simpy

from .base import (
    REAP,
    SUBMIT,
    DeviceModel,
    DeviceRun,
    ModelConstants,
    check_batch_ptr,
    check_reads,
    check_shares,
    host_claim,
    read_factors,
    unit_shares,
)
from .profile import DeviceParams, load_params


class FlashDevice(DeviceModel):
    """SimPy discrete-event flash device; `run` one batch, `run_batches` many on an idle device."""

    def __init__(self, params: DeviceParams | dict) -> None:
        self.params = load_params(params)
        self._k = ModelConstants.from_params(self.params)

    def run(self, offsets: object, lengths: object, queue_depth: int) -> DeviceRun:
        """Simulate one batch of reads from an idle device at t = 0 with `queue_depth` in flight."""
        off, length = check_reads(offsets, lengths, queue_depth)
        command, transfer = read_factors(0, off, length, self._k)
        return self._simulate(off.tolist(), length.tolist(), command.tolist(), transfer.tolist(),
                              int(queue_depth))

    def run_batches(self, offsets: object, lengths: object, batch_ptr: object,
                    queue_depth: int, shares: object = None) -> np.ndarray:
        """Makespan (s) of every batch offsets[ptr[b]:ptr[b+1]], each from an idle device;
        `shares` (base.check_shares): each worker issues only its own share of a batch."""
        off, length = check_reads(offsets, lengths, queue_depth)
        ptr = check_batch_ptr(batch_ptr, len(off))
        share_rows = (None if shares is None
                      else check_shares(shares, ptr, queue_depth).tolist())
        # every read's factors at once: read i of the call is drawn as read i
        command, transfer = (a.tolist() for a in read_factors(0, off, length, self._k))
        off_list, length_list, ptr_list = off.tolist(), length.tolist(), ptr.tolist()
        out = np.zeros(len(ptr) - 1)
        for b in range(len(ptr) - 1):
            lo, hi = ptr_list[b], ptr_list[b + 1]
            if hi > lo:
                own = None if share_rows is None else [x - lo for x in share_rows[b]]
                out[b] = self._simulate(off_list[lo:hi], length_list[lo:hi], command[lo:hi],
                                        transfer[lo:hi], int(queue_depth), own).makespan_s
        return out

    def _simulate(self, off: list[int], length: list[int], command: list[float],
                  transfer: list[float], queue_depth: int,
                  shares: list[int] | None = None) -> DeviceRun:
        """One batch, with its reads' command and transfer factors; `shares` (queue_depth + 1
        read indices in the batch): worker w issues reads shares[w] … shares[w + 1] - 1."""
        n = len(off)
        if n == 0:
            return DeviceRun(np.zeros(0), np.zeros(0), 0.0)
        batch = _Batch(self._k, off, length, command, transfer)
        if shares is None:
            for _ in range(min(queue_depth, n)):
                batch.env.process(batch.worker())
        else:
            for w in range(queue_depth):
                if shares[w + 1] > shares[w]:  # (a worker with nothing to read starts none)
                    batch.env.process(batch.worker(iter(range(shares[w], shares[w + 1]))))
        batch.env.run()
        return DeviceRun(np.array(batch.start), np.array(batch.finish), max(batch.finish))


class _HostCpus:
    """The shared host CPUs, FIFO servers of submit and reap jobs (base.py step 0); none
    shared (host_cpus = 0): every worker runs its jobs on its own CPU, without waiting."""

    def __init__(self, k: ModelConstants) -> None:
        self.free_s = [0.0] * k.host_cpus
        self.last_kind = [0] * k.host_cpus  # kind of each CPU's last job (0: none yet)
        self.call_s = k.call_s
        self.shared = k.host_cpus > 0

    def run(self, arrive_s: float, cost_s: float, kind: int) -> float:
        """Run a job arriving at `arrive_s` (plus its system call, if any); its end time."""
        if not self.shared:  # host_claim's first case, without the call
            return arrive_s + cost_s + self.call_s
        return host_claim(self.free_s, arrive_s, cost_s, kind, self.last_kind, self.call_s)

    def busy_until(self) -> float:
        """When the last shared CPU frees (0 with unshared CPUs)."""
        return max(self.free_s) if self.free_s else 0.0


class _FlashUnits:
    """The flash units, FIFO servers that each move their share of a read (base.py step 2)."""

    def __init__(self, k: ModelConstants) -> None:
        self.k = k
        self.free_s = [0.0] * k.n_units

    def claim(self, offset: int, length: int, command_s: float,
              t_issue: float) -> tuple[float, float]:
        """Claim every unit the read touches, for its issue time, each for the read's command
        latency and its share of the bytes: (first byte, last unit done)."""
        k = self.k
        if offset // k.stripe_bytes == (offset + length - 1) // k.stripe_bytes:  # one stripe
            unit = offset // k.stripe_bytes % k.n_units  # (unit_shares' first case)
            begin = self.free_s[unit] if self.free_s[unit] > t_issue else t_issue
            self.free_s[unit] = begin + command_s + length / k.unit_bytes_per_s
            return begin + command_s, self.free_s[unit]
        first_begin = float("inf")
        flash_end = 0.0
        for unit, nbytes in unit_shares(offset, length, k.stripe_bytes, k.n_units):
            begin = self.free_s[unit] if self.free_s[unit] > t_issue else t_issue
            done = begin + command_s + nbytes / k.unit_bytes_per_s
            self.free_s[unit] = done
            if begin < first_begin:
                first_begin = begin
            if done > flash_end:
                flash_end = done
        return first_begin + command_s, flash_end


def _link_time_s(k: ModelConstants, length: int, transfer: float, in_flight: int,
                 wake_s: float) -> float:
    """A read's time on the link: wake-up, overhead and bytes (times the read's transfer
    factor), slowed by congestion."""
    overhead = k.link_overhead_s / (1.0 + k.amortization * (in_flight - 1))
    bytes_s = length / k.link_bytes_per_s * transfer
    return (wake_s + overhead + bytes_s) * (1.0 + k.congestion * (in_flight - 1))


class _Link:
    """The shared link, one FIFO server, cut-through with the units (base.py step 3)."""

    def __init__(self, k: ModelConstants) -> None:
        self.k = k
        self.free_s = 0.0

    def take(self, now: float, length: int, transfer: float, in_flight: int,
             flash_end: float) -> float:
        """Take the link at the read's first byte (`now`); the read's done time at the device."""
        if self.free_s > now:  # busy link: the read joins the back end's run
            begin, wake = self.free_s, 0.0
        else:  # idle link: the back end must be woken first
            begin, wake = now, self.k.wakeup_s
        self.free_s = begin + _link_time_s(self.k, length, transfer, in_flight, wake)
        return (flash_end if flash_end > self.free_s else self.free_s) + self.k.transport_s


class _PassLink:
    """The link serving in passes (base.py step 3'): reads join the open pass when issued;
    a pass begins when the host CPUs are idle and completes its reads together."""

    def __init__(self, env: simpy.Environment, k: ModelConstants, host: _HostCpus) -> None:
        self.env, self.k, self.host = env, k, host
        self.free_s = 0.0
        self.open: dict | None = None

    def join(self, cost_s: float, flash_end: float):
        """Join the open pass (or open one) at its cost; wait for its close; the done time."""
        env, k = self.env, self.k
        pas = self.open
        if pas is None:
            begin = self.free_s if self.free_s > env.now else env.now + k.wakeup_s
            pas = self.open = {"cost": k.pass_s, "close": env.event()}
            env.timeout(begin - env.now).callbacks.append(lambda _, p=pas: self._begin(p))
        pas["cost"] += cost_s
        end = yield pas["close"]
        return (flash_end if flash_end > end else end) + k.transport_s

    def _begin(self, pas: dict) -> None:
        """Begin the pass now if every host CPU is idle, else put it off until they are."""
        env = self.env
        busy = self.host.busy_until()
        if busy > env.now:
            env.timeout(busy - env.now).callbacks.append(lambda _: self._begin(pas))
            return
        self.open = None
        self.free_s = env.now + pas["cost"]
        pas["close"].succeed(self.free_s)


class _Batch:
    """One batch's simulation: the reads, the device's servers and the workers' progress."""

    def __init__(self, k: ModelConstants, offsets: list[int], lengths: list[int],
                 command: list[float], transfer: list[float]) -> None:
        self.k, self.offsets, self.lengths = k, offsets, lengths
        self.command, self.transfer = command, transfer  # the reads' factors
        self.env = simpy.Environment()
        self.host = _HostCpus(k)
        self.units = _FlashUnits(k)
        self.link = _PassLink(self.env, k, self.host) if k.passes else _Link(k)
        self.start = [0.0] * len(offsets)
        self.finish = [0.0] * len(offsets)
        self.next = 0  # the next read a worker picks
        self.in_flight = 0  # picked and not done at the device

    def _next_shared(self):
        """The batch's reads in order, each to whichever worker asks first."""
        while self.next < len(self.offsets):
            self.next += 1
            yield self.next - 1

    def worker(self, own=None):
        """A host worker: submit a read, wait for the device, reap it; then the next read,
        the batch's next (`own` None) or its own share's next."""
        env, k, host, units, link = self.env, self.k, self.host, self.units, self.link
        offsets, lengths, command, transfers = (self.offsets, self.lengths, self.command,
                                                self.transfer)
        arrive = k.batch_start_s  # previous read reaped (first read: the batch start cost)
        for i in (self._next_shared() if own is None else own):
            self.in_flight += 1
            now = env.now
            t_issue = host.run(arrive if arrive > now else now, k.host_s, SUBMIT)
            self.start[i] = t_issue
            length, transfer = lengths[i], transfers[i]
            first_byte, flash_end = units.claim(offsets[i], length, k.command_s * command[i],
                                                t_issue)
            if k.passes:  # the read joins the back end's queue when it is issued
                yield env.timeout(t_issue - now)
                cost_s = _link_time_s(k, length, transfer, self.in_flight, 0.0)
                done = yield from link.join(cost_s, flash_end)
            else:
                yield env.timeout(first_byte - now)
                done = link.take(env.now, length, transfer, self.in_flight, flash_end)
            yield env.timeout(done - env.now)
            self.in_flight -= 1
            arrive = host.run(env.now, k.completion_s, REAP)  # the reap, on the host CPUs
            self.finish[i] = arrive
            if host.shared:  # shared CPUs: the next submit queues from the reap's end
                yield env.timeout(arrive - env.now)
