"""The device model: hand-checked timings, flash-like behaviour, fast path = SimPy reference."""

import numpy as np
import pytest

from flashsim.device import DeviceParams, make_device
from flashsim.device.des import FlashDevice
from flashsim.device.fast import FastDevice
from flashsim.device.fit import predict_detail
from flashsim.errors import InputError

PARAMS = DeviceParams(host_overhead_us=5.0, command_latency_us=40.0, n_units=8,
                      unit_bandwidth_mb_s=400.0, link_bandwidth_mb_s=2000.0, stripe_bytes="64k")


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_single_small_read_by_hand(engine):
    dev = make_device(PARAMS, engine)
    run = dev.run([0], [4096], 1)
    # host 5 µs, then command 40 µs, then 4096 B at min(unit 400, link 2000) MB/s = 10.24 µs
    assert run.start_s[0] == pytest.approx(5e-6)
    assert run.finish_s[0] == pytest.approx(5e-6 + 40e-6 + 4096 / 400e6)
    assert run.makespan_s == pytest.approx(55.24e-6)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_large_read_is_striped_over_units(engine):
    dev = make_device(PARAMS, engine)
    run = dev.run([0], [1 << 20], 1)
    # 16 stripes of 64 KiB over 8 units: 128 KiB per unit at 400 MB/s = 327.68 µs in parallel;
    # the link needs 524.288 µs for 1 MiB, so the link is the bottleneck (cut-through)
    assert run.finish_s[0] - run.start_s[0] == pytest.approx(40e-6 + (1 << 20) / 2000e6)
    narrow = make_device(PARAMS.model_copy(update={"n_units": 1}), engine).run([0], [1 << 20], 1)
    assert narrow.finish_s[0] - narrow.start_s[0] == pytest.approx(40e-6 + (1 << 20) / 400e6)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_two_reads_on_one_unit_queue(engine):
    dev = make_device(PARAMS, engine)
    # both in stripe 0 → unit 0: the second waits for the first (FIFO)
    run = dev.run([0, 8192], [4096, 4096], 2)
    service = 40e-6 + 4096 / 400e6
    assert sorted(run.finish_s) == pytest.approx([5e-6 + service, 5e-6 + 2 * service])
    # different units (stripes 0 and 1) overlap fully
    run = dev.run([0, 65536], [4096, 4096], 2)
    assert run.finish_s == pytest.approx([5e-6 + service] * 2)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_one_host_cpu_serializes_submit_and_completion(engine):
    params = PARAMS.model_copy(update={"host_cpus": 1, "host_completion_us": 2.0})
    dev = make_device(params, engine)
    # 8 reads on 8 different units at QD 8: submits take turns on the one host CPU (5 µs each)
    run = dev.run(np.arange(8) * 65536, np.full(8, 4096), 8)
    service = 40e-6 + 4096 / 400e6
    assert run.start_s == pytest.approx(5e-6 * np.arange(1, 9))
    # all device done at start + service; the reaps queue behind the submits (ends at 40 µs)
    # and behind each other: read j reaped at max(done_j, previous reap end) + 2 µs
    done = 5e-6 * np.arange(1, 9) + service
    reaped, free = [], 40e-6
    for d in done:
        free = max(d, free) + 2e-6
        reaped.append(free)
    assert run.finish_s == pytest.approx(reaped)
    # unshared host CPUs (the default): no queueing, each read its own 5 µs + 2 µs (4 reads:
    # their link transfers, 2.048 µs each, stay hidden behind the units)
    own = make_device(params.model_copy(update={"host_cpus": 0}), engine).run(
        np.arange(4) * 65536, np.full(4, 4096), 4)
    assert own.finish_s == pytest.approx([5e-6 + service + 2e-6] * 4)


def test_one_host_cpu_caps_small_read_rate():
    # 8 µs of host work per read on one CPU: at most 125k reads/s however deep the queue
    params = PARAMS.model_copy(update={"n_units": 64, "host_cpus": 1, "host_overhead_us": 5.0,
                                       "host_completion_us": 3.0})
    d = predict_detail(params, 4096, 64)
    assert d["throughput_mb_s"] * 1e6 / 4096 == pytest.approx(125_000, rel=0.02)
    free = predict_detail(params.model_copy(update={"host_cpus": 0}), 4096, 64)
    assert free["throughput_mb_s"] > 2 * d["throughput_mb_s"]


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


def test_command_latency_spread_keeps_the_mean_and_softens_saturation():
    spread = PARAMS.model_copy(update={"command_latency_spread": 1.5})
    idle = [predict_detail(p, 4096, 1)["latency_mean_us"] for p in (PARAMS, spread)]
    assert idle[1] == pytest.approx(idle[0], rel=0.05)  # mean command latency unchanged
    mid = [predict_detail(p, 4096, 8)["throughput_mb_s"] for p in (PARAMS, spread)]
    assert mid[1] < 0.9 * mid[0]  # reads queue behind slow ones before the units are full
    deep = [predict_detail(p, 4096, 256, n_reads=20000)["throughput_mb_s"]
            for p in (PARAMS, spread)]
    assert deep[1] == pytest.approx(deep[0], rel=0.1)  # the same cap, reached later


def _batches(rng, n_batches):
    sizes = np.array([4096, 8192, 16384, 32768, 65536, 262144, 1 << 20])
    offs, lens, ptr = [], [], [0]
    for b in range(n_batches):
        n = int(rng.choice([1, 3, 17, 200, 1000, 3000]))
        length = rng.choice(sizes, size=n) if b % 3 else np.full(n, rng.choice(sizes))
        if b % 2:  # sequential (contiguous) reads
            off = np.concatenate([[0], np.cumsum(length[:-1])]) + int(rng.integers(0, 1 << 18)) * 4096
        else:  # random aligned reads over 4 GiB
            off = rng.integers(0, 1 << 20, size=n) * 4096
        offs.append(off)
        lens.append(length)
        ptr.append(ptr[-1] + n)
    return np.concatenate(offs), np.concatenate(lens), np.array(ptr)


CONGESTED = PARAMS.model_copy(update={"n_units": 3, "stripe_bytes": 16384,
                                      "link_congestion_per_read": 0.01,
                                      "link_overhead_us": 7.0, "transport_latency_us": 3.0})


SHARED_HOST = CONGESTED.model_copy(update={"host_cpus": 1, "host_overhead_us": 4.0, "link_wakeup_us": 6.0,
                                            "host_completion_us": 2.5, "command_latency_spread": 1.5})
TWO_CPUS = PARAMS.model_copy(update={"host_cpus": 2, "host_overhead_us": 9.0,
                                     "host_completion_us": 3.0})
BATCH_START = SHARED_HOST.model_copy(update={"batch_start_us": 45.0})
CALLS = SHARED_HOST.model_copy(update={"host_call_us": 8.0, "batch_start_us": 20.0})
CALLS_TWO_CPUS = TWO_CPUS.model_copy(update={"host_call_us": 5.5})


@pytest.mark.parametrize("qd", [1, 4, 32, 64])
@pytest.mark.parametrize("params", [PARAMS, CONGESTED, SHARED_HOST, TWO_CPUS, BATCH_START, CALLS,
                                    CALLS_TWO_CPUS],
                         ids=["plain", "congested", "one-host-cpu", "two-host-cpus",
                              "batch-start", "host-calls", "host-calls-two-cpus"])
def test_fast_path_matches_simpy_within_one_percent(qd, params):
    rng = np.random.default_rng(qd)
    off, length, ptr = _batches(rng, 12)
    des = FlashDevice(params).run_batches(off, length, ptr, qd)
    fast = FastDevice(params).run_batches(off, length, ptr, qd)
    assert np.all(des > 0)
    assert np.max(np.abs(fast - des) / des) <= 0.01
    # and per read, on one batch
    a = FlashDevice(params).run(off[:ptr[3]], length[:ptr[3]], qd)
    b = FastDevice(params).run(off[:ptr[3]], length[:ptr[3]], qd)
    assert np.max(np.abs(a.finish_s - b.finish_s)) <= 0.01 * a.makespan_s


def test_run_batches_equals_separate_runs_and_empty_batches_cost_nothing():
    rng = np.random.default_rng(7)
    off = rng.integers(0, 1 << 18, size=60) * 4096
    length = np.full(60, 16384)
    ptr = np.array([0, 10, 10, 45, 60])
    dev = FastDevice(PARAMS)
    got = dev.run_batches(off, length, ptr, 8)
    assert got[1] == 0.0
    for b in (0, 2, 3):
        assert got[b] == pytest.approx(dev.run(off[ptr[b]:ptr[b + 1]], length[ptr[b]:ptr[b + 1]], 8).makespan_s)


def test_throughput_rises_with_chunk_and_queue_depth_and_saturates_at_link():
    chunks = [4096, 16384, 65536, 262144, 1 << 20]
    qds = [1, 2, 4, 8, 16, 32, 64]
    tput = np.array([[predict_detail(PARAMS, c, q)["throughput_mb_s"] for q in qds] for c in chunks])
    assert np.all(np.diff(tput, axis=0) > -1e-6 * tput[1:])  # bigger chunks never fewer MB/s
    assert np.all(np.diff(tput[:, 0]) > 0)  # and strictly more at QD 1 (no saturation there)
    assert np.all(np.diff(tput, axis=1) > -0.01 * tput[:, 1:])  # more in flight never hurts
    assert tput[0, -1] > 3 * tput[0, 0]  # and helps small reads a lot
    assert np.all(tput <= PARAMS.link_bandwidth_mb_s * 1.001)
    assert tput[-1, -1] >= 0.95 * PARAMS.link_bandwidth_mb_s  # saturated at the link cap


def test_latency_grows_with_queue_depth_once_units_are_busy():
    lat = [predict_detail(PARAMS, 4096, q)["latency_mean_us"] for q in (1, 8, 16, 32, 64)]
    assert lat[0] == pytest.approx(40 + 4096 / 400, rel=0.01)  # idle device: service time
    assert all(b > a for a, b in zip(lat[1:], lat[2:]))
    assert lat[-1] > 4 * lat[0]


@pytest.mark.parametrize("chunk, qd", [(4096, 8), (4096, 64), (32768, 16), (1 << 20, 4)])
def test_littles_law(chunk, qd):
    d = predict_detail(PARAMS, chunk, qd)
    reads_per_s = d["throughput_mb_s"] * 1e6 / chunk
    # each worker cycles through host overhead + latency: reads in the device = λ · W
    in_device = reads_per_s * d["latency_mean_us"] * 1e-6
    expected = qd * d["latency_mean_us"] / (d["latency_mean_us"] + PARAMS.host_overhead_us)
    assert in_device == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_congestion_slows_only_crowded_transfers(engine):
    slow = make_device(PARAMS.model_copy(update={"link_congestion_per_read": 0.1}), engine)
    alone = slow.run([0], [1 << 20], 1)  # one read in flight: no congestion
    assert alone.finish_s[0] - alone.start_s[0] == pytest.approx(40e-6 + (1 << 20) / 2000e6)
    crowd = slow.run(np.arange(4) * (1 << 20), np.full(4, 1 << 20), 4)
    ideal = make_device(PARAMS, engine).run(np.arange(4) * (1 << 20), np.full(4, 1 << 20), 4)
    assert crowd.makespan_s > 1.2 * ideal.makespan_s


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_bad_reads_are_input_errors(engine):
    dev = make_device(PARAMS, engine)
    with pytest.raises(InputError):
        dev.run([-4096], [4096], 1)
    with pytest.raises(InputError):
        dev.run([0], [0], 1)
    with pytest.raises(InputError):
        dev.run([0], [4096], 0)
    with pytest.raises(InputError):
        dev.run_batches([0, 4096], [4096, 4096], [0, 3], 1)
    with pytest.raises(InputError):
        make_device(PARAMS, "quantum")


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_command_factor_averages_one_over_many_short_batches(engine):
    # qd 1, one stripe per read, a fast link: each read takes host 5 + 40·f + 4096 B / 400 MB/s
    # (the link's 2.05 µs overlaps the unit), so the batches' total time gives the mean factor f.
    # Drawn by position in the batch, every 8-read batch would get the same 8 factors.
    spread = PARAMS.model_copy(update={"command_latency_spread": 1.0})
    rng = np.random.default_rng(3)
    n_batches, n = 1500, 8
    off = rng.integers(0, 1 << 20, size=n_batches * n) * 4096
    length = np.full(n_batches * n, 4096)
    ptr = np.arange(n_batches + 1) * n
    total_s = make_device(spread, engine).run_batches(off, length, ptr, 1).sum()
    per_read_us = total_s * 1e6 / (n_batches * n)
    mean_factor = (per_read_us - 5.0 - 4096 / 400.0) / 40.0
    assert mean_factor == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("engine", ["fast", "des"])
@pytest.mark.parametrize("params", [PARAMS, SHARED_HOST], ids=["plain", "one-host-cpu"])
def test_batch_start_delays_every_batch_by_exactly_its_value(engine, params):
    # the start cost shifts a batch: every read's submit and finish move by exactly 30 µs,
    # so every batch's makespan grows by 30 µs, whatever its size and queue depth (with
    # round-number costs on two CPUs, rounding of the shifted times can break exact ties
    # between events the other way, so that case is left to the agreement test)
    rng = np.random.default_rng(3)
    off, length, ptr = _batches(rng, 8)
    slow = params.model_copy(update={"batch_start_us": 30.0})
    for qd in (1, 8, 32):
        base = make_device(params, engine).run_batches(off, length, ptr, qd)
        late = make_device(slow, engine).run_batches(off, length, ptr, qd)
        np.testing.assert_allclose(late - base, 30e-6, rtol=0, atol=1e-12)
    a = make_device(params, engine).run(off[:ptr[1]], length[:ptr[1]], 4)
    b = make_device(slow, engine).run(off[:ptr[1]], length[:ptr[1]], 4)
    np.testing.assert_allclose(b.start_s - a.start_s, 30e-6, rtol=0, atol=1e-12)
    assert b.start_s.min() == pytest.approx(30e-6 + params.host_overhead_us * 1e-6)


def test_batch_start_is_invisible_in_a_steady_state_point():
    slow = SHARED_HOST.model_copy(update={"batch_start_us": 200.0})
    for chunk, qd in ((4096, 1), (16384, 8)):
        a, b = predict_detail(SHARED_HOST, chunk, qd), predict_detail(slow, chunk, qd)
        assert b["throughput_mb_s"] == pytest.approx(a["throughput_mb_s"], rel=1e-9)
        assert b["latency_mean_us"] == pytest.approx(a["latency_mean_us"], rel=1e-9)


def test_old_profiles_load_without_a_batch_start():
    from flashsim.device.profile import DeviceProfile
    prof = DeviceProfile.load("configs/devices/local-virtio.yaml")
    assert prof.params.batch_start_us == 0.0


CALL_HOST = PARAMS.model_copy(update={"host_cpus": 1, "host_overhead_us": 2.0,
                                      "host_completion_us": 1.0, "host_call_us": 10.0})


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_every_submit_pays_a_host_call_and_a_run_of_reaps_shares_one(engine):
    # 4 reads of 4 KiB on 4 units (64 KiB stripes), QD 4, one host CPU: the 4 submits run
    # back to back, each its own io_submit (2 + 10 µs), so issues at 12, 24, 36, 48 µs;
    # each read: command 40 + 4096 B at 400 MB/s (10.24 µs) → done at 62.24, 74.24, 86.24,
    # 98.24; the first reap follows a submit (an io_getevents: 1 + 10 µs) → 73.24; the CPU
    # does nothing else in between, so the later reaps follow a reap and pay 1 µs each
    run = make_device(CALL_HOST, engine).run([0, 65536, 131072, 196608], [4096] * 4, 4)
    np.testing.assert_allclose(run.start_s * 1e6, [12, 24, 36, 48], rtol=1e-9)
    np.testing.assert_allclose(run.finish_s * 1e6, [73.24, 75.24, 87.24, 99.24], rtol=1e-9)


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_a_closed_loop_at_qd_1_pays_a_call_per_submit_and_per_reap(engine):
    run = make_device(CALL_HOST, engine).run([0, 65536], [4096] * 2, 1)
    # read 0: issued 12, done 62.24, reaped 73.24; read 1: submit after a reap (+10): 85.24,
    # done 85.24 + 50.24 = 135.48, reaped (after a submit, + 10) 146.48
    np.testing.assert_allclose(run.start_s * 1e6, [12, 85.24], rtol=1e-9)
    np.testing.assert_allclose(run.finish_s * 1e6, [73.24, 146.48], rtol=1e-9)
