"""The measured residual on top of the layered model. SYNTHETIC devices (named as such): the
layered model's own predictions times a known factor the model cannot express, so the
corrected model's answer off the grid is known in closed form."""

import numpy as np
import pytest

from device_cases import MIB, PARAMS
from flashsim.device import make_device
from flashsim.device.fast import FastDevice
from flashsim.device.fit import fit_profile, point_errors, predict_detail
from flashsim.device.predict import corrected_device, median_and_worst
from flashsim.device.profile import DevicePoint, DeviceProfile
from flashsim.device.residual import CorrectedDevice, Residual
from flashsim.errors import InputError

CHUNKS = (4096, 16384, 65536, 262144, MIB)
QDS = (1, 4, 16, 64)


def tilt(chunk, qd):
    """A SYNTHETIC device's throughput relative to the layered model: log-linear in log2
    chunk and log2 QD (a device that falls behind the model at large chunks and deep
    queues), so the residual's bilinear interpolation in the logs is exact."""
    return np.exp(-0.05 * (np.log2(chunk) - 12) - 0.04 * np.log2(qd))


def tilted_points(chunk_qds) -> list[DevicePoint]:
    """SYNTHETIC points: the layered model of PARAMS, throughput × tilt, latency / tilt."""
    out = []
    for c, q in chunk_qds:
        d = predict_detail(PARAMS, c, q)
        f = float(tilt(c, q))
        out.append(DevicePoint(chunk_bytes=c, queue_depth=q, source="assumption",
                               throughput_mb_s=d["throughput_mb_s"] * f,
                               latency_mean_us=d["latency_mean_us"] / f))
    return out


GRID = [(c, q) for c in CHUNKS for q in QDS]
OFF_GRID = [(12288, 3), (49152, 12), (393216, 24), (24576, 48), (655360, 2)]


def test_corrected_model_is_exact_on_the_grid_and_between_it():
    device = corrected_device(PARAMS, tilted_points(GRID))
    assert median_and_worst(point_errors(device, tilted_points(GRID)))[1] < 1e-6
    # off the grid the log-linear tilt is interpolated exactly; the layered model alone
    # misses it by the tilt itself
    median, worst = median_and_worst(point_errors(device, tilted_points(OFF_GRID)))
    assert worst < 1e-6
    u_median, _ = median_and_worst(point_errors(PARAMS, tilted_points(OFF_GRID)))
    assert u_median > 10.0


def test_outside_the_grid_the_ratio_is_clamped_to_its_edge():
    res = corrected_device(PARAMS, tilted_points(GRID)).residual
    assert res.throughput_ratio(2 * MIB, 64) == pytest.approx(float(tilt(MIB, 64)))
    assert res.throughput_ratio(512, 1) == pytest.approx(float(tilt(4096, 1)))
    assert res.latency_ratio(MIB, 128) == pytest.approx(1 / float(tilt(MIB, 64)))


def test_a_batch_is_stretched_by_its_reads_bytes_weighted_ratio():
    """Two batches at QD 8: four 4 KiB reads + one 1 MiB read (QD min(8, 5) = 5), and one
    64 KiB read alone (QD 1); an empty batch keeps factor 1."""
    res = corrected_device(PARAMS, tilted_points(GRID)).residual
    lengths = np.array([4096] * 4 + [MIB, 65536])
    ptr = np.array([0, 5, 5, 6])
    f = res.batch_time_factor(lengths, ptr, 8)
    r = lambda c, q: float(res.throughput_ratio(c, q))  # noqa: E731
    first = (4 * 4096 / r(4096, 5) + MIB / r(MIB, 5)) / (4 * 4096 + MIB)
    assert f == pytest.approx([first, 1.0, 1 / r(65536, 1)])
    # and the corrected engine's makespans are the layered ones times these factors
    off = np.arange(len(lengths)) * 4 * MIB
    inner = FastDevice(PARAMS).run_batches(off, lengths, ptr, 8)
    device = CorrectedDevice(FastDevice(PARAMS), res)
    assert device.run_batches(off, lengths, ptr, 8) == pytest.approx(inner * f)


def test_a_ratio_of_one_changes_nothing():
    """Points that are the layered model's own predictions: the corrected model is the
    layered model, point for point and batch for batch."""
    device = corrected_device(PARAMS, [p.model_copy(update={
        "throughput_mb_s": predict_detail(PARAMS, p.chunk_bytes, p.queue_depth)["throughput_mb_s"],
        "latency_mean_us": predict_detail(PARAMS, p.chunk_bytes, p.queue_depth)["latency_mean_us"]})
        for p in tilted_points(GRID)])
    lengths = np.full(40, 32768)
    off = np.arange(40) * MIB
    ptr = np.array([0, 10, 40])
    assert device.run_batches(off, lengths, ptr, 4) == pytest.approx(
        FastDevice(PARAMS).run_batches(off, lengths, ptr, 4), rel=1e-12)


def test_make_device_applies_a_profiles_correction_and_only_then():
    points = tilted_points(GRID)
    profile = DeviceProfile(name="synthetic-tilted", points=points, params=PARAMS,
                            correction="measured-residual")
    device = make_device(profile)
    assert isinstance(device, CorrectedDevice)
    assert make_device(device) is device  # a made device passes through
    plain = make_device(profile.model_copy(update={"correction": "none"}))
    assert isinstance(plain, FastDevice)
    assert isinstance(make_device(profile, "des"), CorrectedDevice)
    # the profile YAML keeps the setting; an unknown one is an input error
    again = DeviceProfile.from_dict(__import__("yaml").safe_load(profile.to_yaml()))
    assert again.correction == "measured-residual"
    with pytest.raises(InputError, match="correction"):
        DeviceProfile.from_dict({**profile.model_dump(), "correction": "magic"})


def test_residual_per_pattern_falls_back_to_random():
    res = Residual.of(tilted_points([(c, q) for c in CHUNKS[:2] for q in QDS[:2]]),
                      [predict_detail(PARAMS, c, q) for c in CHUNKS[:2] for q in QDS[:2]])
    assert res.throughput_ratio(4096, 1, "sequential") == pytest.approx(float(tilt(4096, 1)))


def test_auto_keeps_the_residual_only_where_it_lowers_the_cross_validated_error():
    from flashsim.device.fit import choose_correction

    cv = {"cv_folds": 8, "cv_median_abs_error_pct": 4.0, "uncorrected_cv_median_abs_error_pct": 9.0}
    assert choose_correction("auto", cv)[0] == "measured-residual"
    cv["cv_median_abs_error_pct"] = 9.5
    chosen, why = choose_correction("auto", cv)
    assert chosen == "none" and "9.5%" in why and "9.0%" in why
    assert choose_correction("none", {})[0] == "none"


@pytest.mark.slow
def test_fit_reports_the_corrected_and_the_layered_models_errors():
    """A SYNTHETIC tilted device: the fit records both models' holdout errors, the choice
    and why; forcing the residual off gives the layered model's holdout error."""
    profile = DeviceProfile(name="synthetic-tilted", points=tilted_points(GRID),
                            holdout_points=tilted_points(OFF_GRID))
    fitted = fit_profile(profile, quick=True, cv_folds=4)
    f = fitted.fit
    assert fitted.correction in ("measured-residual", "none")
    assert f.correction_method.startswith(f"auto: {fitted.correction}")
    assert f.cv_folds == 4 and f.uncorrected_cv_median_abs_error_pct is not None
    forced = fit_profile(profile, quick=True, correction="measured-residual")
    none = fit_profile(profile, quick=True, correction="none")
    assert forced.params == none.params == fitted.params  # the choice never moves the fit
    assert none.fit.holdout_median_abs_error_pct == \
        forced.fit.uncorrected_holdout_median_abs_error_pct

def test_an_ablation_variant_leaves_its_term_out_of_every_form():
    from flashsim.device.ablation import variants
    from flashsim.device.fitspace import NAMES, Space

    space = Space(50.0, True, True, frozenset({"link_overhead_us", "batch_start_us"}))
    free = {NAMES[j] for j in space.form(4, 65536, 1, True).free}
    assert "link_overhead_us" not in free and "batch_start_us" not in free
    assert {"host_overhead_us", "link_pass_us", "host_call_us"} <= free
    names = [v.name for v in variants()]
    assert names[0] == "full model" and len(names) == len(set(names))
    assert all((1, True) not in v.host_modes for v in variants() if "passes" in v.name)


def test_short_batch_points_set_the_time_of_batches():
    """SYNTHETIC short-batch points at half the layered model's makespan (a device that
    serves bursts twice as fast as the model says): the corrected model's batches follow
    them, its steady state keeps the steady-state ratio."""
    from flashsim.device.fit import predict_batch_makespan_us

    batches = []
    for c in (4096, 65536):
        for n, q in ((4, 1), (4, 4), (16, 8), (64, 32)):
            m = predict_batch_makespan_us(PARAMS, c, q, n)
            batches.append(DevicePoint(chunk_bytes=c, queue_depth=q, batch_reads=n,
                                       batch_makespan_us=m / 2, throughput_mb_s=n * c / m * 2,
                                       source="assumption"))
    device = corrected_device(PARAMS, tilted_points(GRID) + batches)
    for p in batches:
        got = predict_batch_makespan_us(device, p.chunk_bytes, p.queue_depth, p.batch_reads)
        assert got == pytest.approx(p.batch_makespan_us, rel=1e-6)
    between = predict_batch_makespan_us(device, 16384, 8, 16)
    assert between == pytest.approx(predict_batch_makespan_us(PARAMS, 16384, 8, 16) / 2)
    steady = predict_detail(device, 16384, 8)["throughput_mb_s"]
    assert steady == pytest.approx(predict_detail(PARAMS, 16384, 8)["throughput_mb_s"]
                                   * float(tilt(16384, 8)))


def test_a_batch_factor_over_many_read_sizes_weights_each_read_by_its_own_ratio():
    """More (length, QD) pairs than the first table holds (it grows): every read still gets
    the ratio of its own length at min(QD, its batch's reads)."""
    res = corrected_device(PARAMS, tilted_points(GRID)).residual
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 4000, size=6000) * 512
    ptr = np.unique(np.r_[0, rng.integers(0, 6000, 300), 6000])
    f = res.batch_time_factor(lengths, ptr, 16)
    n = np.diff(ptr)
    qd = np.repeat(np.minimum(16, n), n)
    inv = 1.0 / res.throughput_ratio(lengths, qd)
    expected = [np.sum(lengths[a:b] * inv[a:b]) / np.sum(lengths[a:b])
                for a, b in zip(ptr[:-1], ptr[1:])]
    assert len(np.unique(lengths * 64 + qd)) > 1024  # the first table holds 1024
    assert f == pytest.approx(expected, rel=1e-9)
