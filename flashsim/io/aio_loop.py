"""The native-AIO submit/reap loop compiled with numba: a whole batch without returning to Python.

It does what `AioContext.run_python` does (keep min(QD, n) reads in flight, reads taken in
order, a new read as soon as a slot frees), but calls libc's `syscall`
(io_submit, io_getevents), `clock_gettime(CLOCK_MONOTONIC)` and `__errno_location` from
nopython code (three small LLVM intrinsics; the JIT resolves the symbols in the process), so
a read costs its syscalls' share and no interpreter time (the Python loop spends ~4 µs per
read; a 4 KiB read takes ~45 µs), and a call ~1 µs. CLOCK_MONOTONIC is the clock behind
`time.perf_counter()` on Linux, so the stamps compare with it. Compiled once, cached on disk
(`cache=True`: the symbols are resolved again when the cache is loaded, no address is baked in).
"""

from __future__ import annotations

import errno
import time

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

IOCB_WORDS = 8
"""struct iocb as 8 little-endian uint64 words: 0 aio_data, 1 aio_key | aio_rw_flags << 32,
2 aio_lio_opcode | aio_reqprio << 16 | aio_fildes << 32, 3 aio_buf, 4 aio_nbytes, 5 aio_offset,
6 aio_reserved2, 7 aio_flags | aio_resfd << 32."""
EVENT_WORDS = 4
"""struct io_event as 4 int64 words: data, obj, res, res2."""

OK, READ_FAILED, SUBMIT_FAILED, GETEVENTS_FAILED = 0, 1, 2, 3
"""Codes the loop returns, with (read index, res) or (errno, 0)."""

CLOCK_MONOTONIC = 1
_EAGAIN, _EINTR = errno.EAGAIN, errno.EINTR
_EAGAIN_SPINS = 1 << 20
"""Consecutive EAGAINs from io_submit before giving up (it never happens within capacity)."""

_loop = None  # the compiled function, False when numba could not build it
_load_error: str | None = None
compile_s = 0.0
"""Seconds `load` took (numba compile, or loading its cache)."""

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


@intrinsic
def _syscall(typingctx, nr, a, b, c, d, e):
    """libc `long syscall(long number, ...)` with five long arguments."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64, types.int64,
                      types.int64)

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I64, [_I64], var_arg=True), "syscall")
        return builder.call(fn, list(args))
    return sig, codegen


@intrinsic
def _monotonic_ns(typingctx):
    """clock_gettime(CLOCK_MONOTONIC) in integer ns."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        timespec = ir.ArrayType(_I64, 2)
        ts = cgutils.alloca_once(builder, timespec)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I32, [_I32, timespec.as_pointer()]),
            "clock_gettime")
        builder.call(fn, [ir.Constant(_I32, CLOCK_MONOTONIC), ts])
        zero = ir.Constant(_I32, 0)
        sec = builder.load(builder.gep(ts, [zero, zero]))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(_I32, 1)]))
        return builder.add(builder.mul(sec, ir.Constant(_I64, 1_000_000_000)), nsec)
    return sig, codegen


@intrinsic
def _errno(typingctx):
    """This thread's errno (read right after a failed call)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I32.as_pointer(), []), "__errno_location")
        return builder.sext(builder.load(builder.call(fn, [])), _I64)
    return sig, codegen


@njit(cache=True, inline="always")
def _now_s():
    return float(_monotonic_ns()) / 1e9  # as time.perf_counter rounds it


@njit(cache=True, inline="always")
def _submit(nr_submit, ctx, ptrs, count):
    """io_submit ptrs[:count], retrying on EAGAIN and after partial submissions:
    (how many went in, 0 or the errno that stopped it)."""
    done = 0
    spins = 0
    base = np.int64(ptrs.ctypes.data)
    while done < count:
        got = _syscall(nr_submit, ctx, count - done, base + done * 8, 0, 0)
        if got < 0:
            err = _errno()
            if err == _EAGAIN and spins < _EAGAIN_SPINS:
                spins += 1
                continue
            return done, err
        spins = 0
        done += got
    return done, 0


@njit(cache=True, inline="always")
def _submit_stamped(nr_submit, ctx, ptrs, count, starts, first):
    """Stamp reads first..first+count-1 as submitted now and io_submit them (ptrs[:count])."""
    t = _now_s()
    for i in range(first, first + count):
        starts[i] = t
    return _submit(nr_submit, ctx, ptrs, count)


@njit(cache=True, nogil=True)
def aio_loop(nr_submit, nr_getevents, ctx, fd, offsets, lengths, addresses, by_read,
             queue_depth, first_group, submit_group, iocbs, ptrs, events, starts, finishes):
    """Read every (offsets[i], lengths[i]) with min(queue_depth, n) in flight; read i lands at
    addresses[i] (by_read) or in its slot's buffer addresses[s]. The first reads go in
    `first_group` per io_submit call, the refills `submit_group` per call (a new read as soon as
    a completion is reaped when 1). Stamps starts/finishes (s,
    CLOCK_MONOTONIC). Returns (code, read index or errno, res); after a failed read or
    io_submit it submits nothing more and reaps what is in flight before returning.

    One compiled loop on purpose: a call out of it per completion would add the Python-level
    overhead this loop exists to remove from the measured per-read time."""
    n = len(offsets)
    qd = min(queue_depth, n, iocbs.shape[0])
    if n == 0:
        return OK, 0, 0
    group = max(1, submit_group)
    first = max(1, first_group)
    slot_read = np.empty(qd, dtype=np.int64)
    iocb_base = np.uint64(iocbs.ctypes.data)
    events_address = np.int64(events.ctypes.data)
    fd_word = np.uint64(fd) << np.uint64(32)  # aio_lio_opcode IOCB_CMD_PREAD = 0
    for s in range(qd):  # the first QD reads, read s in slot s
        iocbs[s, 0] = np.uint64(s)
        iocbs[s, 1] = np.uint64(0)
        iocbs[s, 2] = fd_word
        iocbs[s, 3] = np.uint64(addresses[s])
        iocbs[s, 4] = np.uint64(lengths[s])
        iocbs[s, 5] = np.uint64(offsets[s])
        iocbs[s, 6] = np.uint64(0)
        iocbs[s, 7] = np.uint64(0)
        slot_read[s] = s
    code = OK
    where = 0
    value = 0
    in_flight = 0
    nxt = 0
    while nxt < qd:
        count = min(first, qd - nxt)
        for k in range(count):
            ptrs[k] = iocb_base + np.uint64((nxt + k) * 64)
        done, err = _submit_stamped(nr_submit, ctx, ptrs, count, starts, nxt)
        in_flight += done
        nxt += done
        if err != 0:
            code, where, value = SUBMIT_FAILED, err, 0
            break
    while in_flight > 0:
        got = _syscall(nr_getevents, ctx, 1, in_flight, events_address, 0)
        t = _now_s()
        if got < 0:
            err = _errno()
            if err == _EINTR:
                continue
            return GETEVENTS_FAILED, err, 0  # the caller destroys the context
        pending = 0
        for e in range(got):
            s = events[e, 0]
            i = slot_read[s]
            finishes[i] = t
            in_flight -= 1
            res = events[e, 2]
            if res != lengths[i] and code == OK:
                code, where, value = READ_FAILED, i, res
            if code == OK and nxt < n:
                iocbs[s, 3] = np.uint64(addresses[nxt] if by_read else addresses[s])
                iocbs[s, 4] = np.uint64(lengths[nxt])
                iocbs[s, 5] = np.uint64(offsets[nxt])
                slot_read[s] = nxt
                ptrs[pending] = iocb_base + np.uint64(s * 64)
                pending += 1
                nxt += 1
                if pending == group:
                    done, err = _submit_stamped(nr_submit, ctx, ptrs, pending, starts,
                                                nxt - pending)
                    in_flight += done
                    pending = 0
                    if err != 0:
                        code, where, value = SUBMIT_FAILED, err, 0
        if pending and code == OK:
            done, err = _submit_stamped(nr_submit, ctx, ptrs, pending, starts, nxt - pending)
            in_flight += done
            if err != 0:
                code, where, value = SUBMIT_FAILED, err, 0
    return code, where, value


def load():
    """The compiled loop, built on first use (numba compiles it, or loads it from its disk
    cache, with an empty batch, so no timed batch pays that), or None when numba cannot
    build it (the caller then runs the Python loop)."""
    global _loop, _load_error, compile_s
    if _loop is None:
        t0 = time.perf_counter()
        try:
            empty_i = np.zeros(0, dtype=np.int64)
            empty_f = np.zeros(0)
            call(aio_loop, (0, 0, 0, 0), 0, -1, empty_i, empty_i, empty_i, False, 1, 1, 1,
                 np.zeros((1, IOCB_WORDS), np.uint64), np.zeros(1, np.uint64),
                 np.zeros((1, EVENT_WORDS), np.int64), empty_f, empty_f)
            _loop = aio_loop
        except Exception as exc:  # numba cannot build it here: the Python loop serves
            _loop, _load_error = False, f"{type(exc).__name__}: {exc}"
        compile_s = time.perf_counter() - t0
    return _loop or None


def load_error() -> str | None:
    """Why the compiled loop is unavailable (None when it is, or before `load`)."""
    return _load_error


def call(loop, nums, ctx: int, fd: int, offsets: np.ndarray, lengths: np.ndarray,
         addresses: np.ndarray, by_read: bool, queue_depth: int, first_group: int,
         submit_group: int, iocbs: np.ndarray,
         ptrs: np.ndarray, events: np.ndarray, starts: np.ndarray, finishes: np.ndarray
         ) -> tuple[int, int, int]:
    """Run the compiled loop with the argument types it is compiled for (one signature):
    syscall numbers `nums` (io_setup, io_destroy, io_submit, io_getevents), int64
    offsets/lengths/addresses, uint64 iocbs [cap, 8] and ptrs [cap], int64 events [cap, 4],
    float64 starts/finishes."""
    return loop(int(nums[2]), int(nums[3]), int(ctx), int(fd), offsets, lengths, addresses,
                bool(by_read), int(queue_depth), int(first_group), int(submit_group), iocbs, ptrs,
                events, starts, finishes)
