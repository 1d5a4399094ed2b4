"""Drift: a profile's model scaled by how much slower its own points measure now. By hand:
the per-point time ratios (steady: throughput, short batch: makespan), their median, the
points in common only; the scaled model's times, its after-compute batch cost and the
decode's wait cost (compute, not scaled)."""

from __future__ import annotations

import numpy as np
import pytest

from flashsim.device import make_device
from flashsim.device.drift import Drift, ScaledDevice, time_ratio
from flashsim.device.profile import DecodeWaitInfo, DevicePoint, DeviceProfile, InterleaveInfo

PROFILE = "flashsim/data/devices/m1max-paper.yaml"


def steady(chunk: int, qd: int, mb_s: float) -> DevicePoint:
    return DevicePoint(chunk_bytes=chunk, queue_depth=qd, throughput_mb_s=mb_s)


def batch(chunk: int, qd: int, n: int, makespan_us: float) -> DevicePoint:
    return DevicePoint(chunk_bytes=chunk, queue_depth=qd, throughput_mb_s=1.0, batch_reads=n,
                       batch_makespan_us=makespan_us)


def test_time_ratio_of_steady_and_batch_points():
    # half the throughput: every read takes twice as long
    assert time_ratio(steady(4096, 1, 100.0), steady(4096, 1, 50.0)) == pytest.approx(2.0)
    # a short batch: its makespan, not its throughput field
    assert time_ratio(batch(4096, 8, 16, 400.0), batch(4096, 8, 16, 300.0)) == \
        pytest.approx(0.75)


def test_drift_is_the_median_over_points_of_the_median_over_measurements():
    then = [steady(4096, 1, 100.0), steady(16384, 8, 200.0), batch(4096, 8, 16, 400.0)]
    now = [steady(4096, 1, 50.0), steady(4096, 1, 80.0), steady(4096, 1, 25.0),  # 2.0 median
           steady(16384, 8, 160.0),                                             # 1.25
           batch(4096, 8, 16, 440.0), batch(4096, 8, 16, 480.0),                 # 1.15 median
           steady(65536, 32, 1.0)]                  # not in the profile: not counted
    drift = Drift.of(then, now)
    assert drift.factor == pytest.approx(1.25)
    by_key = {(r["chunk_bytes"], r["queue_depth"], r["batch_reads"]): r for r in drift.ratios}
    assert set(by_key) == {(4096, 1, None), (16384, 8, None), (4096, 8, 16)}
    assert by_key[(4096, 1, None)]["time_ratio"] == pytest.approx(2.0)
    assert by_key[(4096, 1, None)]["measurements"] == 3
    assert by_key[(4096, 8, 16)]["time_ratio"] == pytest.approx(1.15)
    assert Drift.of(then, [steady(65536, 32, 1.0)]) is None


def test_scaled_device_stretches_every_time_but_not_the_wait_cost():
    profile = DeviceProfile.load(PROFILE).model_copy(update={
        "interleave": InterleaveInfo(batch_overhead_us=50.0, gap_us=100.0),
        "decode_wait": DecodeWaitInfo(compute_per_batch_us=20.0, compute_per_io_s=0.2)})
    inner = make_device(profile, "fast")
    scaled = ScaledDevice(inner, 1.5)
    off = np.arange(24, dtype=np.int64) * 8192
    length = np.full(24, 4096, np.int64)
    ptr = np.array([0, 3, 10, 24])
    np.testing.assert_allclose(scaled.run_batches(off, length, ptr, 4),
                               1.5 * inner.run_batches(off, length, ptr, 4))
    one, base = scaled.run(off[:5], length[:5], 2), inner.run(off[:5], length[:5], 2)
    np.testing.assert_allclose(one.finish_s, 1.5 * base.finish_s)
    assert one.makespan_s == pytest.approx(1.5 * base.makespan_s)
    assert scaled.interleave.batch_overhead_us == pytest.approx(75.0)
    assert scaled.decode_wait.compute_per_batch_us == 20.0
    assert scaled.params == inner.params
    assert make_device(scaled) is scaled
    with pytest.raises(ValueError):
        ScaledDevice(inner, 0.0)
