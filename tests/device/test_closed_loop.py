"""The whole model as a closed loop: throughput and latency against chunk and queue depth,
Little's law, batches run alone, bad reads refused by both engines."""

import numpy as np
import pytest

from device_cases import PARAMS
from flashsim.device import make_device
from flashsim.device.fast import FastDevice
from flashsim.device.fit import predict_detail
from flashsim.errors import InputError


def test_run_batches_equals_separate_runs_and_empty_batches_cost_nothing():
    rng = np.random.default_rng(7)
    off = rng.integers(0, 1 << 18, size=60) * 4096
    length = np.full(60, 16384)
    ptr = np.array([0, 10, 10, 45, 60])
    dev = FastDevice(PARAMS)
    got = dev.run_batches(off, length, ptr, 8)
    assert got[1] == 0.0
    for b in (0, 2, 3):
        alone = dev.run(off[ptr[b]:ptr[b + 1]], length[ptr[b]:ptr[b + 1]], 8)
        assert got[b] == pytest.approx(alone.makespan_s)


def test_throughput_rises_with_chunk_and_queue_depth_and_saturates_at_link():
    chunks = [4096, 16384, 65536, 262144, 1 << 20]
    qds = [1, 2, 4, 8, 16, 32, 64]
    tput = np.array([[predict_detail(PARAMS, c, q)["throughput_mb_s"] for q in qds]
                     for c in chunks])
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
