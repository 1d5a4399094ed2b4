"""A link that serves in passes (`link_passes`): hand-checked timings, the lock-step law, the
fast path equal to the SimPy reference, a fit that finds it."""

import numpy as np
import pytest

from flashsim.device import DeviceParams, make_device
from flashsim.device.des import FlashDevice
from flashsim.device.fast import FastDevice
from flashsim.device.fit import (HOST_MODES, fit_params, point_errors, point_reads,
                                 predict_detail, summarize)
from flashsim.device.profile import DevicePoint

# 10 µs submit, 5 µs reap, a 50 µs pass; units and link so fast that bytes cost ~nothing
PASSES = DeviceParams(host_overhead_us=10.0, host_completion_us=5.0, command_latency_us=0.0,
                      n_units=1, stripe_bytes="1m", unit_bandwidth_mb_s=1e9,
                      link_bandwidth_mb_s=1e9, link_passes=True, link_pass_us=50.0)
ONE_CPU = PASSES.model_copy(update={"host_cpus": 1})


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_a_pass_waits_for_the_host_and_completes_its_reads_together(engine):
    run = make_device(ONE_CPU, engine).run([0, 4096], [4096, 4096], 2)
    # submits [0, 10] and [10, 20]; read 0 opens a pass at 10 that is put off until the host
    # CPU is idle at 20, so read 1 joins; the pass ends at 70; reaps [70, 75], [75, 80]
    assert run.start_s == pytest.approx([10e-6, 20e-6])
    assert run.finish_s == pytest.approx([75e-6, 80e-6])


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_unshared_host_reads_issued_together_share_a_pass(engine):
    run = make_device(PASSES, engine).run([0, 4096], [4096, 4096], 2)
    assert run.finish_s == pytest.approx([65e-6, 65e-6])  # one pass 10 → 60, reaps of 5 µs


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_a_read_issued_during_a_pass_waits_for_the_next(engine):
    # one unit at 1000 MB/s: the 64 KiB read 1 is on flash until 79.632 µs, past its pass
    params = PASSES.model_copy(update={"unit_bandwidth_mb_s": 1000.0})
    off = [0, 1 << 20, 2 << 20, 3 << 20]
    run = make_device(params, engine).run(off, [4096, 65536, 4096, 4096], 2)
    # pass 1: reads 0, 1 (10 → 60); read 0 reaped at 65, read 2 issued at 75: pass 2 75 → 125;
    # read 1 done at 79.632 (its unit), reaped 84.632, read 3 issued at 94.632 while pass 2
    # runs: it waits for pass 3 (125 → 175), reaped at 180
    assert run.start_s == pytest.approx([10e-6, 10e-6, 75e-6, 94.632e-6])
    assert run.finish_s == pytest.approx([65e-6, 84.632e-6, 130e-6, 180e-6], rel=1e-5)


def test_steady_time_per_read_is_host_work_plus_the_pass_over_queue_depth():
    # lock-step: the pass waits for the host's q reaps and submits, then serves all q reads
    per_read_us = {}
    for qd in (1, 2, 4, 8, 32):
        d = predict_detail(ONE_CPU, 4096, qd, n_reads=4000)
        per_read_us[qd] = 4096 / d["throughput_mb_s"]
        assert per_read_us[qd] == pytest.approx(15.0 + 50.0 / qd, rel=0.01)
    off, length = point_reads(4096, 8, n_reads=800)
    run = FastDevice(ONE_CPU).run(off, length, 8)
    gaps = np.diff(np.sort(run.finish_s))  # a pass's 8 reaps are 5 µs apart, then a wait
    assert np.mean(gaps > 6e-6) == pytest.approx(1 / 8, abs=0.01)


PASS_SETS = [
    ONE_CPU.model_copy(update={"command_latency_us": 12.0, "command_latency_spread": 0.8,
                               "unit_bandwidth_mb_s": 300.0, "n_units": 4, "stripe_bytes": 16384,
                               "link_bandwidth_mb_s": 1500.0, "link_overhead_us": 3.0,
                               "link_wakeup_us": 7.0, "host_call_us": 4.0,
                               "batch_start_us": 25.0, "link_transfer_spread": 0.3,
                               "transport_latency_us": 2.0}),
    PASSES.model_copy(update={"link_congestion_per_read": 0.01, "link_amortization_per_read": 0.2,
                              "link_overhead_us": 9.0, "unit_bandwidth_mb_s": 500.0,
                              "n_units": 3, "stripe_bytes": 65536}),
    PASSES.model_copy(update={"host_cpus": 2, "host_call_us": 3.0, "link_wakeup_us": 20.0,
                              "unit_bandwidth_mb_s": 800.0, "n_units": 2,
                              "link_bandwidth_mb_s": 900.0}),
]


@pytest.mark.parametrize("qd", [1, 3, 8, 32])
@pytest.mark.parametrize("params", PASS_SETS, ids=["one-cpu", "unshared", "two-cpus"])
def test_fast_path_equals_simpy_with_passes(qd, params):
    rng = np.random.default_rng(qd)
    n = 300
    off = rng.integers(0, 4096, size=n) * 4096
    length = rng.choice([4096, 12288, 65536, 1 << 20], size=n)
    ptr = np.array([0, 1, 40, 40, 170, n])
    des = FlashDevice(params).run_batches(off, length, ptr, qd)
    fast = FastDevice(params).run_batches(off, length, ptr, qd)
    assert np.all(des[[0, 1, 3, 4]] > 0)
    np.testing.assert_allclose(fast, des, rtol=1e-12, atol=0)
    a = FlashDevice(params).run(off, length, qd)
    b = FastDevice(params).run(off, length, qd)
    np.testing.assert_allclose(b.finish_s, a.finish_s, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.start_s, a.start_s, rtol=1e-12, atol=0)


def test_passes_off_ignore_the_pass_time():
    off, length = point_reads(16384, 8, n_reads=500)
    plain = PASSES.model_copy(update={"link_passes": False, "link_overhead_us": 20.0})
    a = FastDevice(plain).run(off, length, 8).finish_s
    b = FastDevice(plain.model_copy(update={"link_pass_us": 999.0})).run(off, length, 8).finish_s
    np.testing.assert_array_equal(a, b)


def test_only_a_link_in_passes_fits_a_lock_step_device():
    # synthetic points (named as such): a lock-step device's own predictions
    truth = ONE_CPU.model_copy(update={"link_bandwidth_mb_s": 800.0, "link_pass_us": 60.0,
                                       "host_overhead_us": 8.0, "host_completion_us": 4.0})
    points = []
    for chunk in (4096, 65536, 262144):
        for qd in (1, 2, 8, 32):
            d = predict_detail(truth, chunk, qd, n_reads=1500)
            points.append(DevicePoint(chunk_bytes=chunk, queue_depth=qd, source="assumption",
                                      throughput_mb_s=d["throughput_mb_s"],
                                      latency_mean_us=d["latency_mean_us"]))
    worst = {}
    for modes in (HOST_MODES[2:], HOST_MODES[1:2]):
        fitted = fit_params(points, quick=True, host_modes=modes)
        assert fitted.link_passes == modes[0][1] and fitted.host_cpus == 1
        worst[fitted.link_passes] = summarize(point_errors(fitted, points)).worst_abs_error_pct
    assert worst[True] < 6.0
    assert worst[False] > 2 * worst[True]  # one-by-one service cannot make S + P / q
