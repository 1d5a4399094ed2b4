"""The link-transfer spread: both engines agree, it keeps means and widens the tail, and the
1-D fit recovers it from a QD 1 point's p99 / p50."""

import numpy as np
import pytest

from flashsim.device import DeviceParams
from flashsim.device.des import FlashDevice
from flashsim.device.fast import FastDevice
from flashsim.device.fit import _steady_core, fit_transfer_spread
from flashsim.device.profile import DevicePoint

BASE = DeviceParams(host_overhead_us=3.0, command_latency_us=20.0, n_units=16,
                    unit_bandwidth_mb_s=800.0, link_bandwidth_mb_s=3000.0, stripe_bytes="64k",
                    host_cpus=1, host_completion_us=4.0, link_overhead_us=25.0,
                    link_wakeup_us=8.0, command_latency_spread=0.5, host_call_us=3.0,
                    batch_start_us=10.0)
SPREAD = BASE.model_copy(update={"link_transfer_spread": 0.4})
MIB = 1 << 20


def _random_reads(n: int, seed: int, sizes=(4096, 65536, MIB)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << 18, size=n) * 4096, rng.choice(np.array(sizes), size=n)


def _qd1_latencies_us(params: DeviceParams, n: int = 6000, seed: int = 11) -> np.ndarray:
    off, length = _random_reads(n, seed, sizes=(MIB,))
    run = FastDevice(params).run(off, length, 1)
    return _steady_core(run.start_s, run.finish_s, MIB, 1)[1]


@pytest.mark.parametrize("qd", [1, 8, 32])
def test_fast_path_matches_simpy_with_transfer_spread(qd):
    off, length = _random_reads(400, qd)
    ptr = np.array([0, 1, 40, 41, 200, 400])
    des = FlashDevice(SPREAD).run_batches(off, length, ptr, qd)
    fast = FastDevice(SPREAD).run_batches(off, length, ptr, qd)
    assert fast == pytest.approx(des, rel=1e-9)
    plain = FastDevice(BASE).run_batches(off, length, ptr, qd)
    assert not np.allclose(fast, plain)  # the spread changes the answer


def test_transfer_spread_keeps_the_mean_and_widens_the_tail():
    plain, spread = _qd1_latencies_us(BASE), _qd1_latencies_us(SPREAD)
    # without it only the (short) command latency varies
    assert np.percentile(plain, 99) / np.percentile(plain, 50) < 1.15
    assert spread.mean() == pytest.approx(plain.mean(), rel=0.03)
    ratio = np.percentile(spread, 99) / np.percentile(spread, 50)
    # Weibull of shape 1/0.4 on the 350 µs transfer of a 1 MiB read at 3 GB/s:
    # (ln 100 / ln 2)^0.4 = 2.13 on that part, diluted by the fixed ~60 µs of the rest
    assert 1.6 < ratio < 2.1


@pytest.mark.parametrize("truth", [0.15, 0.3])
def test_fit_recovers_the_spread_from_a_qd1_points_tail(truth):
    lat = _qd1_latencies_us(BASE.model_copy(update={"link_transfer_spread": truth}),
                            n=20000, seed=5)
    points = [DevicePoint(chunk_bytes=4096, queue_depth=1, throughput_mb_s=60.0,
                          latency_p50_us=50.0, latency_p99_us=400.0),
              DevicePoint(chunk_bytes=MIB, queue_depth=1, throughput_mb_s=2500.0,
                          latency_p50_us=float(np.percentile(lat, 50)),
                          latency_p99_us=float(np.percentile(lat, 99)))]
    assert fit_transfer_spread(BASE, points) == pytest.approx(truth, abs=0.04)
    # only small chunks or no percentiles: nothing to fit the spread on
    assert fit_transfer_spread(BASE, points[:1]) == 0.0
    no_tail = points[1].model_copy(update={"latency_p99_us": None})
    assert fit_transfer_spread(BASE, [points[0], no_tail]) == 0.0
