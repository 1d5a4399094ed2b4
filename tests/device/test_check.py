"""`flashsim device check`: model and baseline against fio JSON (a synthetic one and the
committed real runs), against a profile's points and on held-out points; buffer kinds that
differ are refused; bad fio JSON and unknown profile keys are one line, exit 2."""

import json
from pathlib import Path

import pytest
import yaml

from device_cases import PARAMS
from flashsim.cli import main
from flashsim.device.calibrate import calibrate
from flashsim.device.check import check_held_out
from flashsim.device.fio import buffers_of_iomem, profile_from_fio
from flashsim.device.fit import predict_detail
from flashsim.device.profile import DeviceProfile
from flashsim.errors import InputError
from flashsim.io.buffers import transparent_huge_pages_enabled

DEVICES = Path(__file__).resolve().parents[2] / "flashsim" / "data" / "devices"
FIO_PROFILE = DEVICES / "local-virtio-fio.yaml"
ROUND1 = DEVICES / "fio-local-virtio" / "round1.json"


def synthetic_fio(profile: DeviceProfile, *, scale: float = 1.0, iomem: str | None = None
                  ) -> dict:
    """A synthetic fio JSON output: one randread job per steady point of `profile`, its
    throughput and latency times `scale`."""
    jobs = []
    for p in profile.points:
        opts = {"bs": str(p.chunk_bytes), "iodepth": str(p.queue_depth)}
        if iomem:
            opts["iomem"] = iomem
        lat_ns = p.latency_mean_us * 1e3 * scale
        jobs.append({"jobname": f"{p.chunk_bytes}-qd{p.queue_depth}", "job options": opts,
                     "read": {"io_bytes": 1 << 30, "runtime": 2000,
                              "bw_bytes": p.throughput_mb_s * 1e6 * scale,
                              "lat_ns": {"mean": lat_ns, "percentile": {
                                  "50.000000": lat_ns, "99.000000": 2 * lat_ns}}}})
    return {"fio version": "fio-synthetic", "timestamp": 1_800_000_000,
            "global options": {"rw": "randread", "direct": "1", "ioengine": "libaio"},
            "jobs": jobs}


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


def _check(capsys, *args) -> tuple[int, dict | str]:
    code = main(["device", "check", *map(str, args), "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_synthetic_fio_a_tenth_faster_everywhere(tmp_path, capsys):
    profile = DeviceProfile.load(FIO_PROFILE)
    fio = _write(tmp_path / "synthetic.json", synthetic_fio(profile, scale=1.1))
    code, out = _check(capsys, "--profile", FIO_PROFILE, "--against", fio)
    assert code == 0 and len(out["points"]) == len(profile.points)
    # the baseline returns the profile's points: 1/1.1 - 1 of every measured value
    for row in out["points"]:
        assert row["baseline_throughput_error_pct"] == pytest.approx(-100 / 11, abs=0.01)
        assert row["baseline_latency_error_pct"] == pytest.approx(-100 / 11, abs=0.01)
    base = out["summary"]["baseline"]
    assert base["all"]["n"] == 2 * len(profile.points)
    assert base["all"]["median_abs_error_pct"] == pytest.approx(100 / 11, abs=0.01)
    assert base["throughput"]["median_error_pct"] == pytest.approx(-100 / 11, abs=0.01)
    assert out["summary"]["model"]["throughput"]["n"] == len(profile.points)
    assert out["points_buffers"] == "4k-pages"  # fio's default iomem, malloc
    assert out["profile_buffers"] == profile.measured.buffers


def test_a_profile_against_itself_gives_its_stored_fit_errors(capsys):
    code, out = _check(capsys, "--profile", FIO_PROFILE, "--against", FIO_PROFILE)
    assert code == 0
    stored = {(e.chunk_bytes, e.queue_depth): e
              for e in DeviceProfile.load(FIO_PROFILE).fit.points}
    for row in out["points"]:
        e = stored[(row["chunk_bytes"], row["queue_depth"])]
        assert row["model_throughput_error_pct"] == pytest.approx(e.throughput_error_pct,
                                                                  abs=0.5)
        assert row["model_latency_error_pct"] == pytest.approx(e.latency_error_pct, abs=0.5)
        assert row["baseline_throughput_error_pct"] == pytest.approx(0.0, abs=1e-6)


def test_real_fio_round_lies_within_the_spread_of_the_profile_built_from_it(capsys):
    # local-virtio-fio.yaml is the median of round1..round5: round 1's value at every point
    # lies within that point's repeats, so at most (max - min) away from their median
    code, out = _check(capsys, "--profile", FIO_PROFILE, "--against", ROUND1)
    assert code == 0 and len(out["points"]) == 56 and out["points_buffers"] == "4k-pages"
    spread = {(p.chunk_bytes, p.queue_depth): p.throughput_spread_pct
              for p in DeviceProfile.load(FIO_PROFILE).points}
    for row in out["points"]:
        base, meas = row["baseline_throughput_mb_s"], row["measured_throughput_mb_s"]
        s = spread[(row["chunk_bytes"], row["queue_depth"])]
        assert abs(base - meas) <= s / 100 * base * 1.001 + 0.01
        assert row["model_throughput_mb_s"] > 0 and row["model_latency_us"] > 0


def test_buffer_kinds_from_fio_iomem():
    assert buffers_of_iomem(None) == "4k-pages"  # fio's default: malloc
    assert buffers_of_iomem("mmaphuge:/mnt/huge/buf") == "hugepage"
    assert buffers_of_iomem("shmhuge") == "hugepage"
    assert buffers_of_iomem("mmapshared") == "4k-pages"
    assert buffers_of_iomem("cudamalloc") == "unknown"
    profile = profile_from_fio([ROUND1])
    assert profile.measured.buffers == "4k-pages" and profile.measured.iomem == "malloc"
    old = yaml.safe_load(FIO_PROFILE.read_text())
    old["measured"].pop("buffers", None)
    assert DeviceProfile.from_dict(old).measured.buffers == "unknown"  # recorded before it


def test_buffer_mismatch_is_refused_unless_allowed(tmp_path, capsys):
    data = yaml.safe_load(FIO_PROFILE.read_text())
    data["measured"]["buffers"] = "hugepage"
    huge = _write(tmp_path / "huge.yaml", data)
    code, err = _check(capsys, "--profile", huge, "--against", ROUND1)
    assert code == 2 and err.count("\n") == 1
    assert "4k-pages" in err and "hugepage" in err and "--allow-buffer-mismatch" in err
    code, out = _check(capsys, "--profile", huge, "--against", ROUND1,
                       "--allow-buffer-mismatch")
    assert code == 0 and "allowed" in out["buffer_note"]
    # a profile that did not record its buffers: compared, with a note
    data["measured"]["buffers"] = "unknown"
    unknown = _write(tmp_path / "unknown.yaml", data)
    code, out = _check(capsys, "--profile", unknown, "--against", ROUND1)
    assert code == 0 and "may mix" in out["buffer_note"]
    # same kind on both sides: no note
    profile = DeviceProfile.load(FIO_PROFILE)
    fio = _write(tmp_path / "huge.json", synthetic_fio(profile, iomem="mmaphuge:/mnt/h"))
    code, out = _check(capsys, "--profile", huge, "--against", fio)
    assert code == 0 and out["buffer_note"] is None


def _mutated_round1(mutate) -> dict:
    data = json.loads(ROUND1.read_text())
    mutate(data)
    return data


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ("no JSON at all", "no 'jobs' list"),
    ({"jobs": []}, "no 'jobs' list"),
    (_mutated_round1(lambda d: d["jobs"][2]["read"].pop("bw_bytes")), "bw_bytes"),
    (_mutated_round1(lambda d: d["jobs"].__setitem__(0, "job")), "a job is str"),
    (_mutated_round1(lambda d: d["jobs"][1]["job options"].update(rw="randwrite")),
     "rw=randread"),
    (_mutated_round1(lambda d: d["jobs"][5]["job options"].update(mem="shmhuge")),
     "different buffers"),
])
def test_bad_fio_json_is_one_line_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    code, err = _check(capsys, "--profile", FIO_PROFILE, "--against", path)
    assert code == 2 and err.count("\n") == 1 and words in err and str(path) in err


def test_unknown_profile_schema_and_bad_arguments(tmp_path, capsys):
    data = yaml.safe_load(FIO_PROFILE.read_text())
    data["schema_version"] = 3
    newer = _write(tmp_path / "newer.yaml", data)
    for args in (("--profile", newer, "--against", ROUND1),
                 ("--profile", FIO_PROFILE, "--against", newer)):
        code, err = _check(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "schema_version" in err
    points = _write(tmp_path / "points.txt", "x")
    assert _check(capsys, "--profile", FIO_PROFILE, "--against", points)[0] == 2
    assert _check(capsys, "--profile", FIO_PROFILE)[0] == 2  # neither mode
    assert _check(capsys, "--profile", FIO_PROFILE, "--against", ROUND1,
                  "--hold-out-chunks", "8k")[0] == 2  # both
    assert _check(capsys, "--profile", FIO_PROFILE, "--hold-out-chunks", "3k")[0] == 2


def test_a_few_points_from_a_yaml_and_a_pattern_the_profile_lacks(tmp_path, capsys):
    few = _write(tmp_path / "few.yaml", {"name": "fresh", "points": [
        {"chunk_bytes": "12k", "queue_depth": 3, "throughput_mb_s": 250.0},
        {"chunk_bytes": "4k", "queue_depth": 1, "throughput_mb_s": 60.0,
         "pattern": "sequential"}]})
    code, out = _check(capsys, "--profile", FIO_PROFILE, "--against", few)
    assert code == 0 and len(out["points"]) == 2
    rand, seq = out["points"]
    assert rand["baseline_throughput_mb_s"] > 0 and rand["baseline_latency_error_pct"] is None
    assert seq["baseline_throughput_mb_s"] is None and seq["model_throughput_mb_s"] > 0
    assert out["summary"]["baseline"]["throughput"]["n"] == 1


def test_held_out_points_of_a_synthetic_profile():
    # synthetic points from known parameters: the refit model recovers the held-out chunk
    pts = []
    for chunk in (4096, 16384, 65536, 262144):
        for qd in (1, 4, 16):
            d = predict_detail(PARAMS, chunk, qd)
            pts.append({"chunk_bytes": chunk, "queue_depth": qd, "latency_mean_us":
                        d["latency_mean_us"], "throughput_mb_s": d["throughput_mb_s"]})
    profile = DeviceProfile.from_dict({"name": "synthetic", "points": pts})
    out = check_held_out(profile, chunks=[16384], quick_fit=True)
    assert out["n_train"] == 9 and {r["chunk_bytes"] for r in out["points"]} == {16384}
    assert out["summary"]["model"]["all"]["worst_abs_error_pct"] < 3.0
    assert out["summary"]["baseline"]["all"]["n"] == 6
    with pytest.raises(InputError, match="held out"):
        check_held_out(profile, chunks=[8192])


@pytest.mark.disk
def test_calibrate_records_its_buffers(tmp_path):
    profile = calibrate(tmp_path / "d.bin", size_bytes=4 << 20, chunks=(4096, 65536),
                        qds=(1, 2), duration_s=0.02, warmup_s=0.0, repeats=1,
                        allow_page_cache=True, quiet=True)
    # the reader's buffers are madvised for huge pages: granted unless the kernel says never
    assert profile.measured.buffers == ("hugepage" if transparent_huge_pages_enabled()
                                        else "4k-pages")


def test_the_profiles_own_holdout_points(tmp_path, capsys):
    data = yaml.safe_load(FIO_PROFILE.read_text())
    if "holdout_points" not in DeviceProfile.model_fields:
        pytest.skip("profiles hold no holdout points")
    # synthetic: one made-up holdout point, 12 KiB at QD 4
    data["holdout_points"] = [{"chunk_bytes": "12k", "queue_depth": 4, "throughput_mb_s": 300.0,
                               "latency_mean_us": 160.0}]
    path = _write(tmp_path / "with-holdout.yaml", data)
    code, out = _check(capsys, "--profile", path, "--against-holdout")
    assert code == 0 and [r["chunk_bytes"] for r in out["points"]] == [12288]
    assert out["points"][0]["baseline_throughput_mb_s"] > 0
    code, out = _check(capsys, "--profile", path, "--against", path)  # points and holdout
    assert code == 0 and len(out["points"]) == len(data["points"]) + 1
    assert _check(capsys, "--profile", FIO_PROFILE, "--against-holdout")[0] == 2
    assert _check(capsys, "--profile", path, "--against-holdout", "--against", path)[0] == 2
