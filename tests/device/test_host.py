"""Host CPUs: shared submit and reap jobs, system calls per submit and per run of reaps, the
per-batch start cost."""

import numpy as np
import pytest

from device_cases import PARAMS, SHARED_HOST, mixed_batches
from flashsim.device import make_device
from flashsim.device.fit import predict_detail


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


@pytest.mark.parametrize("engine", ["fast", "des"])
@pytest.mark.parametrize("params", [PARAMS, SHARED_HOST], ids=["plain", "one-host-cpu"])
def test_batch_start_delays_every_batch_by_exactly_its_value(engine, params):
    # the start cost shifts a batch: every read's submit and finish move by exactly 30 µs,
    # so every batch's makespan grows by 30 µs, whatever its size and queue depth (with
    # round-number costs on two CPUs, rounding of the shifted times can break exact ties
    # between events the other way, so that case is left to the agreement test)
    rng = np.random.default_rng(3)
    off, length, ptr = mixed_batches(rng, 8)
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
