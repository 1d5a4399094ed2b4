"""Fast path of the device model: the same events as des.py, in one numba kernel.

The kernel replays the SimPy model's event list exactly (at most `queue_depth` + 2 pending
events, popped in (time, scheduling order) by a winner tree; the same arithmetic in the same
order), so it gives the reference's numbers, at millions of reads per second. One kernel,
compiled once and cached on disk (`cache=True`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from .base import (
    REAP,
    SUBMIT,
    DeviceModel,
    DeviceRun,
    ModelConstants,
    check_batch_ptr,
    check_reads,
    check_shares,
)
from .factors import draw_factors
from .profile import DeviceParams, load_params

_helper = njit(cache=True, error_model="numpy", _nrt=False)
"""The kernel's helpers: compiled without reference counting (numba's `_nrt` option). They
allocate nothing, and as called once or twice per event the counting of their array
arguments' references (atomic increments and decrements that the compiler did not prune)
took more than half the kernel's time. The numpy error model drops the checks for
division by zero, which valid parameters never divide by (DeviceParams: sizes and
bandwidths > 0): a few % faster."""

_FIRST_BYTE, _DONE, _REAPED, _PASS = 0, 1, 2, 3
"""Event kinds, the low two bits of an event's payload; the rest is its read's index (for
_PASS: 0 = the pass's begin, 1 = its close)."""


@_helper
def _set(ev_t, ev_s, ev_p, win, n_leaf, slot, t, s, p):
    """Schedule slot's event (time t, scheduling order s, payload p; t = inf: none) and
    replay its path of the winner tree: each node holds the slot of the earliest event below
    it (`win`) and that event's key (`ev_t`, `ev_s`; leaf n_leaf + slot: the slot's own),
    ties to the earlier scheduled. The key climbs in registers and meets each sibling's key
    at its node. (The selects compile to a branch, which predicts well where reads vary:
    1.5-1.65× the kernel's reads/s with selects on every calibrated profile's plans; a
    profile without spread, whose events tie, within ±10 %.)"""
    node = slot + n_leaf
    ev_t[node] = t
    ev_s[node] = s
    ev_p[slot] = p
    w = slot
    while node > 1:
        sib = node ^ 1
        to = ev_t[sib]
        so = ev_s[sib]
        better = (t < to) | ((t == to) & (s < so))
        w = w if better else win[sib]
        t = t if better else to
        s = s if better else so
        node >>= 1
        win[node] = w
        ev_t[node] = t
        ev_s[node] = s


@_helper
def _build(ev_t, ev_s, win, n_leaf):
    """The winner tree over every slot's event (its key at leaf n_leaf + slot), bottom up."""
    for j in range(n_leaf):
        win[n_leaf + j] = j
    for node in range(n_leaf - 1, 0, -1):
        a = 2 * node
        b = a + 1
        better = (ev_t[a] < ev_t[b]) | ((ev_t[a] == ev_t[b]) & (ev_s[a] < ev_s[b]))
        c = a if better else b
        win[node] = win[c]
        ev_t[node] = ev_t[c]
        ev_s[node] = ev_s[c]


@_helper
def _shift_of(n):
    """log2(n) for a power of two n, else -1: a stripe or unit count that is one divides by
    a shift (the same integers, at a fraction of a division's cost)."""
    if n <= 0 or n & (n - 1):
        return -1
    s = 0
    while (1 << s) < n:
        s += 1
    return s


@_helper
def _host(cpu_free, cpu_kind, n_cpus, arrive, cost, kind, call_s):
    """base.host_claim: a host job arriving at `arrive` on the first-free CPU (none shared:
    no wait, every job pays the call cost); its end."""
    if n_cpus == 0:
        return arrive + cost + call_s
    j = 0
    for c in range(1, n_cpus):
        if cpu_free[c] < cpu_free[j]:
            j = c
    begin = cpu_free[j] if cpu_free[j] > arrive else arrive
    if kind == SUBMIT or cpu_kind[j] != kind:  # every submit is its own io_submit
        cost = cost + call_s
        cpu_kind[j] = kind
    cpu_free[j] = begin + cost
    return cpu_free[j]


@_helper
def _claim_units(o, ln, t_issue, command_s, n_units, unit_bps, stripe, stripe_shift,
                 unit_shift, unit_free):
    """Claim the flash units of a read of `ln` bytes at offset `o` issued at `t_issue`, each
    for its command latency `command_s` and its share of the bytes: (first byte, last unit
    done). `stripe_shift`, `unit_shift`: log2 of the stripe and of the unit count where they
    are powers of two (else -1: divide). (Scalars and one array: a call passes few words.)"""
    if stripe_shift >= 0:
        s0 = o >> stripe_shift
        s1 = (o + ln - 1) >> stripe_shift
    else:
        s0 = o // stripe
        s1 = (o + ln - 1) // stripe
    n_stripes = s1 - s0 + 1
    if n_stripes == 1:
        u = s0 & (n_units - 1) if unit_shift >= 0 else s0 % n_units
        begin = unit_free[u] if unit_free[u] > t_issue else t_issue
        done = begin + command_s + ln / unit_bps
        unit_free[u] = done
        return begin + command_s, done
    first_begin = np.inf
    end = 0.0
    head_cut = o - s0 * stripe
    tail_cut = (s1 + 1) * stripe - (o + ln)
    last_j = (n_stripes - 1) % n_units
    touched = n_stripes if n_stripes < n_units else n_units
    for j in range(touched):
        count = (n_stripes - 1 - j) // n_units + 1
        nbytes = count * stripe
        if j == 0:
            nbytes -= head_cut
        if j == last_j:
            nbytes -= tail_cut
        u = (s0 + j) % n_units
        begin = unit_free[u] if unit_free[u] > t_issue else t_issue
        done = begin + command_s + nbytes / unit_bps
        unit_free[u] = done
        if begin < first_begin:
            first_begin = begin
        if done > end:
            end = done
    return first_begin + command_s, end


_NONE = np.int64(1) << np.int64(62)
"""Scheduling order of an empty slot (its time is inf): later than any event."""


# One compiled event loop, over 80 lines on purpose: split into handlers, its state (the
# event slots, scheduling counter, link and pass state, reads in flight, the constants)
# must pass in and out at every event (tried: 12-22% fewer reads per second).
@njit(cache=True, nogil=True, error_model="numpy")
def _simulate(k, first_index, off, length, ptr, shares, qd, start, finish, makespan):
    """Every batch off[ptr[b]:ptr[b+1]] from an idle device, with the model constants `k`
    (a ModelConstants), read r being read first_index + r of the whole call (its command
    and transfer factors follow that index: factors.py): each batch's makespan, and the
    start and finish of the last batch's reads (read ptr[b] + r at [r]: `start`, `finish`
    hold the largest batch). `shares` (n_batches ×
    qd + 1 read indices, or no rows): worker w issues only reads shares[b, w] to
    shares[b, w + 1] - 1 of batch b, one at a time; without rows every worker takes the
    batch's next read.

    Every pending event sits in a slot: worker w's next one in slot w (a worker has one at
    a time), the open pass's begin and the closed pass's close in the two slots after the
    workers'. The winner tree over the slots pops them in SimPy's order: (time, order of
    scheduling)."""
    # the constants as locals, read once: the loop then keeps them in registers
    host_s, command_s, n_units, unit_bps = k.host_s, k.command_s, k.n_units, k.unit_bytes_per_s
    link_bps, stripe, congestion, transport_s = (k.link_bytes_per_s, k.stripe_bytes,
                                                 k.congestion, k.transport_s)
    link_overhead_s, n_cpus, completion_s, wakeup_s = (k.link_overhead_s, k.host_cpus,
                                                       k.completion_s, k.wakeup_s)
    batch_start_s, call_s, amortization = k.batch_start_s, k.call_s, k.amortization
    passes, pass_s = k.passes, k.pass_s
    stripe_shift, unit_shift = _shift_of(stripe), _shift_of(n_units)
    unit_free = np.zeros(n_units)
    cpu_free = np.zeros(max(n_cpus, 1))
    cpu_kind = np.zeros(max(n_cpus, 1), dtype=np.int64)
    n_leaf = 1
    while n_leaf < qd + 2:
        n_leaf *= 2
    ev_t = np.empty(2 * n_leaf)  # every tree node's winning key (leaf n_leaf + slot: its slot's)
    ev_s = np.empty(2 * n_leaf, dtype=np.int64)
    ev_p = np.empty(n_leaf, dtype=np.int64)
    win = np.empty(2 * n_leaf, dtype=np.int64)
    flash_end = np.empty(len(start))
    command_f = np.empty(len(start))  # the batch's factors, drawn before its events
    transfer_f = np.empty(len(start))
    open_members = np.empty(qd, dtype=np.int64)  # the open pass's reads, in join order
    open_slots = np.empty(qd, dtype=np.int64)  # and their workers
    closing_members = np.empty(qd, dtype=np.int64)  # the closed pass's, until its close event
    closing_slots = np.empty(qd, dtype=np.int64)
    static = shares.shape[0] > 0  # each worker its own share of the reads
    share_next = np.empty(qd, dtype=np.int64)  # a worker's next read and its share's end
    share_end = np.empty(qd, dtype=np.int64)
    for b in range(len(ptr) - 1):
        lo = ptr[b]
        hi = ptr[b + 1]
        makespan[b] = 0.0
        if hi == lo:
            continue
        for u in range(n_units):
            unit_free[u] = 0.0
        for c in range(len(cpu_free)):
            cpu_free[c] = 0.0
            cpu_kind[c] = 0
        link_free = 0.0
        n_open = 0  # reads in the open pass (0: none open; the opener joins at once)
        pass_cost = 0.0
        n_closing = 0
        closing_end = 0.0
        seq = 0
        in_flight = 0
        nxt = lo
        n_workers = qd if static or qd < hi - lo else hi - lo
        begin_slot = n_workers  # the pass's begin and close events
        close_slot = n_workers + 1
        size = 1  # leaves of this batch's tree: a power of two ≥ its slots
        while size < n_workers + (2 if passes else 0):
            size *= 2
        for w in range(size):
            ev_t[size + w] = np.inf
            ev_s[size + w] = _NONE
        draw_factors(first_index + lo, off[lo:hi], length[lo:hi], k.command_spread,
                     k.command_inv_gamma, k.command_table, k.transfer_spread,
                     k.transfer_inv_gamma, k.transfer_table, command_f, transfer_f)
        for w in range(n_workers):
            if static:
                share_next[w] = shares[b, w]
                share_end[w] = shares[b, w + 1]
                if share_next[w] >= share_end[w]:  # an empty share: the worker has nothing
                    continue
                i = share_next[w]
                share_next[w] += 1
            else:
                i = nxt
                nxt += 1
            in_flight += 1
            t_issue = (batch_start_s + host_s + call_s if n_cpus == 0  # (_host's first case)
                       else _host(cpu_free, cpu_kind, n_cpus, batch_start_s, host_s, SUBMIT,
                                  call_s))
            start[i - lo] = t_issue
            t_first, flash_end[i - lo] = _claim_units(
                off[i], length[i], t_issue, command_s * command_f[i - lo], n_units, unit_bps, stripe,
                stripe_shift, unit_shift, unit_free)
            if passes:  # the read joins the back end's queue when it is issued
                t_first = t_issue
            ev_t[size + w] = t_first  # now = 0: now + (t_first - now) is t_first
            ev_s[size + w] = seq
            ev_p[w] = 4 * i + _FIRST_BYTE
            seq += 1
        _build(ev_t, ev_s, win, size)
        mk = 0.0
        while True:
            w = win[1]
            now = ev_t[1]
            if now == np.inf:
                break
            p = ev_p[w]
            i = p >> 2
            kind = p & 3
            if kind == _PASS:  # a pass event: i = 0 its begin, 1 its close
                if i == 0:
                    busy = 0.0
                    for c in range(n_cpus):
                        if cpu_free[c] > busy:
                            busy = cpu_free[c]
                    if busy > now:  # a host CPU is busy: put the begin off
                        _set(ev_t, ev_s, ev_p, win, size, w, now + (busy - now), seq, _PASS)
                        seq += 1
                        continue
                    link_free = now + pass_cost
                    closing_end = link_free
                    n_closing = n_open
                    for m in range(n_open):  # (a loop: slices would count references)
                        closing_members[m] = open_members[m]
                        closing_slots[m] = open_slots[m]
                    n_open = 0
                    _set(ev_t, ev_s, ev_p, win, size, w, np.inf, _NONE, 0)
                    _set(ev_t, ev_s, ev_p, win, size, close_slot, now, seq, 4 + _PASS)
                    seq += 1
                else:  # the close: every member's done event, in join order
                    _set(ev_t, ev_s, ev_p, win, size, w, np.inf, _NONE, 0)
                    for m in range(n_closing):
                        j = closing_members[m]
                        fe = flash_end[j - lo]
                        done = (fe if fe > closing_end else closing_end) + transport_s
                        _set(ev_t, ev_s, ev_p, win, size, closing_slots[m], now + (done - now),
                             seq, 4 * j + _DONE)
                        seq += 1
                    n_closing = 0
            elif kind == _FIRST_BYTE and passes:  # issued: join the open pass, or open one
                _set(ev_t, ev_s, ev_p, win, size, w, np.inf, _NONE, 0)
                if n_open == 0:
                    begin = link_free if link_free > now else now + wakeup_s
                    pass_cost = pass_s
                    _set(ev_t, ev_s, ev_p, win, size, begin_slot, now + (begin - now), seq,
                         _PASS)
                    seq += 1
                ovh = link_overhead_s / (1.0 + amortization * (in_flight - 1))
                bytes_s = length[i] / link_bps * transfer_f[i - lo]
                pass_cost += (ovh + bytes_s) * (1.0 + congestion * (in_flight - 1))
                open_members[n_open] = i
                open_slots[n_open] = w
                n_open += 1
            elif kind == _FIRST_BYTE:  # first byte ready: take the shared link
                if link_free > now:  # busy link: the read joins the back end's run
                    link_begin = link_free
                    wake = 0.0
                else:  # idle link: the back end must be woken first
                    link_begin = now
                    wake = wakeup_s
                ovh = link_overhead_s / (1.0 + amortization * (in_flight - 1))
                bytes_s = length[i] / link_bps * transfer_f[i - lo]
                link_free = link_begin + (wake + ovh + bytes_s) * (
                    1.0 + congestion * (in_flight - 1))
                fe = flash_end[i - lo]
                done = (fe if fe > link_free else link_free) + transport_s
                _set(ev_t, ev_s, ev_p, win, size, w, now + (done - now), seq, 4 * i + _DONE)
                seq += 1
            else:
                if kind == _DONE:  # done at the device: reap on the host
                    in_flight -= 1
                    fin = (now + completion_s + call_s if n_cpus == 0
                           else _host(cpu_free, cpu_kind, n_cpus, now, completion_s, REAP,
                                      call_s))
                    finish[i - lo] = fin
                    if fin > mk:
                        mk = fin
                    if n_cpus > 0:  # shared CPUs: the next submit queues from the reap's end
                        _set(ev_t, ev_s, ev_p, win, size, w, now + (fin - now), seq,
                             4 * i + _REAPED)
                        seq += 1
                        continue
                else:  # reaped (shared CPUs only)
                    fin = finish[i - lo]
                if static and share_next[w] < share_end[w]:  # its share's next read
                    i = share_next[w]
                    share_next[w] += 1
                elif not static and nxt < hi:  # the worker picks the batch's next read
                    i = nxt
                    nxt += 1
                else:
                    i = -1
                if i >= 0:
                    in_flight += 1
                    arrive = fin if fin > now else now
                    t_issue = (arrive + host_s + call_s if n_cpus == 0
                               else _host(cpu_free, cpu_kind, n_cpus, arrive, host_s, SUBMIT,
                                          call_s))
                    start[i - lo] = t_issue
                    t_first, flash_end[i - lo] = _claim_units(
                        off[i], length[i], t_issue, command_s * command_f[i - lo], n_units, unit_bps, stripe,
                        stripe_shift, unit_shift, unit_free)
                    if passes:
                        t_first = t_issue
                    _set(ev_t, ev_s, ev_p, win, size, w, now + (t_first - now), seq,
                         4 * i + _FIRST_BYTE)
                    seq += 1
                else:  # no reads left: the worker retires
                    _set(ev_t, ev_s, ev_p, win, size, w, np.inf, _NONE, 0)
        makespan[b] = mk


NO_SHARES = np.zeros((0, 1), dtype=np.int64)
"""Every worker takes the batch's next read (the kernel's `shares` without rows)."""

CHUNK_READS = 1 << 13
"""Reads per kernel call of `run_batches` (whole batches, so a larger batch is a call of its
own): chunks run on all usable CPUs, and a small call (a fit's point) is one chunk."""


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return max(len(os.sched_getaffinity(0)), 1)


def balanced_chunk_reads(n_reads: int, threads: int) -> int:
    """Reads per chunk for `threads` CPUs: about CHUNK_READS, in a number of chunks that
    is a multiple of `threads` (5 chunks on 2 CPUs would leave one idle for a fifth)."""
    n_chunks = -(-n_reads // CHUNK_READS)
    if threads > 1 and n_chunks > 1:
        n_chunks = -(-n_chunks // threads) * threads
    return max(-(-n_reads // max(n_chunks, 1)), 1)


def chunk_bounds(ptr: np.ndarray, chunk_reads: int = CHUNK_READS) -> list[tuple[int, int]]:
    """Batch ranges [b0, b1) of about `chunk_reads` reads each, cut at batch boundaries."""
    n_batches = len(ptr) - 1
    if n_batches <= 0:
        return []
    if ptr[-1] <= chunk_reads:  # one chunk (a fit's points: no array work per call)
        return [(0, n_batches)]
    cuts = np.searchsorted(ptr, np.arange(chunk_reads, int(ptr[-1]), chunk_reads), "left")
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, n_batches), [n_batches]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


_POOLS: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the threads


def _pool(threads: int) -> ThreadPoolExecutor:
    """One shared pool per thread count (the kernel releases the GIL)."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="flashsim-fast")
    return _POOLS[threads]


class FastDevice(DeviceModel):
    """Numba fast path of `FlashDevice`: same model, same API, same answers. `threads`: how
    many CPUs `run_batches` spreads its chunks of batches over (None: every usable CPU;
    batches are independent, so the answer does not depend on it)."""

    def __init__(self, params: DeviceParams | dict, threads: int | None = None) -> None:
        self.params = load_params(params)
        self._k = ModelConstants.from_params(self.params)
        self.threads = threads

    def _chunk(self, off: np.ndarray, length: np.ndarray, ptr: np.ndarray, shares: np.ndarray,
               b0: int, b1: int, queue_depth: int, makespan: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """Batches b0..b1-1 into makespan[b0:b1]; the start and finish of the last one's reads
        if it is the call's last batch (kept for no other chunk: a 6.7B plan has thousands)."""
        lo, hi = int(ptr[b0]), int(ptr[b1])
        sub_ptr = ptr[b0:b1 + 1] - lo if lo else ptr[b0:b1 + 1]
        largest = hi - lo if b1 - b0 == 1 else int(np.max(sub_ptr[1:] - sub_ptr[:-1]))
        start, finish = np.zeros(largest), np.zeros(largest)
        sub_shares = shares[b0:b1] - lo if len(shares) else shares
        _simulate(self._k, lo, off[lo:hi], length[lo:hi], sub_ptr, sub_shares,
                  int(queue_depth), start, finish, makespan[b0:b1])
        return (start, finish) if b1 == len(ptr) - 1 else None

    def _chunks(self, off: np.ndarray, length: np.ndarray, ptr: np.ndarray,
                shares: np.ndarray, chunks: list[tuple[int, int]], queue_depth: int,
                makespan: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """`_chunk` for each of `chunks` in order; the last one's result."""
        for b0, b1 in chunks:
            last = self._chunk(off, length, ptr, shares, b0, b1, queue_depth, makespan)
        return last

    def _call(self, off: np.ndarray, length: np.ndarray, ptr: np.ndarray, queue_depth: int,
              shares: np.ndarray = NO_SHARES):
        """Every batch's makespan; the start and finish of the last batch's reads. With T
        CPUs the chunks are cut into T runs of consecutive chunks: the calling thread runs
        the first, the pool the others (one job each: a job's hand-off costs tens of µs)."""
        makespan = np.zeros(len(ptr) - 1)
        threads = self.threads or usable_cpus()
        chunks = chunk_bounds(ptr, balanced_chunk_reads(int(ptr[-1]), threads))
        if not chunks:
            return np.zeros(0), np.zeros(0), makespan
        runs = [list(run) for run in np.array_split(np.arange(len(chunks)),
                                                     min(threads, len(chunks)))]
        runs = [[chunks[c] for c in run] for run in runs]
        args = (off, length, ptr, shares)
        jobs = [_pool(len(runs) - 1).submit(self._chunks, *args, run, queue_depth, makespan)
                for run in runs[1:]]
        last = self._chunks(*args, runs[0], queue_depth, makespan)
        for job in jobs:
            last = job.result()
        return last[0], last[1], makespan

    def run(self, offsets: object, lengths: object, queue_depth: int) -> DeviceRun:
        """Simulate one batch of reads from an idle device at t = 0 with `queue_depth` in flight."""
        off, length = check_reads(offsets, lengths, queue_depth)
        ptr = np.array([0, len(off)], dtype=np.int64)
        makespan = np.zeros(1)
        # one batch is one chunk: run it here (no split, no pool)
        start, finish = self._chunk(off, length, ptr, NO_SHARES, 0, 1, queue_depth, makespan)
        return DeviceRun(start, finish, float(makespan[0]))

    def run_batches(self, offsets: object, lengths: object, batch_ptr: object,
                    queue_depth: int, shares: object = None) -> np.ndarray:
        """Makespan (s) of every batch offsets[ptr[b]:ptr[b+1]], each from an idle device;
        `shares` (base.check_shares): each worker issues only its own share of a batch."""
        off, length = check_reads(offsets, lengths, queue_depth)
        ptr = check_batch_ptr(batch_ptr, len(off))
        shares = NO_SHARES if shares is None else check_shares(shares, ptr, queue_depth)
        return self._call(off, length, ptr, queue_depth, shares)[2]
