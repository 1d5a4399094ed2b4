"""The interpolation baseline: measured points come back exactly, values between them by
hand (linear in log chunk × log QD on log throughput), monotone where the data is, clamped
outside, and the short-batch rule on hand-made numbers."""

from pathlib import Path

import numpy as np
import pytest

from flashsim.device import baseline
from flashsim.device.baseline import Baseline
from flashsim.device.profile import DevicePoint, DeviceProfile
from flashsim.errors import InputError

DEVICES = Path(__file__).resolve().parents[2] / "flashsim" / "data" / "devices"


def _pt(chunk, qd, tput, lat=None, **kw) -> DevicePoint:
    return DevicePoint(chunk_bytes=chunk, queue_depth=qd, throughput_mb_s=tput,
                       latency_mean_us=lat, **kw)


@pytest.mark.parametrize("path", sorted(DEVICES.glob("*.yaml")), ids=lambda p: p.stem)
def test_measured_points_come_back_exactly(path):
    profile = DeviceProfile.load(path)
    b = Baseline(profile.points)
    for p in (p for p in profile.points if p.batch_reads is None):  # steady-state points
        assert b.throughput_mb_s(p.chunk_bytes, p.queue_depth, p.pattern) == pytest.approx(
            p.throughput_mb_s, rel=1e-9)
        if p.latency_mean_us is not None:
            assert b.latency_us(p.chunk_bytes, p.queue_depth, p.pattern) == pytest.approx(
                p.latency_mean_us, rel=1e-9)
    assert baseline.predict_point(profile, profile.points[0].chunk_bytes,
                                  profile.points[0].queue_depth)[0] > 0


# synthetic 2 × 2 grid: 4 KiB and 16 KiB at QD 1 and 4
GRID = [_pt(4096, 1, 100.0, 40.96), _pt(16384, 1, 400.0, 40.96),
        _pt(4096, 4, 200.0, 81.92), _pt(16384, 4, 800.0, 81.92)]


def test_between_points_linear_in_logs_by_hand():
    b = Baseline(GRID)
    # the middle of the cell in log chunk × log QD: the geometric mean of its corners
    assert b.throughput_mb_s(8192, 2) == pytest.approx((100 * 400 * 200 * 800) ** 0.25)
    # on an edge: geometric mean of its two ends
    assert b.throughput_mb_s(8192, 1) == pytest.approx(200.0)
    assert b.throughput_mb_s(4096, 2) == pytest.approx((100 * 200) ** 0.5)
    # every corner's latency is Little's law (QD × chunk / throughput), so inside too
    assert b.latency_us(8192, 2) == pytest.approx(2 * 8192 / b.throughput_mb_s(8192, 2))


def test_outside_the_grid_throughput_is_clamped_and_latency_follows_it():
    b = Baseline(GRID)
    assert b.throughput_mb_s(1 << 20, 64) == pytest.approx(800.0)
    assert b.throughput_mb_s(512, 1) == pytest.approx(100.0)
    # the edge point's latency / (QD × chunk / throughput), scaled to the query
    assert b.latency_us(65536, 4) == pytest.approx(81.92 * 4)
    assert b.latency_us(16384, 16) == pytest.approx(81.92 * 4)


def test_monotone_where_the_data_is():
    profile = DeviceProfile.load(DEVICES / "local-virtio.yaml")
    b = Baseline(profile.points)
    steady = [p for p in profile.points if p.batch_reads is None]
    qds = sorted({p.queue_depth for p in steady})
    chunks = sorted({p.chunk_bytes for p in steady})
    tput = {(p.chunk_bytes, p.queue_depth): p.throughput_mb_s for p in steady}
    dense = np.exp2(np.linspace(np.log2(chunks[0]), np.log2(chunks[-1]), 400))
    checked = 0
    for qd in qds:
        row = [tput[(c, qd)] for c in chunks]
        for lo, hi, a, z in zip(chunks, chunks[1:], row, row[1:]):
            inside = dense[(dense >= lo) & (dense <= hi)]
            got = b.throughput_mb_s(inside, np.full(len(inside), qd))
            assert min(a, z) * (1 - 1e-9) <= got.min() and got.max() <= max(a, z) * (1 + 1e-9)
            step = np.diff(got) * np.sign(z - a)
            assert np.all(step >= -1e-9 * max(a, z))  # follows the segment's direction
            checked += 1
    assert checked == len(qds) * (len(chunks) - 1)
    # and across queue depths at a chunk between grid chunks, where both columns rise
    mono = [c for c in chunks[:-1] if all(np.diff([tput[(c, q)] for q in qds]) > 0)
            and all(np.diff([tput[(chunks[chunks.index(c) + 1], q)] for q in qds]) > 0)]
    assert mono  # 4, 8 and 16 KiB rise with QD, and so do the chunks above them
    for c in mono:
        mid = c * 2 ** (np.log2(chunks[chunks.index(c) + 1] / c) / 2)
        q = np.exp2(np.linspace(0, np.log2(qds[-1]), 200))
        assert np.all(np.diff(b.throughput_mb_s(np.full(len(q), mid), q)) >= 0)


def test_scattered_points_interpolate_inside_and_take_the_nearest_outside():
    # synthetic, not a grid: (log2 chunk, log2 QD) = (12, 0), (14, 0), (12, 2)
    b = Baseline([_pt(4096, 1, 10.0), _pt(16384, 1, 40.0), _pt(4096, 4, 20.0),
                  _pt(8192, 64, 5.0, pattern="sequential")])
    assert b.throughput_mb_s(8192, 2) == pytest.approx((40 * 20) ** 0.5)  # on the long edge
    assert b.throughput_mb_s(16384, 2) == pytest.approx(40.0)  # outside: nearest (14, 0)
    assert b.throughput_mb_s(4096, 1, "sequential") == pytest.approx(5.0)  # one point
    with pytest.raises(InputError, match="clustered"):
        b.throughput_mb_s(4096, 1, "clustered")


def test_repeated_points_are_averaged_in_logs():
    b = Baseline([*GRID, _pt(4096, 1, 400.0, 10.24)])
    assert b.throughput_mb_s(4096, 1) == pytest.approx(200.0)


# synthetic steady points whose per-read times (chunk / throughput) are round: 4 KiB 40 µs at
# QD 1, 10 µs at QD 4; 64 KiB 100 µs at QD 1, 50 µs at QD 4
PACE = [_pt(4096, 1, 4096 / 40), _pt(4096, 4, 4096 / 10), _pt(65536, 1, 65536 / 100),
        _pt(65536, 4, 65536 / 50)]


def _batch(chunk, qd, n, makespan_us) -> DevicePoint:
    return _pt(chunk, qd, n * chunk / makespan_us, batch_reads=n, batch_makespan_us=makespan_us)


def test_batch_rule_by_hand():
    # start gaps: 110 - 8 × 10 = 30, 230 - 4 × 50 = 30, 60 - 40 = 20: the median, 30 µs
    b = Baseline([*PACE, _batch(4096, 4, 8, 110.0), _batch(65536, 4, 4, 230.0),
                  _batch(4096, 1, 1, 60.0)])
    assert b.start_us == pytest.approx(30.0)
    off = np.zeros(9, dtype=np.int64)
    length = np.array([4096, 4096, 65536, 65536, 65536, 4096, 4096, 65536, 4096])
    ptr = np.array([0, 4, 5, 5, 7, 9])
    got = b.batch_makespan_s(off, length, ptr, 4) * 1e6
    assert got == pytest.approx([
        30 + 10 + 10 + 50 + 50,  # 4 reads at QD 4: each its own size's pace
        30 + 100,  # one read: QD 1, whatever the queue depth allows
        0.0,  # an empty batch
        30 + 2 * 20,  # two reads: QD 2, between 40 and 10 µs in logs: 20 µs each
        30 + (100 * 50) ** 0.5 + 20,  # 64 KiB and 4 KiB at QD 2: geometric means
    ])
    assert baseline.predict_batch_makespan_us(b, 4096, 16, 8, "clustered") == pytest.approx(
        30 + 8 * 10)  # QD cut to 4 (grid edge), clustered batches on the random curve


def test_no_short_batches_no_start_and_never_a_negative_one():
    assert Baseline(PACE).start_us == 0.0
    fast = Baseline([*PACE, _batch(4096, 4, 8, 60.0)])  # faster than 8 × 10 µs
    assert fast.start_us == 0.0
    assert baseline.batch_makespan_s(fast, [0, 0], [4096, 4096], [0, 2], 1) == pytest.approx(
        [80e-6])


def test_bad_input():
    with pytest.raises(InputError, match="steady-state"):
        Baseline([_batch(4096, 4, 8, 60.0)])
    with pytest.raises(InputError, match="offsets"):
        Baseline(PACE).batch_makespan_s([0], [4096, 4096], [0, 2], 1)
