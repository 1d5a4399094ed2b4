"""Calibration: a smoke run on a temp file, short-batch and clustered points, grid parts, and
fio JSON import."""

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flashsim.cli import main
from flashsim.device.calibrate import ensure_data_file
from flashsim.device.fio import profile_from_fio
from flashsim.device.profile import DevicePoint, DeviceProfile
from flashsim.errors import InputError

FIO_DIR = Path(__file__).resolve().parents[2] / "configs" / "devices" / "fio-local-virtio"


@pytest.mark.disk
def test_calibrate_smoke_on_a_temp_file(tmp_path, capsys):
    data, out = tmp_path / "data.bin", tmp_path / "dev.yaml"
    code = main(["calibrate", "--file", str(data), "--size", "8m", "--out", str(out),
                 "--chunks", "4k,64k", "--qd", "1,4", "--duration", "0.05", "--warmup", "0.01",
                 "--repeats", "2", "--no-fit", "--json"])
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
                 "--repeats", "2", "--batch-reads", "1,8", "--no-fit", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    profile = DeviceProfile.load(out)
    batch = {(p.chunk_bytes, p.queue_depth, p.batch_reads): p for p in profile.points
             if p.batch_reads is not None}
    # batches of 1 read only at QD 1; of 8 reads at QD 1 and 4
    assert sorted(batch) == [(4096, 1, 1), (4096, 1, 8), (4096, 4, 8), (65536, 1, 1),
                             (65536, 1, 8), (65536, 4, 8)]
    assert payload["n_points"] == 4 + 6
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
def test_grid_parts_deal_out_one_round_without_overlap(tmp_path):
    """Parts j of k of one round (same seed) measure every point exactly once together."""
    from flashsim.device.calibrate import calibrate

    data = tmp_path / "data.bin"
    kw = dict(size_bytes=8 << 20, chunks=[4096, 65536], qds=[1, 4], duration_s=0.01,
              warmup_s=0.0, repeats=1, seed=3, quiet=True, batch_reads=(1, 8))
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

    from flashsim.device.calibrate import calibrate

    data = tmp_path / "data.bin"
    kw = dict(size_bytes=8 << 20, chunks=[4096, 65536], qds=[1, 4], duration_s=0.01,
              warmup_s=0.0, repeats=3, seed=5, quiet=True)
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
