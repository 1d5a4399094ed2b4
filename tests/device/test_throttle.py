"""blk-throttle in front of a device model: the slice budget, a throttled stream and batches,
the caps read from a cgroup, and profiles that carry them."""

import os

import numpy as np
import pytest

from flashsim.device import make_device
from flashsim.device.drift import ScaledDevice, scaled
from flashsim.device.fast import FastDevice
from flashsim.device.profile import DeviceProfile, ThrottleInfo
from flashsim.device.span import at_span
from flashsim.device.throttle import SliceBudget, ThrottledDevice, blkio_throttle_of, pieces

from ..device_cases import PARAMS

# 1000 IOPS and a 100 ms slice: 100 reads a slice; 4 KiB reads on PARAMS take ~20 µs at QD 8,
# so a slice's budget goes in a few ms and the rest waits for the slice's end
CAP = ThrottleInfo(read_iops=1000, slice_ms=100)
BYTES_CAP = ThrottleInfo(read_mb_s=4.096, slice_ms=100)  # 409 600 bytes a slice: 100 × 4 KiB


def _reads(n, chunk=4096, seed=0):
    off = np.random.default_rng(seed).integers(0, 1 << 18, n).astype(np.int64) * chunk
    return off, np.full(n, chunk, dtype=np.int64)


def _cum(length):
    return np.concatenate([[0], np.cumsum(length)])


def test_a_fresh_slice_lets_its_budget_through_and_holds_the_rest_to_its_end():
    b = SliceBudget.of(CAP)
    assert (b.ios_per_slice, b.slice_s) == (100, 0.1)
    _, length = _reads(250)
    assert pieces(b, _cum(length), 0, 250, 2.0) == [(2.0, 100), (2.1, 100), (2.2, 50)]


def test_the_byte_cap_counts_bytes_not_reads():
    _, length = _reads(14, chunk=65536)  # 6.25 reads of 64 KiB a slice
    out = pieces(SliceBudget.of(BYTES_CAP), _cum(length), 0, 14, 0.0)
    assert [n for _, n in out] == [6, 6, 2]
    assert [t for t, _ in out] == pytest.approx([0.0, 0.1, 0.2])


def test_one_read_larger_than_a_slice_still_goes():
    _, length = _reads(2, chunk=1 << 20)  # 1 MiB > 409 600 bytes a slice
    out = pieces(SliceBudget.of(BYTES_CAP), _cum(length), 0, 2, 0.0)
    assert [n for _, n in out] == [1, 1]


def test_idle_past_the_slice_starts_afresh_and_busy_slices_are_trimmed():
    _, length = _reads(300)
    cum = _cum(length)
    b = SliceBudget.of(CAP)
    assert pieces(b, cum, 0, 80, 0.0) == [(0.0, 80)]
    b.busy_until(0.01)
    # 0.05 s later the slice still runs: 20 reads left in it
    assert pieces(b, cum, 80, 130, 0.06) == [(0.06, 20), (pytest.approx(0.1), 30)]
    b.busy_until(0.11)
    # long idle: a fresh slice, a whole budget
    assert pieces(b, cum, 130, 230, 5.0) == [(5.0, 100)]


def test_a_throttled_stream_runs_at_the_device_speed_then_waits_each_slice():
    device = FastDevice(PARAMS)
    off, length = _reads(250)
    free = device.run(off[:100], length[:100], 8)
    run = ThrottledDevice(device, CAP).run(off, length, 8)
    assert free.makespan_s < 0.01  # the budget goes fast
    assert run.makespan_s == pytest.approx(0.2 + device.run(off[200:], length[200:], 8).makespan_s)
    assert np.sum(run.finish_s < 0.1) == 100 and np.sum(run.finish_s < 0.2) == 200
    # a held read waited in its slot from when one freed: its latency spans the wait
    assert run.latency_s.max() > 0.09


def test_batches_that_fit_cost_what_they_cost_alone_and_one_that_does_not_waits():
    device = FastDevice(PARAMS)
    off, length = _reads(150)
    ptr = np.array([0, 40, 80, 150])
    free = device.run_batches(off, length, ptr, 8)
    made = ThrottledDevice(device, CAP).run_batches(off, length, ptr, 8)
    assert made[:2] == pytest.approx(free[:2])
    # the third batch: 20 reads in this slice, 50 when it ends (~0.1 s after the first read)
    assert 0.09 < made[2] < 0.1
    # with 0.2 s of compute before each batch every batch meets a fresh slice
    rested = ThrottledDevice(device, CAP).run_batches(off, length, ptr, 8, gaps_s=0.2)
    assert rested == pytest.approx(free)


def test_without_caps_a_throttle_is_refused():
    with pytest.raises(ValueError, match="read_iops or read_mb_s"):
        ThrottleInfo(slice_ms=100)


def test_a_profile_keeps_its_throttle_and_its_model_runs_behind_it(tmp_path):
    base = DeviceProfile.load("local-virtio")
    prof = base.model_copy(update={"throttle": CAP})
    path = tmp_path / "p.yaml"
    prof.save(path)
    again = DeviceProfile.load(path)
    assert again.throttle == CAP
    device = make_device(again)
    assert isinstance(device, ThrottledDevice) and device.throttle == CAP
    assert not isinstance(make_device(base), ThrottledDevice)
    # a span's faster reads and a drift's factor apply to the device, not to the caps
    small = at_span(device, 16 << 20)
    assert isinstance(small, ThrottledDevice) and small.throttle == CAP
    slower = scaled(device, 1.5)
    assert isinstance(slower, ThrottledDevice) and isinstance(slower.inner, ScaledDevice)


def _fake_cgroup(tmp_path, st_dev, group_rules, parent_rules=""):
    """A cgroup v1 blkio tree with group /a/b, a /proc/self/cgroup naming it, and a
    /sys/dev/block where `st_dev` is the whole disk 254:0."""
    root = tmp_path / "blkio"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "blkio.throttle.read_iops_device").write_text(group_rules)
    (root / "a" / "blkio.throttle.read_bps_device").write_text(parent_rules)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup {root} cgroup rw,relatime,blkio 0 0\n")
    proc = tmp_path / "cgroup"
    proc.write_text("12:memory:/\n7:blkio:/a/b\n1:name=systemd:/\n")
    sys_dev_block = tmp_path / "sys"
    disk = tmp_path / "devices" / "vdz"
    disk.mkdir(parents=True)
    (disk / "dev").write_text("254:0\n")
    sys_dev_block.mkdir()
    (sys_dev_block / f"{os.major(st_dev)}:{os.minor(st_dev)}").symlink_to(disk)
    return dict(proc_cgroup=proc, mounts=mounts, sys_dev_block=sys_dev_block)


def test_caps_are_read_from_the_group_and_its_parents_for_the_files_disk(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x")
    where = _fake_cgroup(tmp_path, os.stat(data).st_dev, "254:0 15000\n8:0 99\n",
                         "254:0 300000000\n")
    got = blkio_throttle_of(data, **where)
    assert (got.read_iops, got.read_mb_s, got.slice_ms) == (15000, 300, 100)
    assert "254:0" in got.source
    # rules for another disk only: no throttle
    where = _fake_cgroup(tmp_path / "other", os.stat(data).st_dev, "8:0 99\n")
    assert blkio_throttle_of(data, **where) is None


def test_no_blkio_hierarchy_means_no_throttle(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    assert blkio_throttle_of(tmp_path, mounts=mounts) is None


def test_replay_behind_a_throttle_is_deterministic_and_slower_on_average():
    from flashsim.data import REFERENCE_TRACE
    from flashsim.layout.registry import make_layout
    from flashsim.trace.format import ActivationTrace
    from flashsim.validation.predict import predict_token_s

    plan = make_layout("sparse").plan(ActivationTrace.load(REFERENCE_TRACE).head(64))
    prof = DeviceProfile.load("local-virtio").model_copy(update={"correction": "none"})
    # a slice's budget is about four tokens' reads; a block reads 2 warm-up tokens and 8
    caps = ThrottleInfo(read_iops=float(plan.reads_per_token().mean()) * 40, slice_ms=100)
    throttled = prof.model_copy(update={"throttle": caps})
    a = predict_token_s(plan, throttled, 8, 3)
    free = predict_token_s(plan, prof, 8, 3)
    assert np.array_equal(a, predict_token_s(plan, throttled, 8, 3))
    assert a.shape == free.shape == (3, 64)
    assert a.mean() > 2 * free.mean()  # the tokens that wait, wait up to a slice
    unheld = np.abs(a / free - 1) < 0.1
    assert 0.2 < unheld.mean() < 0.9  # others go at the device's speed
    # each block from a fresh slice, as validate reads it: the same tokens held in every
    # draw, as the kernel held them from an idle group (the device study's hold positions)
    held = a > 2 * np.median(a)
    assert held.any() and (held == held[0]).all()


def test_validate_idles_past_the_slice_before_a_block_only_behind_a_throttle(monkeypatch,
                                                                             tmp_path):
    import flashsim.validation.measure as measure

    class Store:
        path = tmp_path / "s.ffn"

    monkeypatch.setattr(measure, "blkio_throttle_of", lambda path: None)
    assert measure.throttle_idle_s([Store()]) == 0.0
    monkeypatch.setattr(measure, "blkio_throttle_of", lambda path: CAP)
    assert measure.throttle_idle_s([Store(), Store()]) == pytest.approx(0.22)


def test_a_group_that_read_below_its_caps_keeps_one_slice_of_budget():
    """As the kernel trims (measured here: after a second of reads at half the cap a burst
    ran 2950-3000 reads before the first wait, 1500 after idle)."""
    _, length = _reads(1000)
    cum = _cum(length)
    b = SliceBudget.of(CAP)
    t, done = 0.0, 0
    for _ in range(20):  # 30 reads every 60 ms: half the cap
        assert pieces(b, cum, done, done + 30, t) == [(t, 30)]
        b.busy_until(t + 0.001)
        done, t = done + 30, t + 0.06
    first = pieces(b, cum, done, done + 300, t)[0][1]
    assert 150 < first <= 200


def test_a_decode_that_computes_between_its_batches_meets_fresh_slices():
    """simulate puts a layer's compute between throttled batches: 0.3 s a layer lets every
    slice end, so each batch costs what it costs alone; 1 µs does not, and tokens wait."""
    from flashsim.cost.compute_model import ComputeModel
    from flashsim.cost.simulate import simulate
    from flashsim.data import REFERENCE_TRACE
    from flashsim.layout.registry import make_layout
    from flashsim.trace.format import ActivationTrace

    plan = make_layout("sparse").plan(ActivationTrace.load(REFERENCE_TRACE).head(16))
    # the layered model alone: a residual is fitted behind the profile's own throttle
    prof = DeviceProfile.load("local-virtio").model_copy(update={"correction": "none"})
    caps = ThrottleInfo(read_iops=float(plan.reads_per_token().mean()) * 20, slice_ms=100)
    throttled = prof.model_copy(update={"throttle": caps})

    def io_ms(profile, layer_s):
        model = ComputeModel(fixed_s_per_layer=layer_s, s_per_neuron=0.0, source="test")
        frame, _ = simulate(plan, profile, 8, memcpy_bytes_per_s=1e9, compute_model=model,
                            wait_cost=None)
        return frame["io_ms"].to_numpy()

    assert io_ms(throttled, 0.3) == pytest.approx(io_ms(prof, 0.3), rel=1e-9)
    assert io_ms(throttled, 1e-6).mean() > 3 * io_ms(prof, 1e-6).mean()


def test_both_engines_agree_behind_the_throttle():
    """The stage wraps either engine; the SimPy reference and the fast path still agree."""
    from flashsim.device.des import FlashDevice

    off, length = _reads(260)
    ptr = np.array([0, 60, 120, 260])
    fast = ThrottledDevice(FastDevice(PARAMS), CAP)
    des = ThrottledDevice(FlashDevice(PARAMS), CAP)
    assert fast.run_batches(off, length, ptr, 8) == pytest.approx(
        des.run_batches(off, length, ptr, 8), rel=1e-9)
    a, b = fast.run(off, length, 8), des.run(off, length, 8)
    assert a.finish_s == pytest.approx(b.finish_s, rel=1e-9)
    assert a.start_s == pytest.approx(b.start_s, rel=1e-9)


def test_validate_says_when_the_models_throttle_is_not_this_runs(tmp_path):
    """A throttled profile judged on reads without the throttle (here: no blkio group)."""
    from flashsim.validation.validate import throttle_record

    data = tmp_path / "store.bin"
    data.write_bytes(b"x" * 4096)
    device = ThrottledDevice(FastDevice(PARAMS), CAP)
    record = throttle_record(device, data)
    if record["this_run"] is not None:
        pytest.skip("this process reads behind a blkio throttle")
    assert record["model"]["read_iops"] == 1000 and record["agree"] is False
    assert throttle_record(FastDevice(PARAMS), data)["agree"] is True


def test_the_replay_warm_up_reads_backwards_and_stops_by_the_clock():
    """As measure.warm_up: the tokens before the block, last first, at least two and on
    until 20 ms went by; behind a throttle a held token's wait counts on that clock."""
    from flashsim.validation.predict import _warm_up_count, _warm_up_tokens

    assert _warm_up_tokens(np.full(10, 0.004), 3).tolist() == [2, 1, 0, 9, 8]
    assert _warm_up_count(np.array([0.05, 0.001, 0.001])) == 2
    assert _warm_up_count(np.array([0.001, 0.05, 0.001, 0.001])) == 2
    assert _warm_up_count(np.full(3, 0.001)) == 3  # every token, when they never add up
