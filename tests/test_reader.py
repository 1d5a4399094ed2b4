"""DirectReader: exact bytes at several queue depths, bad reads rejected before any I/O."""

import os
import threading

import numpy as np
import pytest

from flashsim.errors import InputError
from flashsim.io import aio
from flashsim.io import reader as reader_mod
from flashsim.io.reader import DirectReader

pytestmark = pytest.mark.disk

FILE_BYTES = 8 << 20


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "data.bin"
    content = np.random.default_rng(0).bytes(FILE_BYTES)
    path.write_bytes(content)
    return path, content


ENGINES = ["threads"] + (["aio"] if aio.available() else [])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("qd", [1, 3, 16])
def test_returns_exactly_the_bytes_in_the_file(data_file, qd, engine):
    path, content = data_file
    rng = np.random.default_rng(qd)
    n = 300
    length = rng.choice([4096, 8192, 65536, 262144], size=n)
    off = rng.integers(0, (FILE_BYTES - length) // 4096 + 1) * 4096
    with DirectReader(path, engine=engine) as r:
        assert r.o_direct  # the test file lives on a real disk file system
        assert r.engine == engine
        times = r.read_batch(off, length, qd, return_data=True)
        # and without return_data the same reads go through the per-slot buffers
        again = r.read_batch(off, length, qd)
    assert len(again.finish_s) == n and again.data is None
    pos = 0
    for i in range(n):
        got = times.data[pos:pos + length[i]].tobytes()
        assert got == content[off[i]:off[i] + length[i]], f"read {i}"
        pos += length[i]
    assert times.read_bytes(5, length).tobytes() == content[off[5]:off[5] + length[5]]
    assert np.all(times.finish_s >= times.start_s) and np.all(times.start_s >= 0)
    assert times.makespan_s == pytest.approx(times.finish_s.max())


def _max_in_flight(start, finish):
    events = sorted([(s, 1) for s in start] + [(f, -1) for f in finish], key=lambda e: (e[0], e[1]))
    depth = peak = 0
    for _, d in events:
        depth += d
        peak = max(peak, depth)
    return peak


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("qd", [1, 2, 8])
def test_never_more_than_queue_depth_in_flight(data_file, qd, engine):
    path, _ = data_file
    off = np.random.default_rng(1).integers(0, FILE_BYTES // 4096, size=400) * 4096
    with DirectReader(path, engine=engine) as r:
        t = r.read_batch(off, np.full(400, 4096), qd)
    assert _max_in_flight(t.start_s, t.finish_s) <= qd


def test_worker_threads_persist_across_batches(data_file):
    path, _ = data_file
    off = np.arange(64) * 4096
    with DirectReader(path, engine="threads") as r:
        r.read_batch(off, np.full(64, 4096), 8)
        first = [w.thread for w in r._workers]
        r.read_batch(off, np.full(64, 4096), 8)
        r.read_batch(off[:4], np.full(4, 4096), 4)
        assert [w.thread for w in r._workers] == first
        assert all(t.is_alive() for t in first)
    assert not any(t.is_alive() for t in first)  # close() stops them


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("offsets, lengths, what", [
    ([0, 100], [4096, 4096], "not aligned"),
    ([0, 4096], [4096, 1000], "not aligned"),
    ([0, 4096], [4096, 0], "not aligned"),
    ([0, FILE_BYTES - 4096], [4096, 8192], "outside"),
    ([0, -4096], [4096, 4096], "not aligned|outside"),
])
def test_bad_reads_rejected_before_any_io(data_file, monkeypatch, offsets, lengths, what, engine):
    path, _ = data_file
    calls = []
    real = os.preadv
    monkeypatch.setattr(reader_mod.os, "preadv", lambda *a: calls.append(a) or real(*a))
    real_run = aio.AioContext.run
    monkeypatch.setattr(aio.AioContext, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    with DirectReader(path, engine=engine) as r:
        calls.clear()  # (opening probes one block)
        with pytest.raises(InputError, match=what):
            r.read_batch(offsets, lengths, 2)
        with pytest.raises(InputError, match="queue depth"):
            r.read_batch([0], [4096], 0)
    assert calls == []


def test_missing_file_and_tmpfs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        DirectReader(tmp_path / "nope.bin")
    shm = "/dev/shm"
    if not os.path.isdir(shm) or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm here")
    with open("/proc/mounts") as f:
        if not any(line.split()[1] == shm and line.split()[2] == "tmpfs" for line in f):
            pytest.skip("/dev/shm is not tmpfs here")
    path = os.path.join(shm, f"flashsim-test-{os.getpid()}-{threading.get_ident()}.bin")
    try:
        with open(path, "wb") as f:
            f.write(b"\x01" * 16384)
        with pytest.raises(InputError, match="does not support O_DIRECT.*--allow-page-cache"):
            DirectReader(path)
        with pytest.raises(InputError, match="engine"):
            DirectReader(path, allow_page_cache=True, engine="aio")
        with DirectReader(path, allow_page_cache=True) as r:
            assert r.o_direct is False and r.engine == "threads"
            t = r.read_batch([4096], [4096], 1, return_data=True)
            assert t.data.tobytes() == b"\x01" * 4096
    finally:
        os.unlink(path)
