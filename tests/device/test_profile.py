"""Device profiles: every committed profile is reproduced by its fitted model; old files load;
bad files fail cleanly."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from flashsim.cli import main
from flashsim.device import make_device
from flashsim.device.crossval import layered_device
from flashsim.device.fit import point_errors, predict_point
from flashsim.device.profile import DeviceParams, DevicePoint, DeviceProfile
from flashsim.errors import InputError

DEVICES = Path(__file__).resolve().parents[2] / "flashsim" / "data" / "devices"

PROFILES = sorted(DEVICES.glob("*.yaml"))


def test_the_three_profiles_are_committed():
    names = {p.stem for p in PROFILES}
    assert {"local-virtio", "local-virtio-fio", "m1max-paper"} <= names


# DATA-REGRESSION tests of the shipped profiles: measured data, so a recalibration may move
# them. The median tolerance is the product's goal (≤ 10 %); the worst point's is wider than
# the goal (≤ 25 %), which the study judges, not CI: one off-grid point of a calibration of
# this disk missed it by far (24 KiB at QD 48: 27 % corrected, 35 % layered), and a
# recalibration must not break the build. A broken model or loader misses by much more.
MEDIAN_PCT, WORST_PCT = 10.0, 40.0
# Behind a blk-throttle a point the caps hold is measured over 0.32 s, three or four 100 ms
# slices' budgets by where the run falls in them: 0.79-1.28x the cap, 30-50 % apart between
# repeats, where the model says the cap. Those points set the tolerances of a throttled
# profile: its errors are the slices' phase, not the model's.
THROTTLED_MEDIAN_PCT, THROTTLED_WORST_PCT = 15.0, 60.0


def _tolerances(profile: DeviceProfile) -> tuple[float, float]:
    if profile.throttle is None:
        return MEDIAN_PCT, WORST_PCT
    return THROTTLED_MEDIAN_PCT, THROTTLED_WORST_PCT


def _abs_values(errors) -> list[float]:
    values = [abs(e.throughput_error_pct) for e in errors]
    return values + [abs(e.latency_error_pct) for e in errors if e.latency_error_pct is not None]


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_shipped_profile_is_reproduced_by_its_model(path):
    profile = DeviceProfile.load(path)
    assert profile.params is not None and profile.fit is not None
    values = _abs_values(point_errors(make_device(profile), profile.points))
    median_pct, worst_pct = _tolerances(profile)
    assert np.median(values) <= median_pct
    assert max(values) <= worst_pct
    # the stored per-point errors (of the layered model) are what the current model gives
    # recomputed, not the stored numbers (behind the profile's throttle, if it has one)
    errors = point_errors(layered_device(profile.params, profile.throttle), profile.points)
    stored = {(e.chunk_bytes, e.queue_depth, e.pattern, e.batch_reads): e
              for e in profile.fit.points}
    for e in errors:
        s = stored[(e.chunk_bytes, e.queue_depth, e.pattern, e.batch_reads)]
        assert e.throughput_error_pct == pytest.approx(s.throughput_error_pct, abs=0.5)


@pytest.mark.parametrize("path", [p for p in PROFILES if DeviceProfile.load(p).holdout_points],
                         ids=lambda p: p.stem)
def test_shipped_profile_predicts_its_holdout_points(path):
    """Points off the calibration grid, measured in the same rounds, seen by no fit."""
    profile = DeviceProfile.load(path)
    values = _abs_values(point_errors(make_device(profile), profile.holdout_points))
    median_pct, worst_pct = _tolerances(profile)
    assert np.median(values) <= median_pct
    assert max(values) <= worst_pct


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_records_provenance(path):
    profile = DeviceProfile.load(path)
    sources = {p.source for p in profile.points}
    if profile.name == "m1max-paper":
        assert sources == {"published", "assumption"}
        assert "assum" in profile.description.lower()
    else:
        assert sources == {"measured"}
        assert profile.measured.o_direct is True
        assert profile.measured.date and profile.measured.method
        steady = [p for p in profile.points if p.batch_reads is None]
        if profile.name.endswith("-validated"):  # validate's quick grid, matched to plans
            assert len(steady) >= 16 and len(steady) < len(profile.points)
        else:
            assert len(steady) >= 56  # the default 8 chunks × 7 queue depths
        assert all(p.repeats and p.repeats >= 2 for p in profile.points)


def test_m1max_profile_matches_the_paper():
    profile = DeviceProfile.load(DEVICES / "m1max-paper.yaml")
    tput_8k, _ = predict_point(profile.params, 8192, 32)
    tput_16k, _ = predict_point(profile.params, 16384, 32)
    assert tput_8k == pytest.approx(1250, rel=0.10)  # Table 2: 1.25 GB/s, 32 threads
    assert tput_16k == pytest.approx(2250, rel=0.10)  # 2.25 GB/s bundled
    assert profile.params.link_bandwidth_mb_s == pytest.approx(6100, rel=0.10)


def test_save_and_load_round_trip(tmp_path):
    profile = DeviceProfile.load(DEVICES / "m1max-paper.yaml")
    out = tmp_path / "copy.yaml"
    profile.save(out)
    again = DeviceProfile.load(out)
    assert again == profile
    assert list(tmp_path.iterdir()) == [out]  # no temp file left


def test_old_profiles_load_without_a_batch_start():
    prof = DeviceProfile.load(DEVICES / "local-virtio-fio.yaml")  # written before the term
    assert "batch_start_us" not in (DEVICES / "local-virtio-fio.yaml").read_text()
    assert prof.params.batch_start_us == 0.0


def test_old_profiles_load_without_the_term():
    params = DeviceParams(host_overhead_us=1.0, command_latency_us=10.0, n_units=4,
                          unit_bandwidth_mb_s=100.0, link_bandwidth_mb_s=1000.0)
    assert params.link_amortization_per_read == 0.0


def test_short_batch_points_need_their_makespan_and_old_points_load():
    with pytest.raises(ValueError, match="go together"):
        DevicePoint(chunk_bytes=4096, queue_depth=1, throughput_mb_s=10.0, batch_reads=4)
    p = DevicePoint(chunk_bytes="4k", queue_depth=2, throughput_mb_s=10.0)
    assert p.batch_reads is None and p.batch_makespan_us is None


def _good() -> dict:
    return yaml.safe_load((DEVICES / "m1max-paper.yaml").read_text())


def _bad(tmp_path, mutate) -> Path:
    data = _good()
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d["points"][1].update(throughput_mbs=d["points"][1].pop("throughput_mb_s")),
     "points.1.throughput_mbs", "unknown key"),
    (lambda d: d["points"][0].update(chunk_bytes="-4k"), "points.0.chunk_bytes", "positive"),
    (lambda d: d["points"][2].update(chunk_bytes="4q"), "points.2.chunk_bytes", "not a size"),
    (lambda d: d["points"][3].update(queue_depth=0), "points.3.queue_depth", "greater than"),
    (lambda d: d["params"].update(n_unitz=4), "params.n_unitz", "unknown key"),
    (lambda d: d.update(points=d["points"][:3]), "points", "too few"),
    (lambda d: d["points"][0].update(source="rumour"), "points.0.source", ""),
])
def test_bad_profile_is_one_line_exit_2(tmp_path, capsys, mutate, key, words):
    path = _bad(tmp_path, mutate)
    code = main(["device", "predict", "--profile", str(path), "--chunk", "4k", "--qd", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and key in err and words in err
    with pytest.raises(InputError):
        DeviceProfile.load(path)


def test_missing_profile_and_bad_arguments(tmp_path, capsys):
    assert main(["device", "predict", "--profile", str(tmp_path / "no.yaml"), "--chunk", "4k",
                 "--qd", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    m1 = str(DEVICES / "m1max-paper.yaml")
    assert main(["device", "predict", "--profile", m1, "--chunk", "4q", "--qd", "1"]) == 2
    assert main(["device", "predict", "--profile", m1, "--chunk", "4k", "--qd", "0"]) == 2


def test_profile_without_params_cannot_predict(tmp_path, capsys):
    path = _bad(tmp_path, lambda d: (d.pop("params"), d.pop("fit")))
    assert main(["device", "predict", "--profile", str(path), "--chunk", "4k", "--qd", "1"]) == 2
    assert "params" in capsys.readouterr().err


def test_predict_json(capsys):
    m1 = str(DEVICES / "m1max-paper.yaml")
    assert main(["device", "predict", "--profile", m1, "--chunk", "16k", "--qd", "32",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chunk_bytes"] == 16384 and out["queue_depth"] == 32
    assert out["throughput_mb_s"] == pytest.approx(2250, rel=0.1)
    # closed loop with 32 in flight: latency ≈ 32 × 16 KiB / throughput (host overhead is tiny)
    assert out["latency_us"] == pytest.approx(32 * 16384 / out["throughput_mb_s"], rel=0.05)
    assert out["measured_throughput_mb_s"] == 2250
