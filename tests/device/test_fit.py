"""Fitting the model: it recovers known parameters from points the model generated (SYNTHETIC
points, named as such), finds a link in passes, needs enough points, fits the transfer spread."""

import numpy as np
import pytest

from device_cases import MIB, ONE_CPU, SPREAD_BASE, qd1_latencies_us
from flashsim.device.fit import (
    HOST_MODES,
    fit_params,
    fit_transfer_spread,
    point_errors,
    predict_batch_makespan_us,
    predict_detail,
    summarize,
)
from flashsim.device.profile import DeviceParams, DevicePoint
from flashsim.errors import InputError


@pytest.mark.slow
def test_fit_recovers_a_model_generated_curve():
    """SYNTHETIC points from known parameters: the fit must reproduce them closely."""
    truth = DeviceParams(host_overhead_us=3, command_latency_us=60, n_units=8,
                         unit_bandwidth_mb_s=300, link_bandwidth_mb_s=1800, stripe_bytes="64k")
    points = []
    for chunk in (4096, 32768, 262144):
        for qd in (1, 8, 32):
            d = predict_detail(truth, chunk, qd)
            points.append(DevicePoint(chunk_bytes=chunk, queue_depth=qd, source="assumption",
                                      throughput_mb_s=d["throughput_mb_s"],
                                      latency_mean_us=d["latency_mean_us"]))
    fitted = fit_params(points, quick=True)
    errors = point_errors(fitted, points)
    worst = max(max(abs(e.throughput_error_pct), abs(e.latency_error_pct)) for e in errors)
    assert worst < 5.0
    assert fitted.link_bandwidth_mb_s == pytest.approx(1800, rel=0.1)


def test_fit_needs_enough_points():
    pts = [DevicePoint(chunk_bytes=4096, queue_depth=q, throughput_mb_s=10.0) for q in (1, 2, 1)]
    with pytest.raises(InputError, match="too few"):
        fit_params(pts)


@pytest.mark.slow
def test_fit_recovers_a_batch_start_cost_from_short_batch_points():
    """SYNTHETIC points from known parameters with a 40 µs batch start cost: steady-state
    points cannot see it (a pure shift of every batch), short-batch points pin it down."""
    truth = DeviceParams(host_overhead_us=3, command_latency_us=60, n_units=8,
                         unit_bandwidth_mb_s=300, link_bandwidth_mb_s=1800, stripe_bytes="64k",
                         batch_start_us=40.0)
    points = []
    grid = [(c, q) for c in (4096, 32768) for q in (1, 4, 8, 32)] + [(262144, 1), (262144, 32)]
    for chunk, qd in grid:  # 10 steady-state points: enough for the full parameter set
        d = predict_detail(truth, chunk, qd)
        points.append(DevicePoint(chunk_bytes=chunk, queue_depth=qd, source="assumption",
                                  throughput_mb_s=d["throughput_mb_s"],
                                  latency_mean_us=d["latency_mean_us"]))
    for n, qd in ((1, 1), (16, 8)):
        # by hand, a batch of one 4 KiB read: start 40 + host 3 + command 60 + 4096 B at
        # 300 MB/s (13.65 µs) = 116.65 µs
        m = predict_batch_makespan_us(truth, 4096, qd, n)
        points.append(DevicePoint(chunk_bytes=4096, queue_depth=qd, source="assumption",
                                  batch_reads=n, batch_makespan_us=m,
                                  throughput_mb_s=n * 4096 / m))
    assert points[-2].batch_makespan_us == pytest.approx(40 + 3 + 60 + 4096 / 300, rel=1e-9)
    fitted = fit_params(points, quick=True)
    assert fitted.batch_start_us == pytest.approx(40.0, rel=0.15)
    errors = point_errors(fitted, points)
    assert [e.batch_reads for e in errors[-2:]] == [1, 16]
    assert max(abs(e.throughput_error_pct) for e in errors) < 8.0
    # without the short-batch points nothing can see the start cost: it stays 0
    assert fit_params(points[:-2], quick=True).batch_start_us == 0.0


@pytest.mark.slow
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


@pytest.mark.parametrize("truth", [0.15, 0.3])
def test_fit_recovers_the_spread_from_a_qd1_points_tail(truth):
    lat = qd1_latencies_us(SPREAD_BASE.model_copy(update={"link_transfer_spread": truth}),
                            n=20000, seed=5)
    points = [DevicePoint(chunk_bytes=4096, queue_depth=1, throughput_mb_s=60.0,
                          latency_p50_us=50.0, latency_p99_us=400.0),
              DevicePoint(chunk_bytes=MIB, queue_depth=1, throughput_mb_s=2500.0,
                          latency_p50_us=float(np.percentile(lat, 50)),
                          latency_p99_us=float(np.percentile(lat, 99)))]
    assert fit_transfer_spread(SPREAD_BASE, points) == pytest.approx(truth, abs=0.04)
    # only small chunks or no percentiles: nothing to fit the spread on
    assert fit_transfer_spread(SPREAD_BASE, points[:1]) == 0.0
    no_tail = points[1].model_copy(update={"latency_p99_us": None})
    assert fit_transfer_spread(SPREAD_BASE, [points[0], no_tail]) == 0.0
