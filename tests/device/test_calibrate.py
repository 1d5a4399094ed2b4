"""Calibration: a smoke run on a temp file, short-batch and clustered points, grid parts,
holdout points and cross-validation, and fio JSON import."""

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flashsim.cli import build_parser, main
from flashsim.device.calibrate import (
    DEFAULT_DURATION_S,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP_S,
    calibrate,
    check_holdout,
    ensure_data_file,
    parse_holdout,
)
from flashsim.device.crossval import CV_FOLDS
from flashsim.device.fast import FastDevice
from flashsim.device.fio import profile_from_fio
from flashsim.device.fit import fit_profile, predict_detail
from flashsim.device.profile import DeviceParams, DevicePoint, DeviceProfile, ThrottleInfo
from flashsim.device.throttle import ThrottledDevice
from flashsim.errors import InputError

FIO_DIR = Path(__file__).resolve().parents[2] / "flashsim" / "data" / "devices" / "fio-local-virtio"


@pytest.mark.disk
def test_calibrate_smoke_on_a_temp_file(tmp_path, capsys):
    data, out = tmp_path / "data.bin", tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(data), "--size", "8m", "--out", str(out),
                 "--chunks", "4k,64k", "--qd", "1,4", "--duration", "0.05", "--warmup", "0.01",
                 "--repeats", "2", "--batch-reads", "none", "--no-fit", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["o_direct"] is True and payload["n_points"] == 4
    assert data.stat().st_size == 8 << 20
    assert data.stat().st_blocks * 512 >= 8 << 20  # written in full, not sparse
    assert len(set(data.read_bytes()[:1 << 20])) == 256  # random bytes, not zeros
    profile = DeviceProfile.load(out)
    assert {(p.chunk_bytes, p.queue_depth) for p in profile.points} == {
        (4096, 1), (4096, 4), (65536, 1), (65536, 4)}
    for p in profile.points:
        assert p.throughput_mb_s > 0 and p.repeats == 2
        assert 0 < p.latency_p50_us <= p.latency_p99_us and p.latency_mean_us > 0
        assert p.throughput_spread_pct is not None
    assert profile.measured.o_direct and "ext" in (profile.measured.file_system or "ext")
    assert profile.measured.block_device and profile.measured.host


@pytest.mark.disk
def test_calibrate_with_short_batch_points(tmp_path, capsys):
    data, out = tmp_path / "data.bin", tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(data), "--size", "8m", "--out", str(out),
                 "--chunks", "4k,64k", "--qd", "1,4", "--duration", "0.02", "--warmup", "0.01",
                 "--repeats", "2", "--batch-reads", "1,8", "--batch-qds", "1,4", "--no-fit",
                 "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    profile = DeviceProfile.load(out)
    batch = {(p.chunk_bytes, p.queue_depth, p.batch_reads): p for p in profile.points
             if p.batch_reads is not None and p.pattern == "random"}
    # batches of 1 read only at QD 1; of 8 reads at QD 1 and 4
    assert sorted(batch) == [(4096, 1, 1), (4096, 1, 8), (4096, 4, 8), (65536, 1, 1),
                             (65536, 1, 8), (65536, 4, 8)]
    # and by default clustered batches of 16 reads at the batch QDs above 1
    clustered = sorted((p.chunk_bytes, p.queue_depth, p.batch_reads) for p in profile.points
                       if p.pattern == "clustered")
    assert clustered == [(4096, 4, 16), (65536, 4, 16)]
    assert payload["n_points"] == 4 + 6 + 2
    for (chunk, _, n), p in batch.items():
        assert p.repeats == 2 and p.batch_makespan_us > 0
        assert p.throughput_mb_s == pytest.approx(n * chunk / p.batch_makespan_us, rel=1e-3)
    # a batch of 8 reads takes longer than a batch of 1 at the same QD
    assert batch[(4096, 1, 8)].batch_makespan_us > batch[(4096, 1, 1)].batch_makespan_us
    with pytest.raises(InputError):
        DeviceProfile.from_dict({**profile.model_dump(), "points": [
            {**profile.points[0].model_dump(), "batch_reads": 0}] + [
            p.model_dump() for p in profile.points[1:]]})


def test_existing_smaller_file_is_not_overwritten(tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 4096)
    with pytest.raises(InputError, match="fewer than"):
        ensure_data_file(small, 8192)
    assert small.read_bytes() == b"x" * 4096


@pytest.mark.disk
def test_calibrate_refuses_tmpfs_without_flag(tmp_path, capsys):
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no /dev/shm")
    path = Path("/dev/shm") / f"flashsim-cal-{os.getpid()}.bin"
    try:
        code = main(["calibrate", "--file", str(path), "--size", "1m", "--out",
                     str(tmp_path / "x.yaml"), "--chunks", "4k,8k", "--qd", "1,2",
                     "--duration", "0.02", "--warmup", "0", "--repeats", "1", "--no-fit"])
        assert code == 2
        err = capsys.readouterr().err
        assert "O_DIRECT" in err and "--allow-page-cache" in err and err.count("\n") == 1
        assert not (tmp_path / "x.yaml").exists()
    finally:
        path.unlink(missing_ok=True)


def test_batch_grid_cuts_queue_depth_to_batch_size_and_caps_bytes():
    from flashsim.device.calibrate import batch_grid
    got = batch_grid([4096, 1 << 20], [1, 8, 32], [1, 4, 16, 64])
    assert got == sorted((*k, "random") for k in [
        (4096, 1, 1), (4096, 1, 4), (4096, 4, 4), (4096, 1, 16), (4096, 8, 16), (4096, 16, 16),
        (4096, 1, 64), (4096, 8, 64), (4096, 32, 64), (1 << 20, 1, 1), (1 << 20, 1, 4),
        (1 << 20, 4, 4)])
    assert batch_grid([4096], [8], [16], "clustered") == [(4096, 8, 16, "clustered")]


def test_clustered_batches_are_near_but_never_contiguous():
    from flashsim.device.fit import batch_workload
    off, length, ptr = batch_workload(16384, 8, "clustered", 64)
    assert len(ptr) == 9 and np.all(length == 16384)
    for b in range(8):
        o = off[ptr[b]:ptr[b + 1]]
        assert np.all(np.diff(o) == 2 * 16384)  # every other chunk: near, with gaps
    with pytest.raises(ValueError, match="short-batch"):
        DevicePoint(chunk_bytes=4096, queue_depth=8, throughput_mb_s=1.0, pattern="clustered")


@pytest.mark.disk
def test_behind_a_byte_cap_short_batches_reach_the_largest_chunk(tmp_path, monkeypatch):
    """Behind a byte cap the steady points of large reads read at the cap: batches of them
    (inside a slice's budget) are measured too, clustered ones only up to BATCH_MAX_BYTES;
    and a timed run needs only 4 x QD reads. Without a cap the standard chunk limit holds."""
    import flashsim.device.calibrate as cal

    data = tmp_path / "data.bin"
    kw = dict(size_bytes=16 << 20, chunks=[4096, 1 << 20], qds=[1, 8], duration_s=0.01,
              warmup_s=0.0, repeats=1, seed=3, quiet=True, batch_reads=(4, 16),
              batch_qds=(1, 8), batch_max_chunk=256 << 10, spans=())
    batches = lambda prof: {(p.chunk_bytes, p.queue_depth, p.batch_reads, p.pattern)  # noqa: E731
                            for p in prof.points if p.batch_reads}
    free = batches(calibrate(data, **kw))
    assert not any(c == 1 << 20 for c, *_ in free)
    minimums, real_run_for = [], cal._run_for

    def spy(*args, min_reads_per_qd=8):
        minimums.append(min_reads_per_qd)
        return real_run_for(*args, min_reads_per_qd=min_reads_per_qd)

    monkeypatch.setattr(cal, "_run_for", spy)
    monkeypatch.setattr(cal, "blkio_throttle_of", lambda path: ThrottleInfo(read_mb_s=300.0))
    capped = calibrate(data, **kw)
    got = batches(capped)
    assert (1 << 20, 1, 4, "random") in got and (1 << 20, 4, 4, "random") in got
    assert (1 << 20, 8, 16, "random") not in got  # 16 MiB: over BATCH_MAX_BYTES
    assert not any(c == 1 << 20 and pat == "clustered" for c, _, _, pat in got)
    assert cal.CAPPED_MIN_READS_PER_QD in minimums and 8 not in minimums
    assert capped.throttle.read_mb_s == 300.0


@pytest.mark.disk
def test_grid_parts_deal_out_one_round_without_overlap(tmp_path):
    """Parts j of k of one round (same seed) measure every point exactly once together."""
    data = tmp_path / "data.bin"
    kw = dict(size_bytes=8 << 20, chunks=[4096, 65536], qds=[1, 4], duration_s=0.01,
              warmup_s=0.0, repeats=1, seed=3, quiet=True, batch_reads=(1, 8),
              clustered_reads=())
    whole = calibrate(data, **kw)
    keys = lambda prof: [(p.chunk_bytes, p.queue_depth, p.batch_reads or 0, p.pattern)  # noqa: E731
                         for p in prof.points]
    parts = [calibrate(data, grid_part=(j, 5), **kw) for j in range(5)]
    dealt = [k for prof in parts if prof is not None for k in keys(prof)]
    assert len(dealt) == len(set(dealt)) == len(whole.points) == 10
    assert sorted(dealt) == sorted(keys(whole))
    # more parts than points: the surplus parts are empty
    assert sum(calibrate(data, grid_part=(j, 12), **kw) is None for j in range(12)) == 2


@pytest.mark.disk
def test_grid_parts_keep_one_point_per_measurement(tmp_path):
    """With repeats, parts hold each measurement as its own point (a part that measures a
    point twice holds it twice), so a caller's median is over every measurement."""
    from collections import Counter

    data = tmp_path / "data.bin"
    kw = dict(size_bytes=8 << 20, chunks=[4096, 65536], qds=[1, 4], duration_s=0.01,
              warmup_s=0.0, repeats=3, seed=5, quiet=True, batch_reads=())
    parts = [calibrate(data, grid_part=(j, 2), **kw) for j in range(2)]
    counts = Counter((p.chunk_bytes, p.queue_depth) for prof in parts for p in prof.points)
    assert counts == {(c, q): 3 for c in (4096, 65536) for q in (1, 4)}
    assert all(p.repeats == 1 for prof in parts for p in prof.points)


def _fio_rounds():
    rounds = sorted(FIO_DIR.glob("round*.json"))
    if not rounds:
        pytest.skip("no committed fio outputs")
    return rounds


def _load(path):
    text = path.read_text()
    return json.loads(text[text.find("{"):])


def test_fio_import_reads_the_committed_outputs():
    rounds = _fio_rounds()
    profile = profile_from_fio(rounds, name="x")
    assert len(profile.points) == 56
    per_round = [next(j for j in _load(r)["jobs"] if j["jobname"] == "32k-qd8")["read"]["bw_bytes"]
                 / 1e6 for r in rounds]
    point = next(p for p in profile.points if p.chunk_bytes == 32768 and p.queue_depth == 8)
    assert point.repeats == len(rounds)
    assert point.throughput_mb_s == pytest.approx(float(np.median(per_round)), rel=1e-3)
    assert point.latency_p50_us <= point.latency_p99_us


@pytest.mark.parametrize("option, value, words", [
    ("rw", "randwrite", "rw=randread"), ("direct", "0", "direct=1"), ("bs", "4q", "not a size"),
])
def test_fio_import_rejects_other_workloads(tmp_path, capsys, option, value, words):
    rounds = _fio_rounds()
    raw = _load(rounds[0])
    bad = copy.deepcopy(raw)
    bad["jobs"][3].setdefault("job options", {})[option] = value
    bad["global options"].pop(option, None)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    code = main(["calibrate", "--from-fio", str(path), "--out", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and str(path) in err and err.count("\n") == 1
    (tmp_path / "junk.json").write_text("not json")
    assert main(["calibrate", "--from-fio", str(tmp_path / "junk.json"), "--out",
                 str(tmp_path / "p.yaml")]) == 2
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.disk
@pytest.mark.apt
@pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed")
def test_fio_import_of_a_fresh_run(tmp_path):
    data = tmp_path / "d.bin"
    ensure_data_file(data, 4 << 20)
    outs = []
    for bs, qd in (("4k", 1), ("4k", 4), ("16k", 1), ("16k", 4)):
        out = tmp_path / f"{bs}-{qd}.json"
        subprocess.run(["fio", "--name=t", f"--filename={data}", "--rw=randread", f"--bs={bs}",
                        f"--iodepth={qd}", "--direct=1", "--ioengine=libaio", "--runtime=0.1",
                        "--time_based", "--output-format=json", f"--output={out}"],
                       check=True, capture_output=True)
        outs.append(out)
    profile = profile_from_fio(outs)
    assert sorted((p.chunk_bytes, p.queue_depth) for p in profile.points) == [
        (4096, 1), (4096, 4), (16384, 1), (16384, 4)]
    assert all(p.throughput_mb_s > 0 and p.latency_mean_us > 0 for p in profile.points)


def test_cli_defaults_are_the_api_defaults():
    parser = build_parser()
    cal = parser.parse_args(["calibrate", "--out", "x.yaml"])
    assert (cal.duration, cal.warmup, cal.repeats, cal.cv_folds) == (
        DEFAULT_DURATION_S, DEFAULT_WARMUP_S, DEFAULT_REPEATS, CV_FOLDS)
    assert calibrate.__kwdefaults__["cv_folds"] == CV_FOLDS
    assert tuple(int(x) for x in cal.clustered_reads.split(",")) == (
        calibrate.__kwdefaults__["clustered_reads"])
    fit = parser.parse_args(["device", "fit", "--profile", "p.yaml"])
    assert fit.cv_folds == fit_profile.__kwdefaults__["cv_folds"] == 0


def test_holdout_pairs_are_parsed_and_checked_against_the_grid():
    assert parse_holdout("12k/3, 48k/12") == [(12288, 3), (49152, 12)]
    assert parse_holdout("12kx3") == [(12288, 3)]
    assert check_holdout([(12288, 3), (12288, 3), (4096, 3)], [4096, 8192], [1, 2]) == [
        (12288, 3), (4096, 3)]  # a grid chunk at a QD the grid does not measure is off it
    for bad in ("12k", "12k/3/4", "12k/x", "twelve/3"):
        with pytest.raises(InputError, match="--holdout"):
            parse_holdout(bad)
    with pytest.raises(InputError, match="on the calibration grid"):
        check_holdout([(4096, 2)], [4096, 8192], [1, 2])
    with pytest.raises(InputError, match="multiple of 4096"):
        check_holdout([(5000, 3)], [4096], [1])


@pytest.mark.parametrize("extra, words", [
    (["--holdout", "4k/4"], "on the calibration grid"),
    (["--holdout", "12k"], "chunk/QD"),
    (["--cv-folds", "1"], "k ≥ 2"),
])
def test_bad_holdout_or_folds_stop_before_anything_is_written(tmp_path, capsys, extra, words):
    data, out = tmp_path / "data.bin", tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(data), "--size", "8m", "--out", str(out),
                 "--chunks", "4k,64k", "--qd", "1,4", *extra])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1
    assert not data.exists() and not out.exists()


def test_a_fio_import_takes_the_throttle_its_runs_read_behind(tmp_path, capsys):
    rounds = _fio_rounds()
    out = tmp_path / "p.yaml"
    assert main(["calibrate", "--from-fio", str(rounds[0]), "--out", str(out), "--no-fit",
                 "--throttle", "15000,none"]) == 0
    throttle = DeviceProfile.load(out).throttle
    assert throttle.read_iops == 15000 and throttle.read_mb_s is None
    assert "--throttle" in throttle.source and "blk-throttle" in capsys.readouterr().out


@pytest.mark.parametrize("value, words", [
    ("15000", "not two caps"), ("none,none", "no cap given"), ("-5,300", "out of range"),
    ("15000,3e12", "out of range"), ("fast,300", "out of range")])
def test_a_throttle_that_is_not_two_caps_is_refused(tmp_path, capsys, value, words):
    rounds = _fio_rounds()
    out = tmp_path / "p.yaml"
    code = main(["calibrate", "--from-fio", str(rounds[0]), "--out", str(out), "--no-fit",
                 f"--throttle={value}"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "--throttle" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_measuring_calibration_reads_its_throttle_and_takes_none(tmp_path, capsys):
    data, out = tmp_path / "data.bin", tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(data), "--size", "8m", "--out", str(out),
                 "--throttle", "15000,300"])
    err = capsys.readouterr().err
    assert code == 2 and "--throttle" in err and "--from-fio" in err
    assert not data.exists() and not out.exists()


@pytest.mark.slow
def test_device_fit_behind_a_given_throttle_fits_the_device_behind_it(tmp_path, capsys):
    """Points measured behind 8000 IOPS: fitted behind that throttle, the device behind it
    comes back (about 4500 reads/s at QD 1, 8 units: far over the cap at QD 16, where the
    points read at the cap); `--throttle none` takes the throttle off again."""
    truth = DeviceParams(host_overhead_us=3, command_latency_us=200, n_units=8,
                         unit_bandwidth_mb_s=300, link_bandwidth_mb_s=1800)
    cap = ThrottleInfo(read_iops=8000)
    seen = ThrottledDevice(FastDevice(truth), cap)
    points = []
    for chunk in (4096, 65536, 262144):
        for qd in (1, 4, 16):
            d = predict_detail(seen, chunk, qd)
            points.append({"chunk_bytes": chunk, "queue_depth": qd, "source": "assumption",
                           "throughput_mb_s": d["throughput_mb_s"]})
    path = tmp_path / "behind.yaml"
    DeviceProfile.from_dict({"name": "behind", "points": points}).save(path)
    assert main(["device", "fit", "--profile", str(path), "--throttle", "8000,none",
                 "--correction", "none", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["median_abs_error_pct"] < 5
    fitted = DeviceProfile.load(path)
    assert fitted.throttle.read_iops == 8000
    behind = FastDevice(fitted.params)
    assert predict_detail(behind, 4096, 1)["throughput_mb_s"] == pytest.approx(
        predict_detail(FastDevice(truth), 4096, 1)["throughput_mb_s"], rel=0.15)
    assert predict_detail(behind, 4096, 16)["throughput_mb_s"] > 2 * 8000 * 4096 / 1e6
    assert main(["device", "fit", "--profile", str(path), "--throttle", "none",
                 "--correction", "none", "--json"]) == 0
    assert DeviceProfile.load(path).throttle is None


def test_holdout_needs_a_measurement_not_fio(tmp_path, capsys):
    rounds = _fio_rounds()
    code = main(["calibrate", "--from-fio", str(rounds[0]), "--out", str(tmp_path / "p.yaml"),
                 "--holdout", "12k/3"])
    assert code == 2 and "--holdout" in capsys.readouterr().err


@pytest.mark.disk
def test_calibrate_measures_holdout_points_apart(tmp_path, capsys):
    data, out = tmp_path / "data.bin", tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(data), "--size", "8m", "--out", str(out),
                 "--chunks", "4k,64k", "--qd", "1,4", "--duration", "0.02", "--warmup", "0",
                 "--repeats", "2", "--holdout", "8k/2,64k/2", "--batch-reads", "none",
                 "--no-fit", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    profile = DeviceProfile.load(out)
    assert {(p.chunk_bytes, p.queue_depth) for p in profile.points} == {
        (4096, 1), (4096, 4), (65536, 1), (65536, 4)}
    assert [(p.chunk_bytes, p.queue_depth, p.repeats) for p in profile.holdout_points] == [
        (8192, 2, 2), (65536, 2, 2)]
    assert payload["n_points"] == 4 and payload["n_holdout_points"] == 2
    assert all(p.throughput_mb_s > 0 for p in profile.holdout_points)


def _synthetic_profile_file(tmp_path) -> Path:
    """A profile of SYNTHETIC points (the model's own predictions) and one holdout point."""
    from flashsim.device.profile import DeviceParams

    truth = DeviceParams(host_overhead_us=3, command_latency_us=60, n_units=8,
                         unit_bandwidth_mb_s=300, link_bandwidth_mb_s=1800)

    def point(chunk, qd):
        d = predict_detail(truth, chunk, qd)
        return {"chunk_bytes": chunk, "queue_depth": qd, "source": "assumption",
                "throughput_mb_s": d["throughput_mb_s"], "latency_mean_us": d["latency_mean_us"]}

    profile = DeviceProfile.from_dict({
        "name": "synthetic",
        "points": [point(c, q) for c in (4096, 65536, 262144) for q in (1, 4, 16)],
        "holdout_points": [point(16384, 8)]})
    path = tmp_path / "synthetic.yaml"
    profile.save(path)
    return path


@pytest.mark.slow
def test_device_fit_cross_validates_and_scores_the_holdout(tmp_path, capsys):
    path = _synthetic_profile_file(tmp_path)
    assert main(["device", "fit", "--profile", str(path), "--cv-folds", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["cv_folds"] == 3 and payload["n_holdout_points"] == 1
    # the model's own points: left out or off the grid, they are still predicted closely
    assert payload["cv_worst_abs_error_pct"] < 3.0
    assert payload["holdout_worst_abs_error_pct"] < 3.0
    fit = DeviceProfile.load(path).fit
    assert len(fit.cv_points) == 9 and len(fit.holdout_points) == 1 and fit.duration_s >= 0
    assert main(["device", "fit", "--profile", str(path), "--correction", "none"]) == 0
    out = capsys.readouterr().out
    assert "holdout (1 points, never fitted)" in out and "cross-validated" not in out


def test_profiles_without_the_new_fit_fields_still_load():
    committed = Path(__file__).resolve().parents[2] / "flashsim" / "data" / "devices" / "m1max-paper.yaml"
    profile = DeviceProfile.load(committed)
    assert profile.holdout_points == [] and profile.fit.cv_folds is None


@pytest.mark.disk
def test_calibrate_api_fits_and_cross_validates_when_asked(tmp_path):
    profile = calibrate(tmp_path / "data.bin", size_bytes=8 << 20, chunks=(4096, 65536),
                        qds=(1, 4), duration_s=0.02, warmup_s=0.0, repeats=1, quiet=True,
                        holdout=[(8192, 2)], fit=True, cv_folds=2, batch_reads=())
    assert profile.params is not None and profile.fit.cv_folds == 2
    assert len(profile.fit.cv_points) == 4 and len(profile.fit.holdout_points) == 1
    assert profile.fit.holdout_points[0].chunk_bytes == 8192
    unfitted = calibrate(tmp_path / "data.bin", size_bytes=8 << 20, chunks=(4096, 65536),
                         qds=(1, 4), duration_s=0.02, warmup_s=0.0, repeats=1, quiet=True,
                         batch_reads=())
    assert unfitted.params is None and unfitted.fit is None


class _BurstyReader:
    """A device that serves its first `burst_reads` reads 10× faster than it sustains them
    (a token bucket), one read at a time; a simulated clock, so the test runs at any speed."""

    def __init__(self, burst_reads: int = 500, fast_s: float = 10e-6, slow_s: float = 100e-6):
        self.file_bytes, self.path = 1 << 30, "bursty"
        self.tokens, self.fast_s, self.slow_s = burst_reads, fast_s, slow_s
        self.calls: list[tuple[int, float]] = []

    def read_batch(self, offsets, lengths, queue_depth):
        from flashsim.io.reader import ReadTimes
        n = len(offsets)
        fast = min(self.tokens, n)
        self.tokens -= fast
        cost = np.r_[np.full(fast, self.fast_s), np.full(n - fast, self.slow_s)]
        finish = np.cumsum(cost)
        self.calls.append((n, float(finish[-1])))
        return ReadTimes(start_s=finish - cost, finish_s=finish, makespan_s=float(finish[-1]))


def test_a_burst_does_not_stretch_the_warm_up_or_the_timed_run():
    """Sized from the burst's rate (100 k reads/s), a 0.1 s warm-up of one run would read
    10 000 reads, about 1 s at the sustained 10 k/s; in steps it stays near its length, and
    the timed run is sized from the sustained rate."""
    from flashsim.device.calibrate import measure_point
    reader = _BurstyReader()
    out = measure_point(reader, 4096, 1, duration_s=0.4, warmup_s=0.1,
                        rng=np.random.default_rng(0))
    *warm, timed = reader.calls
    assert sum(s for _, s in warm) < 0.4
    assert 0.3 < timed[1] < 0.55
    assert out["throughput_mb_s"] == pytest.approx(4096 / 100e-6 / 1e6, rel=0.02)


def test_a_point_repeated_skips_the_probe_and_sizes_both_runs_from_its_last_rate():
    from flashsim.device.calibrate import measure_point
    reader = _BurstyReader(burst_reads=0)
    measure_point(reader, 4096, 1, duration_s=0.4, warmup_s=0.1,
                  rng=np.random.default_rng(0), rate_hint_per_s=10_000)
    assert [n for n, _ in reader.calls] == [1000, 4000]
