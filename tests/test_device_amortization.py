"""Link overhead amortized over the reads in flight (`link_amortization_per_read`): hand-checked
timings, the steady-state rate it gives at each queue depth, old profiles unchanged, fast = SimPy."""

import numpy as np
import pytest

from flashsim.device import DeviceParams, make_device
from flashsim.device.des import FlashDevice
from flashsim.device.fast import FastDevice

# host 5 µs, command 40 µs, 400 MB/s units (4 KiB: 10.24 µs), link 2000 MB/s (4 KiB: 2.048 µs)
BASE = DeviceParams(host_overhead_us=5.0, command_latency_us=40.0, n_units=64,
                    unit_bandwidth_mb_s=400.0, link_bandwidth_mb_s=2000.0, stripe_bytes="4k",
                    link_overhead_us=20.0)
AMORTIZED = BASE.model_copy(update={"link_amortization_per_read": 1.0})


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_two_reads_in_flight_halve_the_link_overhead(engine):
    # two reads on different units, both first byte at 5 + 40 = 45 µs, 2 in flight:
    # each pays 20 / (1 + 1 × 1) = 10 µs of overhead + 2.048 µs of bytes on the link
    run = make_device(AMORTIZED, engine).run([0, 4096], [4096, 4096], 2)
    assert np.sort(run.finish_s) == pytest.approx([45e-6 + 12.048e-6, 45e-6 + 2 * 12.048e-6])
    # without the term: 20 + 2.048 µs each
    old = make_device(BASE, engine).run([0, 4096], [4096, 4096], 2)
    assert np.sort(old.finish_s) == pytest.approx([45e-6 + 22.048e-6, 45e-6 + 2 * 22.048e-6])


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_a_read_alone_pays_the_full_overhead(engine):
    run = make_device(AMORTIZED, engine).run([0], [4096], 1)
    assert run.finish_s[0] == pytest.approx(45e-6 + 20e-6 + 2.048e-6)


@pytest.mark.parametrize("qd", [1, 3, 11])
def test_link_bound_steady_state_rate_follows_the_queue_depth(qd):
    # link-bound closed loop (64 units, 45 µs to first byte): every worker's read is in
    # flight, so each read takes 50 / (1 + 0.1 (QD - 1)) + 2.048 µs of link time
    params = BASE.model_copy(update={"link_overhead_us": 50.0, "link_amortization_per_read": 0.1})
    n = 3000
    off = np.random.default_rng(qd).integers(0, 1 << 18, size=n) * 4096
    run = FastDevice(params).run(off, np.full(n, 4096), qd)
    f = np.sort(run.finish_s)
    k = 200
    per_read_us = (f[n - 1 - k] - f[k]) / (n - 1 - 2 * k) * 1e6
    if qd == 1:  # not link-bound: a closed loop of host 5 + command 40 + overhead 50 + bytes
        assert per_read_us == pytest.approx(5 + 40 + 50 + 2.048, rel=1e-6)
    else:
        assert per_read_us == pytest.approx(50 / (1 + 0.1 * (qd - 1)) + 2.048, rel=0.01)


def test_old_profiles_load_without_the_term():
    params = DeviceParams(host_overhead_us=1.0, command_latency_us=10.0, n_units=4,
                          unit_bandwidth_mb_s=100.0, link_bandwidth_mb_s=1000.0)
    assert params.link_amortization_per_read == 0.0


@pytest.mark.parametrize("qd", [2, 8, 32])
def test_fast_path_matches_simpy_with_amortization(qd):
    params = AMORTIZED.model_copy(update={
        "link_amortization_per_read": 0.07, "n_units": 5, "stripe_bytes": 16384,
        "host_cpus": 1, "host_completion_us": 2.0, "link_wakeup_us": 6.0,
        "link_congestion_per_read": 0.002, "transport_latency_us": 3.0,
        "command_latency_spread": 0.8, "host_call_us": 4.0, "batch_start_us": 15.0})
    rng = np.random.default_rng(qd)
    sizes = rng.integers(1, 70, size=10)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    off = rng.integers(0, 1 << 18, size=ptr[-1]) * 4096
    length = rng.choice([4096, 16384, 65536], size=ptr[-1])
    des = FlashDevice(params).run_batches(off, length, ptr, qd)
    fast = FastDevice(params).run_batches(off, length, ptr, qd)
    assert np.all(des > 0)
    assert fast == pytest.approx(des, rel=1e-9)
    a = FlashDevice(params).run(off[:ptr[2]], length[:ptr[2]], qd)
    b = FastDevice(params).run(off[:ptr[2]], length[:ptr[2]], qd)
    assert b.finish_s == pytest.approx(a.finish_s, rel=1e-9)
