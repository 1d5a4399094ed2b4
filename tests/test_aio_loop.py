"""The compiled native-AIO loop (aio_loop.py): exact bytes, exactly QD in flight, error paths."""

import os
import signal
import time

import numpy as np
import pytest

from flashsim.io import aio, aio_loop
from flashsim.io.reader import DirectReader

FILE_BYTES = 4 << 20

pytestmark = [pytest.mark.disk,
              pytest.mark.skipif(not aio.available(), reason="no native AIO here")]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("aio_loop") / "data.bin"
    content = np.random.default_rng(7).bytes(FILE_BYTES)
    path.write_bytes(content)
    return path, content


@pytest.fixture(scope="module")
def direct_fd(data_file):
    fd = os.open(data_file[0], os.O_RDONLY | os.O_DIRECT)
    yield fd
    os.close(fd)


def _plan(rng, n, lengths=(4096, 8192, 32768, 131072), distinct=False):
    length = rng.choice(lengths, size=n).astype(np.int64)
    if distinct:  # one length, no offset twice
        length[:] = length[0]
        off = rng.choice(FILE_BYTES // length[0], size=n, replace=False) * length[0]
    else:
        off = rng.integers(0, (FILE_BYTES - length) // 4096 + 1) * 4096
    return off.astype(np.int64), length


def test_the_compiled_loop_builds():
    assert aio_loop.load() is not None, aio_loop.load_error()
    ctx = aio.AioContext(4)
    try:
        assert ctx.compiled
    finally:
        ctx.close()


@pytest.mark.parametrize("qd", [1, 8, 32])
def test_return_data_bytes_equal_the_file(data_file, qd):
    path, content = data_file
    off, length = _plan(np.random.default_rng(qd), 200)
    with DirectReader(path, engine="aio") as r:
        assert r.engine == "aio" and r._aio.compiled
        t = r.read_batch(off, length, qd, return_data=True)
    ends = np.cumsum(length)
    for i in range(len(off)):
        got = t.data[ends[i] - length[i]:ends[i]].tobytes()
        assert got == content[off[i]:off[i] + length[i]], f"read {i}"


@pytest.mark.parametrize("engine", ["aio", "threads"])
def test_a_kept_buffer_returns_each_batch_bytes_and_is_reused(data_file, engine):
    path, content = data_file
    rng = np.random.default_rng(7)
    with DirectReader(path, engine=engine) as r:
        addresses = set()
        plans = sorted((_plan(rng, 50) for _ in range(3)), key=lambda p: -int(p[1].sum()))
        for qd, (off, length) in zip((1, 8, 32), plans):  # largest first: no regrowth
            t = r.read_batch(off, length, qd, return_data=True, reuse_buffer=True)
            want = b"".join(content[o:o + n] for o, n in zip(off, length))
            assert t.data.tobytes() == want
            addresses.add(r._data_buffer.address)
        assert len(addresses) == 1  # faulted in once, not mapped per batch


def _slot_buffers(count, nbytes):
    """`count` page-aligned buffers of `nbytes` (views of one numpy array) and their addresses."""
    whole = np.zeros(count * nbytes + 4096, dtype=np.uint8)
    skip = -whole.ctypes.data % 4096
    views = [whole[skip + s * nbytes:skip + (s + 1) * nbytes] for s in range(count)]
    return views, np.array([v.ctypes.data for v in views], dtype=np.int64)


@pytest.mark.parametrize("loop", ["compiled", "python"])
@pytest.mark.parametrize("qd", [1, 8, 32])
def test_slot_buffers_hold_the_reads(data_file, direct_fd, qd, loop):
    """Without return_data every read lands in its slot's buffer: with n == QD read s stays in
    slot s; with n > QD each slot ends holding one of the batch's reads, all different."""
    _, content = data_file
    rng = np.random.default_rng(100 + qd)
    ctx = aio.AioContext(64)
    run = ctx.run if loop == "compiled" else (
        lambda fd, o, ln, ra, sa, q, s, f: ctx.run_python(fd, o.tolist(), ln.tolist(), None,
                                                         sa.tolist(), q, s, f))
    views, addresses = _slot_buffers(qd, 131072)
    try:
        off, length = _plan(rng, qd)
        run(direct_fd, off, length, None, addresses, qd, np.zeros(qd), np.zeros(qd))
        for s in range(qd):
            assert views[s][:length[s]].tobytes() == content[off[s]:off[s] + length[s]]
        off, length = _plan(rng, 5 * qd + 3, lengths=(16384,), distinct=True)
        n = len(off)
        run(direct_fd, off, length, None, addresses, qd, np.zeros(n), np.zeros(n))
        held = []
        for s in range(qd):
            got = views[s][:16384].tobytes()
            match = [i for i in range(n) if content[off[i]:off[i] + 16384] == got]
            assert match, f"slot {s} holds no read of the batch"
            held.append(off[match[0]])
        assert len(set(held)) == qd
    finally:
        ctx.close()


def _in_flight_checks(start, finish, qd):
    """Reads go in in order, the first min(QD, n) before any completion is reaped, never more
    than QD in flight, and after every reap its freed slots are refilled before the next."""
    n = len(start)
    q = min(qd, n)
    assert np.all(np.diff(start) >= 0)
    assert np.all(finish >= start)
    reaps = np.unique(finish)  # the reads of one io_getevents return share its stamp
    assert np.sum(start < reaps[0]) == q
    # never more than QD in flight (a finish stamped before a start at the same time)
    events = sorted([(s, 1) for s in start] + [(f, -1) for f in finish])
    depth = peak = 0
    for _, d in events:
        depth += d
        peak = max(peak, depth)
    assert peak == q
    # exactly QD: by the next reap, the slots a reap freed are refilled (while reads remain)
    for t, t_next in zip(reaps[:-1], reaps[1:]):
        done = np.sum(finish <= t)
        in_flight = np.sum(start < t_next) - done
        assert in_flight == min(q, n - done), f"after the reap at {t}: {in_flight} in flight"


@pytest.mark.parametrize("qd", [1, 8, 32])
def test_exactly_queue_depth_in_flight(data_file, qd):
    path, _ = data_file
    off, length = _plan(np.random.default_rng(200 + qd), 300, lengths=(4096, 32768))
    with DirectReader(path, engine="aio") as r:
        t = r.read_batch(off, length, qd)
        _in_flight_checks(t.start_s, t.finish_s, qd)
        few = r.read_batch(off[:5], length[:5], qd)  # fewer reads than the QD
        _in_flight_checks(few.start_s, few.finish_s, qd)


@pytest.mark.parametrize("first_group, submit_group", [(1 << 30, 1 << 30), (3, 2), (1, 5)])
def test_reads_per_io_submit_call_keep_the_semantics(data_file, first_group, submit_group,
                                                     monkeypatch):
    """Grouping submissions (the first QD in one call, refills batched) changes no byte and
    keeps exactly QD in flight."""
    path, content = data_file
    monkeypatch.setattr(aio.AioContext, "first_group", first_group)
    monkeypatch.setattr(aio.AioContext, "submit_group", submit_group)
    off, length = _plan(np.random.default_rng(first_group + submit_group), 250)
    with DirectReader(path, engine="aio") as r:
        t = r.read_batch(off, length, 16, return_data=True)
    _in_flight_checks(t.start_s, t.finish_s, 16)
    ends = np.cumsum(length)
    for i in range(len(off)):
        assert t.data[ends[i] - length[i]:ends[i]].tobytes() == content[off[i]:off[i] + length[i]]


def test_stamps_use_the_perf_counter_clock(direct_fd):
    ctx = aio.AioContext(8)
    views, addresses = _slot_buffers(8, 4096)
    try:
        n = 64
        start, finish = np.zeros(n), np.zeros(n)
        off = np.arange(n, dtype=np.int64) * 4096
        before = time.perf_counter()
        ctx.run(direct_fd, off, np.full(n, 4096), None, addresses, 8, start, finish)
        after = time.perf_counter()
        assert before <= start.min() and finish.max() <= after
    finally:
        ctx.close()


@pytest.mark.parametrize("loop", ["compiled", "python"])
def test_a_failing_read_raises_with_its_offset_and_the_context_recovers(data_file, direct_fd,
                                                                        loop):
    _, content = data_file
    ctx = aio.AioContext(8)
    if loop == "python":
        ctx.loop = None  # the fallback path of run
    views, addresses = _slot_buffers(8, 8192)
    try:
        n = 40
        off = np.arange(n, dtype=np.int64) * 8192
        length = np.full(n, 8192, dtype=np.int64)
        off[17] = FILE_BYTES + (1 << 20)  # past the end: O_DIRECT returns 0 bytes
        with pytest.raises(OSError, match=f"short read at offset {off[17]}: 0 of 8192 bytes"):
            ctx.run(direct_fd, off, length, None, addresses, 8, np.zeros(n), np.zeros(n))
        if loop == "compiled":  # it reaped the reads in flight: the context serves again
            off[17] = 100  # not aligned for O_DIRECT: the kernel fails it (EINVAL)
            with pytest.raises(OSError, match="read at offset 100: Invalid argument"):
                ctx.run(direct_fd, off, length, None, addresses, 8, np.zeros(n), np.zeros(n))
            good = np.arange(8, dtype=np.int64) * 8192
            ctx.run(direct_fd, good, np.full(8, 8192), None, addresses, 8, np.zeros(8),
                    np.zeros(8))
            for s in range(8):
                assert views[s].tobytes() == content[good[s]:good[s] + 8192]
    finally:
        ctx.close()


def test_submit_failure_raises(direct_fd):
    ctx = aio.AioContext(4)
    views, addresses = _slot_buffers(4, 4096)
    closed = os.open(os.devnull, os.O_RDONLY)
    os.close(closed)
    try:
        with pytest.raises(OSError, match="io_submit: Bad file descriptor"):
            ctx.run(closed, np.zeros(6, np.int64), np.full(6, 4096), None, addresses, 4,
                    np.zeros(6), np.zeros(6))
    finally:
        ctx.close()


def test_reader_raises_on_a_file_truncated_after_the_check(tmp_path, monkeypatch):
    path = tmp_path / "shrinks.bin"
    content = np.random.default_rng(3).bytes(1 << 20)
    path.write_bytes(content)
    off = np.arange(64, dtype=np.int64) * 16384
    length = np.full(64, 16384, dtype=np.int64)
    with DirectReader(path, engine="aio") as r:
        r.check_reads(off, length)
        os.truncate(path, 512 << 10)  # the second half of the reads now fall past the end
        monkeypatch.setattr(r, "check_reads", lambda o, ln: (np.asarray(o), np.asarray(ln)))
        with pytest.raises(OSError, match=r"short read at offset \d+: 0 of 16384 bytes"):
            r.read_batch(off, length, 8)
        t = r.read_batch(off[:8], length[:8], 8, return_data=True)  # a fresh context serves
    assert t.data.tobytes() == content[:8 * 16384]


def test_signals_during_a_batch_do_not_break_it(data_file):
    """io_getevents interrupted by a signal (EINTR) is retried inside the loop."""
    path, content = data_file
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    off, length = _plan(np.random.default_rng(9), 3000, lengths=(4096,))
    try:
        with DirectReader(path, engine="aio") as r:
            signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
            t = r.read_batch(off, length, 1, return_data=True)
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits
    for i in range(0, len(off), 97):
        assert t.data[i * 4096:(i + 1) * 4096].tobytes() == content[off[i]:off[i] + 4096]


def test_without_numba_aio_runs_the_python_loop_and_auto_picks_threads(data_file, monkeypatch):
    path, content = data_file
    monkeypatch.setattr(aio_loop, "load", lambda: None)
    with DirectReader(path, engine="auto") as r:
        assert r.engine == "threads"
    with DirectReader(path, engine="aio") as r:
        assert r.engine == "aio" and not r._aio.compiled
        off, length = _plan(np.random.default_rng(11), 50)
        t = r.read_batch(off, length, 8, return_data=True)
    ends = np.cumsum(length)
    for i in range(len(off)):
        assert t.data[ends[i] - length[i]:ends[i]].tobytes() == content[off[i]:off[i] + length[i]]


def test_a_loop_that_cannot_compile_leaves_the_python_loop(monkeypatch):
    def broken(*args):
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(aio_loop, "_loop", None)  # all three restored after the test
    monkeypatch.setattr(aio_loop, "_load_error", None)
    monkeypatch.setattr(aio_loop, "aio_loop", broken)
    assert aio_loop.load() is None
    assert "no LLVM here" in aio_loop.load_error()
    ctx = aio.AioContext(2)
    try:
        assert not ctx.compiled
    finally:
        ctx.close()
