"""The reference device model in SimPy: host workers → flash units → shared link.

The process structure is built for speed: one SimPy process per host worker (not per read)
and two timeouts per read. Flash units and the link are FIFO servers kept as "free at"
times: a read claims a server when its event is processed, in event order, which is what a
`simpy.Resource` of capacity 1 with FIFO queueing does, without an event per stripe (a 1 MiB
read is one reservation per unit it touches, not 256 events). See base.py for the model.
"""

from __future__ import annotations

import numpy as np
import simpy

from .base import (DeviceRun, ModelConstants, check_batch_ptr, check_reads, command_factor,
                   REAP, SUBMIT, host_claim, transfer_factor, unit_shares)
from .profile import DeviceParams, load_params


class FlashDevice:
    """SimPy discrete-event flash device; `run` one batch, `run_batches` many on an idle device."""

    def __init__(self, params: "DeviceParams | dict") -> None:
        self.params = load_params(params)
        self._k = ModelConstants.from_params(self.params)

    def run(self, offsets: object, lengths: object, queue_depth: int) -> DeviceRun:
        """Simulate one batch of reads from an idle device at t = 0 with `queue_depth` in flight."""
        off, length = check_reads(offsets, lengths, queue_depth)
        return self._simulate(off, length, int(queue_depth))

    def run_batches(self, offsets: object, lengths: object, batch_ptr: object,
                    queue_depth: int) -> np.ndarray:
        """Makespan (s) of every batch offsets[ptr[b]:ptr[b+1]], each from an idle device."""
        off, length = check_reads(offsets, lengths, queue_depth)
        ptr = check_batch_ptr(batch_ptr, len(off))
        out = np.zeros(len(ptr) - 1)
        for b in range(len(ptr) - 1):
            lo, hi = ptr[b], ptr[b + 1]
            if hi > lo:
                out[b] = self._simulate(off[lo:hi], length[lo:hi], int(queue_depth),
                                        first_index=int(lo)).makespan_s
        return out

    def _simulate(self, off: np.ndarray, length: np.ndarray, queue_depth: int,
                  first_index: int = 0) -> DeviceRun:
        """One batch; read i is read first_index + i of the whole call (for its command factor)."""
        k = self._k
        n = len(off)
        start = np.zeros(n)
        finish = np.zeros(n)
        if n == 0:
            return DeviceRun(start, finish, 0.0)
        env = simpy.Environment()
        unit_free = [0.0] * k.n_units
        cpu_free = [0.0] * k.host_cpus  # empty: every worker has its own host CPU
        cpu_kind = [0] * k.host_cpus  # kind of each CPU's last job (0: none yet)
        state = {"next": 0, "link_free": 0.0, "in_flight": 0, "pass": None}
        offsets = off.tolist()
        lengths = length.tolist()

        def worker():
            arrive = k.batch_start_s  # previous read reaped (first read: the batch start cost)
            while True:
                i = state["next"]
                if i >= n:
                    return
                state["next"] = i + 1
                state["in_flight"] += 1
                now = env.now
                t_issue = host_claim(cpu_free, arrive if arrive > now else now, k.host_s,
                                     SUBMIT, cpu_kind, k.call_s)
                start[i] = t_issue
                # flash units: FIFO servers, claimed in pick order for the issue time (base.py)
                first_begin = float("inf")
                flash_end = 0.0
                command_s = k.command_s * command_factor(first_index + i, offsets[i], lengths[i],
                                                       k.command_spread, k.command_inv_gamma)
                for unit, nbytes in unit_shares(offsets[i], lengths[i], k.stripe_bytes,
                                                k.n_units):
                    begin = unit_free[unit] if unit_free[unit] > t_issue else t_issue
                    done = begin + command_s + nbytes / k.unit_bytes_per_s
                    unit_free[unit] = done
                    if begin < first_begin:
                        first_begin = begin
                    if done > flash_end:
                        flash_end = done
                if k.passes:  # the read joins the back end's queue when it is issued
                    yield env.timeout(t_issue - now)
                    done = yield from join_pass(i, flash_end)
                else:
                    yield env.timeout((first_begin + command_s) - now)
                    done = take_link(i, flash_end)
                yield env.timeout(done - env.now)
                state["in_flight"] -= 1
                # host completion (reaping) on the shared host CPUs
                arrive = host_claim(cpu_free, env.now, k.completion_s, REAP, cpu_kind,
                                    k.call_s)
                finish[i] = arrive
                if cpu_free:  # shared CPUs: the next submit queues from the reap's end
                    yield env.timeout(arrive - env.now)

        def link_time(i, wake):
            """Read i's time on the link: wake-up, overhead and bytes, slowed by congestion."""
            overhead = k.link_overhead_s / (1.0 + k.amortization * (state["in_flight"] - 1))
            bytes_s = lengths[i] / k.link_bytes_per_s * transfer_factor(
                first_index + i, offsets[i], lengths[i], k.transfer_spread,
                k.transfer_inv_gamma)
            return (wake + overhead + bytes_s) * (1.0 + k.congestion * (state["in_flight"] - 1))

        def take_link(i, flash_end):
            """Take the FIFO link at the read's first byte (now), cut-through with the units;
            the read's done time."""
            now = env.now
            if state["link_free"] > now:  # busy link: the read joins the back end's run
                link_begin, wake = state["link_free"], 0.0
            else:  # idle link: the back end must be woken first
                link_begin, wake = now, k.wakeup_s
            state["link_free"] = link_begin + link_time(i, wake)
            return (flash_end if flash_end > state["link_free"] else state["link_free"]) \
                + k.transport_s

        def join_pass(i, flash_end):
            """Join the open pass (or open one); wait for its close; the read's done time."""
            now = env.now
            pas = state["pass"]
            if pas is None:
                begin = state["link_free"] if state["link_free"] > now else now + k.wakeup_s
                pas = state["pass"] = {"cost": k.pass_s, "close": env.event()}
                env.timeout(begin - now).callbacks.append(lambda _, p=pas: pass_begin(p))
            pas["cost"] += link_time(i, 0.0)
            end = yield pas["close"]
            return (flash_end if flash_end > end else end) + k.transport_s

        def pass_begin(pas):
            """Begin the pass now if every host CPU is idle, else put it off until they are."""
            busy = max(cpu_free) if cpu_free else 0.0
            if busy > env.now:
                env.timeout(busy - env.now).callbacks.append(lambda _: pass_begin(pas))
                return
            state["pass"] = None
            state["link_free"] = env.now + pas["cost"]
            pas["close"].succeed(state["link_free"])

        for _ in range(min(queue_depth, n)):
            env.process(worker())
        env.run()
        return DeviceRun(start, finish, float(finish.max()))
