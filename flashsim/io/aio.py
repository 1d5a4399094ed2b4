"""Linux native AIO (io_submit / io_getevents) through raw syscalls: one thread, QD in flight.

With O_DIRECT the kernel queues the reads asynchronously, so a single loop keeps exactly
`queue_depth` reads in flight: submit QD reads, and whenever completions arrive, time-stamp
them and submit as many new reads. This is fio's libaio engine in miniature, with no library
needed (libc `syscall`). The loop runs compiled (aio_loop.py, numba: one read per io_submit
call, like fio); the Python loop here (`run_python`: a reap's refills in one io_submit call,
~4 µs of interpreter per read, ~0.8 of fio at 4 KiB) serves where numba cannot build it.
x86-64 and arm64 only; the reader falls back to its thread pool elsewhere.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import time

import numpy as np

try:
    from . import aio_loop
except ImportError:  # no numba/llvmlite: the Python loop serves
    aio_loop = None

_SYSCALLS = {  # io_setup, io_destroy, io_submit, io_getevents
    "x86_64": (206, 207, 209, 208),
    "aarch64": (0, 1, 2, 4),
    "arm64": (0, 1, 2, 4),
}
_IOCB_CMD_PREAD = 0


class _Iocb(ctypes.Structure):
    """struct iocb of linux/aio_abi.h (little-endian layout, 64 bytes)."""

    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
                ("aio_rw_flags", ctypes.c_int32), ("aio_lio_opcode", ctypes.c_uint16),
                ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
                ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
                ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32)]


class _IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


_libc = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


_available: bool | None = None


def available() -> bool:
    """True when this machine's architecture has known AIO syscall numbers and io_setup works
    (probed once per process: io_destroy takes tens of ms)."""
    global _available
    if _available is None:
        _available = False
        if platform.machine() in _SYSCALLS and platform.system() == "Linux":
            try:
                AioContext(1, compiled=False).close()
                _available = True
            except OSError:
                pass
    return _available


class AioContext:
    """An AIO context able to hold `capacity` reads in flight; `compiled` runs batches in the
    numba loop (built here on first use) when it can be built, else in the Python loop."""

    first_group = 1
    """Reads per io_submit call for a batch's first min(QD, n) reads in the compiled loop."""
    submit_group = 1
    """Reads per io_submit call for the refills in the compiled loop. One each, like fio's
    libaio engine: on this VM's virtio disk, 4 KiB QD 32 reached ~0.8 of fio when a reap's
    refills went in one call (more than 2 iocbs per call are plugged and dispatched together)
    and ~1.0 one by one; short batches (16-100 reads, QD 8/32) finished up to 16 % sooner with
    every read in its own call than with the first QD in one call and the refills batched
    (4 KiB QD 32, 100 reads: 1.49 against 1.77 ms)."""

    def __init__(self, capacity: int, compiled: bool = True) -> None:
        self.nums = _SYSCALLS[platform.machine()]
        self.sys = _syscall()
        self.capacity = int(capacity)
        self.ctx = ctypes.c_ulong(0)
        if self.sys(self.nums[0], ctypes.c_long(self.capacity), ctypes.byref(self.ctx)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"io_setup: {os.strerror(err)}")
        self.iocbs = (_Iocb * self.capacity)()
        self.ptrs = (ctypes.POINTER(_Iocb) * self.capacity)()
        self.events = (_IoEvent * self.capacity)()
        self.base = ctypes.addressof(self.iocbs)
        self.size = ctypes.sizeof(_Iocb)
        # per-slot objects made once, not per batch: iocb s carries aio_data = s, PREAD
        self.cbs = [self.iocbs[s] for s in range(self.capacity)]
        self.cb_ptrs = [ctypes.pointer(cb) for cb in self.cbs]
        for s, cb in enumerate(self.cbs):
            cb.aio_data = s
            cb.aio_lio_opcode = _IOCB_CMD_PREAD
        self.fd = -1
        # the same memory as uint64/int64 words for the compiled loop
        self.iocb_words = np.frombuffer(self.iocbs, dtype=np.uint64).reshape(self.capacity, 8)
        self.ptr_words = np.frombuffer(self.ptrs, dtype=np.uint64)
        self.event_words = np.frombuffer(self.events, dtype=np.int64).reshape(self.capacity, 4)
        self.loop = aio_loop.load() if compiled and aio_loop is not None else None

    @property
    def compiled(self) -> bool:
        """True when batches run in the compiled loop (numba), False in the Python loop."""
        return self.loop is not None

    def close(self) -> None:
        if self.ctx.value:
            self.sys(self.nums[1], self.ctx)
            self.ctx = ctypes.c_ulong(0)

    def _submit(self, count: int) -> None:
        done = 0
        while done < count:
            ptrs = self.ptrs if done == 0 else ctypes.cast(
                ctypes.byref(self.ptrs, done * ctypes.sizeof(ctypes.c_void_p)),
                ctypes.POINTER(ctypes.POINTER(_Iocb)))
            got = self.sys(self.nums[2], self.ctx, ctypes.c_long(count - done), ptrs)
            if got < 0:
                err = ctypes.get_errno()
                if err == errno.EAGAIN:
                    continue
                raise OSError(err, f"io_submit: {os.strerror(err)}")
            done += got

    def run(self, fd: int, offsets, lengths, read_addresses, slot_addresses,
            queue_depth: int, starts: np.ndarray, finishes: np.ndarray) -> None:
        """Read every (offset, length), keeping min(queue_depth, n) in flight; stamp each read's
        submit and completion in starts/finishes (s, the clock of time.perf_counter).

        Read i lands at read_addresses[i] when given, else in its slot's buffer
        slot_addresses[s] (one buffer per read in flight). OSError (naming the read's offset)
        when a read fails or comes back short, or a syscall fails; the reads still in flight
        are reaped first.
        """
        if self.loop is None:
            self.run_python(fd, np.asarray(offsets).tolist(), np.asarray(lengths).tolist(),
                            None if read_addresses is None else np.asarray(read_addresses).tolist(),
                            None if slot_addresses is None else np.asarray(slot_addresses).tolist(),
                            queue_depth, starts, finishes)
            return
        off = np.ascontiguousarray(offsets, dtype=np.int64)
        length = np.ascontiguousarray(lengths, dtype=np.int64)
        by_read = read_addresses is not None
        addresses = np.ascontiguousarray(read_addresses if by_read else slot_addresses,
                                         dtype=np.int64)
        n = len(off)
        qd = min(int(queue_depth), n, self.capacity)
        if len(length) != n or len(starts) != n or len(finishes) != n or \
                len(addresses) < (n if by_read else qd):
            raise ValueError("offsets, lengths, starts, finishes and addresses disagree in length")
        if starts.dtype != np.float64 or finishes.dtype != np.float64:
            raise ValueError("starts and finishes must be float64 arrays")
        self.fd = -1  # the Python loop rewrites its iocbs' fd
        code, where, res = aio_loop.call(
            self.loop, self.nums, self.ctx.value, fd, off, length, addresses, by_read, qd,
            self.first_group, self.submit_group, self.iocb_words, self.ptr_words,
            self.event_words, starts, finishes)
        if code == aio_loop.READ_FAILED:
            if res < 0:
                raise OSError(-res, f"read at offset {off[where]}: {os.strerror(-res)}")
            raise OSError(errno.EIO, f"short read at offset {off[where]}: {res} of "
                                     f"{length[where]} bytes")
        if code == aio_loop.SUBMIT_FAILED:
            raise OSError(where, f"io_submit: {os.strerror(where)}")
        if code == aio_loop.GETEVENTS_FAILED:
            raise OSError(where, f"io_getevents: {os.strerror(where)}")

    def run_python(self, fd: int, offsets: list[int], lengths: list[int],
                   read_addresses: list[int] | None, slot_addresses: list[int] | None,
                   queue_depth: int, starts: np.ndarray, finishes: np.ndarray) -> None:
        """`run` as a Python loop (lists in; ~4 µs per read): the fallback without numba."""
        n = len(offsets)
        qd = min(queue_depth, n, self.capacity)
        ptrs, events = self.ptrs, self.events
        cbs, cb_ptrs = self.cbs, self.cb_ptrs
        by_read = read_addresses is not None
        slot_read = [0] * qd
        clock = time.perf_counter
        getevents = self.sys
        nr_getevents = self.nums[3]
        ctx = self.ctx
        if fd != self.fd:
            for cb in cbs:
                cb.aio_fildes = fd
            self.fd = fd
        for s in range(qd):  # the first QD reads, read s in slot s
            cb = cbs[s]
            cb.aio_buf = read_addresses[s] if by_read else slot_addresses[s]
            cb.aio_nbytes = lengths[s]
            cb.aio_offset = offsets[s]
            slot_read[s] = s
            ptrs[s] = cb_ptrs[s]
        nxt = qd
        t = clock()
        self._submit(qd)
        starts[:qd] = t
        completed = 0
        min_nr = ctypes.c_long(1)
        max_nr = ctypes.c_long(qd)
        while completed < n:
            got = getevents(nr_getevents, ctx, min_nr, max_nr, events, None)
            t = clock()
            if got < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                raise OSError(err, f"io_getevents: {os.strerror(err)}")
            pending = 0
            first = nxt
            for e in range(got):
                ev = events[e]
                s = ev.data
                i = slot_read[s]
                finishes[i] = t
                res = ev.res
                if res != lengths[i]:
                    if res < 0:
                        raise OSError(-res, f"read at offset {offsets[i]}: {os.strerror(-res)}")
                    raise OSError(errno.EIO, f"short read at offset {offsets[i]}: {res} of "
                                             f"{lengths[i]} bytes")
                if nxt < n:
                    cb = cbs[s]
                    cb.aio_buf = read_addresses[nxt] if by_read else slot_addresses[s]
                    cb.aio_nbytes = lengths[nxt]
                    cb.aio_offset = offsets[nxt]
                    slot_read[s] = nxt
                    ptrs[pending] = cb_ptrs[s]
                    pending += 1
                    nxt += 1
            completed += got
            if pending:
                t = clock()
                self._submit(pending)
                starts[first:nxt] = t
