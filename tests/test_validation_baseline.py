"""validate's baseline columns without the disk: the interpolation baseline's per-token I/O of
a real plan on a flat synthetic device by hand, its row statistics, and which points it is
built from (the given profile, the run's calibration, none for bare parameters)."""

from __future__ import annotations

import numpy as np
import pytest

from flashsim.data import bundled_trace_path
from flashsim.device.baseline import Baseline
from flashsim.device.profile import DeviceParams, DevicePoint, DeviceProfile
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace
from flashsim.validation.predict import baseline_token_s, profile_baseline
from flashsim.validation.rows import BASELINE_KEYS, baseline_stats, row_stats
from flashsim.validation.spec import spec_from_options

PROFILE = "flashsim/data/devices/m1max-paper.yaml"
FLAT_MB_S = 500.0


def _flat_points(batch_makespan_us: float | None = None) -> list[DevicePoint]:
    """Synthetic: every chunk at every QD moves FLAT_MB_S."""
    pts = [DevicePoint(chunk_bytes=c, queue_depth=q, throughput_mb_s=FLAT_MB_S)
           for c in (4096, 1 << 20) for q in (1, 64)]
    if batch_makespan_us is not None:  # 4 reads of 4 KiB: 4 × 8.192 µs at 500 MB/s + start
        pts.append(DevicePoint(chunk_bytes=4096, queue_depth=4, batch_reads=4,
                               batch_makespan_us=batch_makespan_us,
                               throughput_mb_s=4 * 4096 / batch_makespan_us))
    return pts


def test_per_token_io_of_a_real_plan_on_a_flat_device_by_hand():
    trace = ActivationTrace.load(bundled_trace_path("opt-mini-ref")).head(4)
    plan = make_layout("bundled").plan(trace)
    busy = (plan.reads_per_batch() > 0).sum(axis=1)
    got = baseline_token_s(plan, Baseline(_flat_points()), 8)
    assert got == pytest.approx(plan.bytes_per_token() / (FLAT_MB_S * 1e6))
    # a 25 µs start on every batch that reads anything
    start = baseline_token_s(plan, Baseline(_flat_points(4 * 8.192 + 25.0)), 8)
    assert start - got == pytest.approx(busy * 25e-6)


def test_baseline_columns_follow_row_stats():
    measured = np.array([[1.0, 2.0, 4.0, 10.0], [1.2, 2.0, 4.0, 10.0]]) * 1e-3
    base = np.array([1.1, 2.0, 5.0, 10.0]) * 1e-3
    cols = baseline_stats(measured, base)
    # measured medians 1.1, 2, 4, 10 ms → errors 0, 0, 25, 0 % → median 0 %
    assert cols["baseline_error_p50_pct"] == pytest.approx(0.0)
    assert cols["baseline_io_ms_p50"] == pytest.approx(3.5)
    assert cols == {new: row_stats(measured, base)[old] for old, new in BASELINE_KEYS.items()}
    assert baseline_stats(measured, None) == dict.fromkeys(BASELINE_KEYS.values())


def test_the_baseline_is_built_from_the_points_the_model_was_fitted_to():
    spec = spec_from_options(["naive"], [1], {"store": "s", "profile": PROFILE})
    given = profile_baseline(spec, {"calibrated": False})
    m1 = DeviceProfile.load(PROFILE)
    assert given.throughput_mb_s(16384, 32) == pytest.approx(2250.0)
    assert profile_baseline(spec_from_options(["naive"], [1], {"store": "s", "profile": m1}),
                            {"calibrated": False}).throughput_mb_s(8192, 32) == \
        pytest.approx(1250.0)
    calibrated = profile_baseline(spec, {"calibrated": True, "points": [
        p.model_dump() for p in _flat_points()]})
    assert calibrated.throughput_mb_s(16384, 32) == pytest.approx(FLAT_MB_S)
    bare = spec_from_options(["naive"], [1], {"store": "s", "profile": m1.params})
    assert isinstance(bare.profile, DeviceParams)
    assert profile_baseline(bare, {"calibrated": False}) is None
