"""Read buffers: huge-page aligned, pre-faulted, slots that never straddle a huge page."""

import numpy as np
import pytest

from flashsim.io.buffers import (
    HUGE_PAGE_BYTES,
    ReadBuffer,
    huge_page_bytes,
    transparent_huge_pages_enabled,
)
from flashsim.io.reader import DirectReader


def test_read_buffer_is_aligned_writable_and_huge_where_the_kernel_allows():
    buf = ReadBuffer(3 << 20)
    try:
        assert buf.address % HUGE_PAGE_BYTES == 0 and len(buf.view) == 3 << 20
        buf.view[:4] = b"abcd"
        assert bytes(buf.array[:4]) == b"abcd" and buf.array.ctypes.data == buf.address
        if transparent_huge_pages_enabled():
            # two whole huge pages cover the 3 MiB (the mapping is rounded up to whole ones)
            assert huge_page_bytes(buf.address) >= 4 << 20
    finally:
        buf.close()
    small = ReadBuffer(4096, huge=False)
    assert small.address % 4096 == 0 and huge_page_bytes(small.address) == 0
    small.close()


@pytest.mark.disk
def test_slot_buffers_never_straddle_a_huge_page(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 8 << 20, np.uint8).tobytes())
    with DirectReader(path, engine="aio") as reader:
        for length, qd in ((20480, 8), (1 << 20, 4), (4096, 32)):
            reader.read_batch(np.arange(qd, dtype=np.int64) * length, np.full(qd, length), qd)
            addr = reader._slot_addresses
            stride = reader._slot_bytes
            assert len(addr) >= qd and stride >= length
            assert np.all(np.diff(addr) == stride)  # one region, slots back to back
            assert np.all(addr % HUGE_PAGE_BYTES + stride <= HUGE_PAGE_BYTES)


@pytest.mark.disk
def test_reader_without_huge_pages_reads_the_same_bytes(tmp_path):
    path = tmp_path / "g.bin"
    payload = np.random.default_rng(1).integers(0, 256, 4 << 20, np.uint8)
    path.write_bytes(payload.tobytes())
    off = np.array([0, 1 << 20, 65536], dtype=np.int64)
    length = np.array([1 << 20, 8192, 4096], dtype=np.int64)
    for huge in (True, False):
        with DirectReader(path, engine="aio", huge_pages=huge) as reader:
            got = reader.read_batch(off, length, 2, return_data=True).data
            reader.read_batch(off, length, 2)
            assert (huge_page_bytes(int(reader._slot_addresses[0])) > 0) == \
                (huge and transparent_huge_pages_enabled())
        want = np.concatenate([payload[o:o + n] for o, n in zip(off, length)])
        assert np.array_equal(got, want)
