"""The shared link: wake-up, congestion, overhead amortized over the reads in flight, the
transfer spread, and a link serving in passes (hand-checked timings and steady-state laws)."""

import numpy as np
import pytest

from device_cases import (
    AMORTIZED,
    LINK_BASE,
    ONE_CPU,
    PARAMS,
    PASSES,
    SPREAD,
    SPREAD_BASE,
    qd1_latencies_us,
)
from flashsim.device import make_device
from flashsim.device.fast import FastDevice
from flashsim.device.fit import point_reads, predict_detail


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_link_wakeup_is_paid_only_by_reads_that_find_the_link_idle(engine):
    woken = PARAMS.model_copy(update={"link_wakeup_us": 20.0, "n_units": 1})
    one = make_device(woken, engine).run([0], [4096], 1)
    # idle link: 5 host + 40 command, then 20 wake-up + 4096 B on the link (cut-through
    # with the unit's 10.24 µs)
    assert one.finish_s[0] == pytest.approx(5e-6 + 40e-6 + max(20e-6 + 4096 / 2000e6, 4096 / 400e6))
    # 1 unit, 3 reads at QD 3: the unit serializes them (50.24 µs each); the link is idle
    # again before each first byte, so every read pays the wake-up
    three = make_device(woken, engine).run([0, 8192, 16384], [4096] * 3, 3)
    service = 40e-6 + 4096 / 400e6
    assert np.sort(three.finish_s) == pytest.approx(
        [5e-6 + k * service + 40e-6 + 20e-6 + 4096 / 2000e6 for k in range(3)])


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_congestion_slows_only_crowded_transfers(engine):
    slow = make_device(PARAMS.model_copy(update={"link_congestion_per_read": 0.1}), engine)
    alone = slow.run([0], [1 << 20], 1)  # one read in flight: no congestion
    assert alone.finish_s[0] - alone.start_s[0] == pytest.approx(40e-6 + (1 << 20) / 2000e6)
    crowd = slow.run(np.arange(4) * (1 << 20), np.full(4, 1 << 20), 4)
    ideal = make_device(PARAMS, engine).run(np.arange(4) * (1 << 20), np.full(4, 1 << 20), 4)
    assert crowd.makespan_s > 1.2 * ideal.makespan_s


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_two_reads_in_flight_halve_the_link_overhead(engine):
    # two reads on different units, both first byte at 5 + 40 = 45 µs, 2 in flight:
    # each pays 20 / (1 + 1 × 1) = 10 µs of overhead + 2.048 µs of bytes on the link
    run = make_device(AMORTIZED, engine).run([0, 4096], [4096, 4096], 2)
    assert np.sort(run.finish_s) == pytest.approx([45e-6 + 12.048e-6, 45e-6 + 2 * 12.048e-6])
    # without the term: 20 + 2.048 µs each
    old = make_device(LINK_BASE, engine).run([0, 4096], [4096, 4096], 2)
    assert np.sort(old.finish_s) == pytest.approx([45e-6 + 22.048e-6, 45e-6 + 2 * 22.048e-6])


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_a_read_alone_pays_the_full_overhead(engine):
    run = make_device(AMORTIZED, engine).run([0], [4096], 1)
    assert run.finish_s[0] == pytest.approx(45e-6 + 20e-6 + 2.048e-6)


@pytest.mark.parametrize("qd", [1, 3, 11])
def test_link_bound_steady_state_rate_follows_the_queue_depth(qd):
    # link-bound closed loop (64 units, 45 µs to first byte): every worker's read is in
    # flight, so each read takes 50 / (1 + 0.1 (QD - 1)) + 2.048 µs of link time
    params = LINK_BASE.model_copy(update={"link_overhead_us": 50.0,
                                          "link_amortization_per_read": 0.1})
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


def test_transfer_spread_keeps_the_mean_and_widens_the_tail():
    plain, spread = qd1_latencies_us(SPREAD_BASE), qd1_latencies_us(SPREAD)
    # without it only the (short) command latency varies
    assert np.percentile(plain, 99) / np.percentile(plain, 50) < 1.15
    assert spread.mean() == pytest.approx(plain.mean(), rel=0.03)
    ratio = np.percentile(spread, 99) / np.percentile(spread, 50)
    # Weibull of shape 1/0.4 on the 350 µs transfer of a 1 MiB read at 3 GB/s:
    # (ln 100 / ln 2)^0.4 = 2.13 on that part, diluted by the fixed ~60 µs of the rest
    assert 1.6 < ratio < 2.1


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


def test_passes_off_ignore_the_pass_time():
    off, length = point_reads(16384, 8, n_reads=500)
    plain = PASSES.model_copy(update={"link_passes": False, "link_overhead_us": 20.0})
    a = FastDevice(plain).run(off, length, 8).finish_s
    b = FastDevice(plain.model_copy(update={"link_pass_us": 999.0})).run(off, length, 8).finish_s
    np.testing.assert_array_equal(a, b)
