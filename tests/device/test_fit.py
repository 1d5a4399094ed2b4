"""Fitting the model. SYNTHETIC points (named as such: the model's own predictions from known
parameters) must give back those parameters: from the points as they are, from copies
perturbed by ±0.1 % (what another CPU's arithmetic could change, and far more) and from
other starting points, within tolerances that hold on any machine. Near-equal candidates go
to the simpler form by rule; cross-validation predicts the points each fold left out."""

import numpy as np
import pytest

from device_cases import MIB, ONE_CPU, SPREAD_BASE, qd1_latencies_us
from flashsim.device.crossval import cross_validate, fold_of, perturbed_points
from flashsim.device.fit import (
    HOST_MODES,
    fit_model,
    fit_params,
    fit_profile,
    fit_transfer_spread,
    point_errors,
    predict_batch_makespan_us,
    predict_detail,
    summarize,
)
from flashsim.device.fitsearch import CLOSE_COST, Candidate, Problem, best_of, solve_staged
from flashsim.device.fitspace import NAMES, TERMS, Space, base_time_us, round_params
from flashsim.device.profile import DeviceParams, DevicePoint, DeviceProfile
from flashsim.errors import InputError

CORE_TRUTH = DeviceParams(host_overhead_us=3, command_latency_us=60, n_units=8,
                          unit_bandwidth_mb_s=300, link_bandwidth_mb_s=1800, stripe_bytes="64k")
BATCH_TRUTH = CORE_TRUTH.model_copy(update={"batch_start_us": 40.0})


def synthetic_steady(truth: DeviceParams, grid) -> list[DevicePoint]:
    """SYNTHETIC steady-state points: the model's predictions at each (chunk, QD)."""
    points = []
    for chunk, qd in grid:
        d = predict_detail(truth, chunk, qd)
        points.append(DevicePoint(chunk_bytes=chunk, queue_depth=qd, source="assumption",
                                  throughput_mb_s=d["throughput_mb_s"],
                                  latency_mean_us=d["latency_mean_us"]))
    return points


def synthetic_batches(truth: DeviceParams, chunk: int, cases) -> list[DevicePoint]:
    """SYNTHETIC short-batch points: predicted median makespans of (reads, QD) batches."""
    out = []
    for n, qd in cases:
        m = predict_batch_makespan_us(truth, chunk, qd, n)
        out.append(DevicePoint(chunk_bytes=chunk, queue_depth=qd, source="assumption",
                               batch_reads=n, batch_makespan_us=m, throughput_mb_s=n * chunk / m))
    return out


def worst_error_pct(params: DeviceParams, points: list[DevicePoint]) -> float:
    return summarize(point_errors(params, points)).worst_abs_error_pct


def batch_start_points() -> list[DevicePoint]:
    """10 steady-state points (enough for the full parameter set) and 2 short-batch ones."""
    grid = [(c, q) for c in (4096, 32768) for q in (1, 4, 8, 32)] + [(262144, 1), (262144, 32)]
    return (synthetic_steady(BATCH_TRUTH, grid)
            + synthetic_batches(BATCH_TRUTH, 4096, ((1, 1), (16, 8))))


@pytest.mark.slow
def test_fit_recovers_a_model_generated_curve():
    """SYNTHETIC points (9: the four core terms only), as they are and perturbed by ±0.1 %."""
    points = synthetic_steady(CORE_TRUTH, [(c, q) for c in (4096, 32768, 262144)
                                           for q in (1, 8, 32)])
    for pts in (points, perturbed_points(points, 1e-3)):
        fitted = fit_params(pts, quick=True)
        assert worst_error_pct(fitted, pts) < 2.0
        assert fitted.link_bandwidth_mb_s == pytest.approx(1800, rel=0.05)
        assert fitted.command_latency_us == pytest.approx(60, rel=0.05)
        assert fitted.n_units * fitted.unit_bandwidth_mb_s == pytest.approx(2400, rel=0.1)


def test_fit_needs_enough_points():
    pts = [DevicePoint(chunk_bytes=4096, queue_depth=q, throughput_mb_s=10.0) for q in (1, 2, 1)]
    with pytest.raises(InputError, match="too few"):
        fit_params(pts)


@pytest.mark.slow
def test_fit_recovers_a_batch_start_cost_from_short_batch_points():
    """SYNTHETIC points from known parameters with a 40 µs batch start cost: steady-state
    points cannot see it (a pure shift of every batch), short-batch points pin it down: the
    points as they are and two copies perturbed by ±0.1 % give it back within 5 %."""
    points = batch_start_points()
    # by hand, a batch of one 4 KiB read: start 40 + host 3 + command 60 + 4096 B at
    # 300 MB/s (13.65 µs) = 116.65 µs
    assert points[-2].batch_makespan_us == pytest.approx(40 + 3 + 60 + 4096 / 300, rel=1e-9)
    recovered = []
    for pts in (points, perturbed_points(points, 1e-3), perturbed_points(points, -1e-3)):
        fitted = fit_params(pts, quick=True)
        assert fitted.batch_start_us == pytest.approx(40.0, rel=0.05)
        assert fitted.command_latency_us == pytest.approx(60.0, rel=0.05)
        assert fitted.link_bandwidth_mb_s == pytest.approx(1800.0, rel=0.05)
        errors = point_errors(fitted, pts)
        assert [e.batch_reads for e in errors[-2:]] == [1, 16]
        assert max(abs(e.throughput_error_pct) for e in errors) < 2.0
        recovered.append(fitted.batch_start_us)
    assert max(recovered) - min(recovered) < 2.0
    # without the short-batch points nothing can see the start cost: it stays 0
    assert fit_params(points[:-2], quick=True).batch_start_us == 0.0


@pytest.mark.slow
def test_fit_lands_on_the_same_answer_from_other_starts():
    """The regularised problem has one answer: starts with the core terms 30 % low or 40 %
    high (SYNTHETIC points, the true form) all end at the true parameters."""
    points = batch_start_points()
    space = Space(base_time_us(points), extras=True, batches=True)
    form = space.form(8, 65536, 0, False)
    problem = Problem(points, space, batch_weight=3.0)
    found = []
    for factor in (1.0, 0.7, 1.4):
        start = space.values(space.initial(points, form), form)
        for name in NAMES[:4]:
            start[name] *= factor
        c = solve_staged(problem, form, space.coords(start, form), None, 15)
        found.append(space.values(c.u, form))
    for values in found:
        assert values["batch_start_us"] == pytest.approx(40.0, rel=0.05)
        assert values["command_latency_us"] == pytest.approx(60.0, rel=0.03)
        assert values["unit_bandwidth_mb_s"] == pytest.approx(300.0, rel=0.05)


def test_the_jacobian_is_the_same_from_worker_processes_threads_or_none():
    """The fit's columns are evaluated in forked processes (threads in a daemonic process):
    where they run changes nothing, bit for bit, and a worker follows a new problem."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from flashsim.device.fitsearch import jacobian, make_pool

    points = batch_start_points()
    space = Space(base_time_us(points), extras=True, batches=True)
    form = space.form(8, 65536, 0, False)
    u = space.initial(points, form)
    bounds = space.bounds(form)
    serial = Problem(points, space, batch_weight=3.0)
    want = jacobian(serial, u, serial.residuals(u, form, 300), form, 300, bounds)
    pool = make_pool()
    if pool is None:
        pytest.skip("one CPU: the fit runs without workers")
    with pool, ThreadPoolExecutor(2) as threads:
        for p in (pool, threads):
            problem = Problem(points, space, batch_weight=3.0, pool=p)
            got = jacobian(problem, u, problem.residuals(u, form, 300), form, 300, bounds)
            assert np.array_equal(got, want)
        fewer = Problem(points[:-2], space, batch_weight=3.0, pool=pool)
        other = jacobian(fewer, u, fewer.residuals(u, form, 300), form, 300, bounds)
        assert other.shape[0] < want.shape[0]
    assert isinstance(pool, ProcessPoolExecutor)


def test_near_equal_candidates_go_to_the_simpler_form():
    space = Space(base_us=50.0, extras=True, batches=False)

    def cand(cost, *form):
        f = space.form(*form)
        return Candidate(cost, f, np.zeros(len(f.free)))

    passes = cand(1.0, 4, 65536, 1, True)
    unshared = cand(1.0 + 0.5 * CLOSE_COST, 4, 65536, 0, False)
    assert best_of([passes, unshared]).form == unshared.form
    assert best_of([unshared, passes]).form == unshared.form
    clearly_worse = cand(1.0 + 5 * CLOSE_COST, 4, 65536, 0, False)
    assert best_of([clearly_worse, passes]).form == passes.form
    # same host mode: fewer units first
    assert best_of([cand(1.0, 8, 65536, 0, False), cand(1.0, 4, 65536, 0, False)]).form[0] == 4


def test_fitted_values_are_rounded_to_three_digits():
    params = DeviceParams(host_overhead_us=3.14159, command_latency_us=61.234, n_units=4,
                          unit_bandwidth_mb_s=777.77, link_bandwidth_mb_s=1234.5,
                          link_overhead_us=12.3456, transport_latency_us=1e-7,
                          command_latency_spread=0.123456)
    r = round_params(params, base_us=73.0)
    assert (r.host_overhead_us, r.command_latency_us, r.unit_bandwidth_mb_s,
            r.link_bandwidth_mb_s) == (3.14, 61.2, 778.0, 1230.0)
    # terms beyond the core to 1/1000 of their scale: a time to 0.01 µs of a 73 µs base
    assert (r.link_overhead_us, r.transport_latency_us, r.command_latency_spread) == (
        12.35, 0.0, 0.123)


def test_each_host_mode_fits_the_terms_it_can_tell_apart():
    space = Space(base_us=50.0, extras=True, batches=True)
    names = lambda f: {NAMES[j] for j in f.free}  # noqa: E731
    unshared, shared, passes = (space.form(4, 65536, c, p) for c, p in HOST_MODES)
    # unshared CPUs: a reap or a system call is a pure per-read delay, as the transport is
    assert not names(unshared) & {"host_completion_us", "host_call_us", "link_pass_us"}
    assert {"host_completion_us", "host_call_us"} <= names(shared)
    assert "link_pass_us" in names(passes) - names(shared)
    assert "batch_start_us" not in names(Space(50.0, True, False).form(4, 65536, 0, False))
    assert len(Space(50.0, False, True).form(4, 65536, 1, True).free) == 4
    # coordinates map back to the same values, and the bounds to the physical bounds
    values = {TERMS[j].name: TERMS[j].lower + 0.01 * (j + 1) * (TERMS[j].upper - TERMS[j].lower)
              for j in passes.free}
    back = space.values(space.coords(values, passes), passes)
    assert back == pytest.approx(values, rel=1e-9)
    lo, hi = space.bounds(passes)
    assert space.values(lo, passes)["command_latency_us"] == pytest.approx(1.0)
    assert space.values(hi, passes)["link_overhead_us"] == pytest.approx(1000.0)


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
        worst[fitted.link_passes] = worst_error_pct(fitted, points)
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


def test_folds_leave_out_a_diagonal_of_the_grid():
    points = [DevicePoint(chunk_bytes=c, queue_depth=q, throughput_mb_s=1.0)
              for q in (1, 2, 4, 8, 16, 32, 64) for c in (4096 << k for k in range(8))]
    fold = fold_of(points, 8)
    for f in range(8):
        held = [p for p, g in zip(points, fold) if g == f]
        assert len(held) == 7
        assert len({p.chunk_bytes for p in held}) == 7  # one chunk size at most once
        assert len({p.queue_depth for p in held}) == 7  # every QD once


def test_cross_validation_predicts_left_out_points_of_a_model_curve():
    """SYNTHETIC points of the four core terms: every fold, refitted without its points,
    predicts them as well as the full fit does (within 2 %); an unrelated point does not."""
    points = synthetic_steady(CORE_TRUTH, [(c, q) for c in (4096, 32768, 262144)
                                           for q in (1, 8, 32)])
    full = fit_model(points, quick=True)
    cv = cross_validate(points, full, 3, batch_weight=3.0)
    assert cv["cv_folds"] == 3 and len(cv["cv_points"]) == len(points)
    assert [(e.chunk_bytes, e.queue_depth) for e in cv["cv_points"]] == [
        (p.chunk_bytes, p.queue_depth) for p in points]
    assert cv["cv_worst_abs_error_pct"] < 2.0
    # a holdout point off the grid (16 KiB at QD 4), and one off by 25 % (measured wrong)
    holdout = synthetic_steady(CORE_TRUTH, [(16384, 4)])
    wrong = holdout[0].model_copy(update={"throughput_mb_s": holdout[0].throughput_mb_s * 1.25})
    profile = DeviceProfile(name="synthetic", points=points, holdout_points=holdout + [wrong])
    fitted = fit_profile(profile, quick=True, correction="none")
    errs = fitted.fit.holdout_points
    assert abs(errs[0].throughput_error_pct) < 2.0
    assert errs[1].throughput_error_pct == pytest.approx(100 * (1 / 1.25 - 1), abs=2.0)
    assert fitted.fit.holdout_worst_abs_error_pct == pytest.approx(20.0, abs=2.0)
    assert fitted.fit.cv_folds is None  # cross-validation only when asked



@pytest.mark.slow
def test_fit_recovers_the_device_behind_a_throttle():
    """SYNTHETIC points of CORE_TRUTH behind a 30 000 IOPS / 800 MB/s blk-throttle: the
    capped points say nothing of the device, the others do; fitted behind the same caps the
    device comes back, fitted without them the model cannot follow the caps."""
    from flashsim.device.fast import FastDevice
    from flashsim.device.profile import ThrottleInfo
    from flashsim.device.throttle import ThrottledDevice

    caps = ThrottleInfo(read_iops=30000, read_mb_s=800)
    seen = ThrottledDevice(FastDevice(CORE_TRUTH), caps)
    points = synthetic_steady(seen, [(c, q) for c in (4096, 32768, 262144)
                                     for q in (1, 2, 8, 32)])
    assert points[-1].throughput_mb_s == pytest.approx(800, rel=0.1)  # capped
    result = fit_model(points, quick=True, throttle=caps)
    fitted = ThrottledDevice(FastDevice(result.params), caps)
    assert worst_error_pct(fitted, points) < 5.0
    assert result.params.command_latency_us == pytest.approx(60, rel=0.1)
    plain = fit_params(points, quick=True)
    assert worst_error_pct(plain, points) > 2 * worst_error_pct(fitted, points)
