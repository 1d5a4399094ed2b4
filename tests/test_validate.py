"""Validation on the real disk: a small real run gives every column, the CLI, bad input,
a calibrated run, the warm-up before each block."""

from __future__ import annotations

import json
import os
from collections import namedtuple

import numpy as np
import pytest

pytest.importorskip("torch", reason="the tiny test model is built with transformers")
pytestmark = pytest.mark.disk  # real O_DIRECT reads of stores built on this disk

from flashsim.cli import main  # noqa: E402
from flashsim.errors import InputError  # noqa: E402
from flashsim.io.reader import open_reader  # noqa: E402
from flashsim.layout.registry import make_layout  # noqa: E402
from flashsim.loader.store import build_store  # noqa: E402
from flashsim.model.checkpoint import load_checkpoint  # noqa: E402
from flashsim.trace.capture import capture_trace  # noqa: E402
from flashsim.validation import measure  # noqa: E402
from flashsim.validation.calibration import calibration_grid  # noqa: E402
from flashsim.validation.spec import CALIBRATION_PIECES  # noqa: E402
from flashsim.validation.validate import validate  # noqa: E402
from opt_builders import build_random_opt, random_predictors  # noqa: E402

TEXT = ("The interpreter reads a line of input, evaluates it and prints the result. "
        "Modules can import other modules, and functions may be nested inside classes. ") * 20
PROFILE = "flashsim/data/devices/m1max-paper.yaml"
COLUMNS = ("layout", "queue_depth", "measured_io_ms_p50", "predicted_io_ms_p50",
           "error_p50_pct", "measured_io_ms_p99", "predicted_io_ms_p99", "noise_p50_pct",
           "error_p99_pct", "ratio")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    folder = build_random_opt(root / "m", fp16=True, tokenizer_text=TEXT, max_pos=128)
    random_predictors(2, 64, 256, threshold=0.5).save(folder / "predictors.safetensors")
    ref = capture_trace(folder, "The interpreter reads a line", 8, seed=1, quiet=True)
    train = capture_trace(folder, "Modules can import other modules", 30, seed=2, quiet=True)
    ref.save(root / "ref.trace")
    train.save(root / "train.trace")
    return namedtuple("M", "root folder ref train")(root, folder, ref, train)


def test_trace_head_and_grid(model):
    head = model.ref.head(3)
    assert head.meta["truncated_to_tokens"] == head.n_tokens
    assert head.n_tokens == model.ref.n_prompt_tokens + 3
    assert head.predicted[1][head.n_tokens - 1].tolist() == \
        model.ref.predicted[1][head.n_tokens - 1].tolist()
    plans = [make_layout("bundled").plan(model.ref), make_layout("naive").plan(model.ref)]
    chunks = calibration_grid(plans, [1, 8])
    assert chunks[0] == 4096 and all(c & (c - 1) == 0 for c in chunks)
    assert max(chunks) <= 2 ** int(np.ceil(np.log2(max(p.length_bytes.max() for p in plans))))


def test_small_validation_run_has_every_column(model, tmp_path):
    result = validate(model.ref, ["naive", "windowed+bundled", "coactivation"], [1, 8],
                      store=tmp_path / "stores", build_stores=True, model_dir=model.folder,
                      profile=PROFILE, reps=2, tokens=4, train_trace=model.train)
    assert [(r["layout"], r["queue_depth"]) for r in result.rows] == [
        ("naive", 1), ("naive", 8), ("windowed+bundled", 1), ("windowed+bundled", 8),
        ("coactivation", 1), ("coactivation", 8)]
    for row in result.rows:
        for key in COLUMNS:
            assert row[key] is not None, key
        for key in ("measured_io_ms_p50", "measured_io_ms_p99", "predicted_io_ms_p50"):
            assert np.isfinite(row[key]) and row[key] > 0
        assert row["n_tokens"] == 4
    assert result.info["o_direct"] is True
    # stores are built once per placement and reused on the next run
    stores = sorted(p.name for p in (tmp_path / "stores").glob("*.ffn"))
    assert len(stores) == 3
    again = validate(model.ref, ["naive"], [1], store=tmp_path / "stores",
                     model_dir=model.folder, profile=PROFILE, reps=1, tokens=2)
    assert sorted(p.name for p in (tmp_path / "stores").glob("*.ffn")) == stores
    assert again.rows[0]["noise_p50_pct"] is None


def test_validate_cli_json_and_report(model, tmp_path, capsys):
    capsys.readouterr()
    code = main(["validate", "--trace", str(model.root / "ref.trace"), "--store",
                 str(tmp_path / "s"), "--build-stores", "--model", str(model.folder), "--device",
                 PROFILE, "--layouts", "sparse,bundled", "--qd", "1,8", "--reps", "1", "--tokens", "3",
                 "--report", str(tmp_path / "r.png"), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)
    assert len(payload["rows"]) == 4 and payload["tokens"] == 3
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("extra, message", [
    ([], "no device profile"),
    (["--device", "nowhere.yaml"], "device profile does not exist"),
    (["--device", PROFILE, "--layouts", "bogus"], "unknown layout"),
    (["--device", PROFILE, "--qd", "0"], "--qd"),
    (["--device", PROFILE, "--report", "x.pdf"], "report"),
    (["--calibrate", "--calibration-pieces", "0"], "--calibration-pieces"),
])
def test_validate_bad_input_is_one_line(model, tmp_path, capsys, extra, message):
    capsys.readouterr()
    code = main(["validate", "--trace", str(model.root / "ref.trace"), "--store",
                 str(tmp_path / "s"), "--model", str(model.folder), "--tokens", "2", *extra])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err


def test_store_file_of_another_layout_is_refused(model, tmp_path):
    s = build_store(load_checkpoint(model.folder), make_layout("sparse"), tmp_path / "s.ffn")
    with pytest.raises(InputError, match="placement"):
        validate(model.ref, ["bundled"], [1], store=s.path, profile=PROFILE, reps=1, tokens=2)


def test_calibrated_run_fits_a_profile_on_the_store(model, tmp_path):
    result = validate(model.ref, ["bundled"], [1, 4], store=tmp_path / "s", build_stores=True,
                      model_dir=model.folder, calibrate=True, calibrate_on="store",
                      calibration_duration_s=0.02, reps=2, tokens=2, quick_fit=True)
    prof = result.info["profile"]
    assert prof["calibrated"] is True and prof["calibrated_on"].endswith(".ffn")
    assert {p["queue_depth"] for p in prof["points"]} == {1, 2, 4} and prof["rounds"] == 2
    # every point measured in CALIBRATION_PIECES pieces per rep, each piece kept for the median
    assert prof["pieces_per_round"] == CALIBRATION_PIECES == 4
    assert all(p["repeats"] == 2 * CALIBRATION_PIECES for p in prof["points"])
    # short-batch points at the plans' QDs (1, 4), QD cut to the batch size, next to the
    # steady-state ones; the fit reports an error for each
    batch = {(p["queue_depth"], p["batch_reads"], p["pattern"]) for p in prof["points"]
             if p["batch_reads"]}
    assert {(1, 1, "random"), (1, 4, "random"), (4, 4, "random"), (1, 16, "random"),
            (4, 16, "random"), (1, 64, "random"), (4, 64, "random")} <= batch
    # clustered batches (every other chunk from a random start) where the store holds 2n chunks
    room = os.path.getsize(prof["calibrated_on"]) // 4096
    clustered = {(4, n, "clustered") for n in (16, 64) if room >= 2 * n}
    assert {b for b in batch if b[2] == "clustered" and b[1] in (16, 64)} >= clustered
    assert all(b[2] != "clustered" or room >= 2 * b[1] for b in batch)
    assert all(p["batch_makespan_us"] > 0 for p in prof["points"] if p["batch_reads"])
    assert len(prof["point_errors"]) == len(prof["points"])
    assert "batch_start_us" in prof["params"]
    assert all(p["throughput_mb_s"] > 0 for p in prof["points"])
    assert prof["params"]["n_units"] >= 1
    assert all(r["predicted_io_ms_p50"] > 0 for r in result.rows)


def test_drift_probe_scales_the_replay_rows_and_leaves_no_file(model, tmp_path):
    """With a given profile and the drift probe, its own points are re-measured before the
    row blocks; the rows are the model times the median ratio (the unscaled errors kept)
    and the probe's file is gone."""
    from flashsim.device.profile import DeviceProfile
    from flashsim.validation.drift_probe import PROBE_FILE

    prof = DeviceProfile.load("flashsim/data/devices/local-virtio.yaml")
    measured = prof.measured.model_copy(update={  # a small probe file, quickly
        "file_path": str(tmp_path / "gone.bin"), "file_bytes": 8 << 20,
        "point_duration_s": 0.02, "warmup_s": 0.01})
    prof = prof.model_copy(update={"measured": measured})
    kwargs = dict(store=tmp_path / "s", build_stores=True, model_dir=model.folder,
                  profile=prof, reps=2, tokens=2)
    plain = validate(model.ref, ["bundled"], [1, 4], **kwargs)
    probed = validate(model.ref, ["bundled"], [1, 4], drift_probe=True, **kwargs)
    info = probed.info["profile"]["drift_probe"]
    assert info["measurements"] > 0 and info["factor"] > 0 and info["qds"] == [1, 4]
    assert not (tmp_path / "s" / PROBE_FILE).exists()
    assert "drift_probe" not in plain.info["profile"]
    for a, b in zip(plain.rows, probed.rows):  # the same plans: the prediction × the factor
        assert b["predicted_io_ms_p50"] == pytest.approx(
            a["predicted_io_ms_p50"] * info["factor"], rel=1e-9)
        assert np.isfinite(b["undrifted_error_p50_pct"])
        assert np.isfinite(b["undrifted_error_p99_pct"])


def test_warm_up_reads_at_least_the_tokens_and_the_time(model, tmp_path, monkeypatch):
    layout = make_layout("bundled")
    store = build_store(load_checkpoint(model.folder), layout, tmp_path / "b.ffn")
    plan = layout.plan(model.ref)
    calls = []
    real = measure.measure_plan

    def recording(rd, p, q, tokens=None):
        calls.append(list(tokens))
        return real(rd, p, q, tokens)

    monkeypatch.setattr(measure, "measure_plan", recording)
    reader = open_reader(store.path)
    try:
        monkeypatch.setattr(measure, "SWITCH_WARMUP_S", 0.0)
        assert measure.warm_up(reader, plan, 4, 1) == measure.SWITCH_WARMUP_TOKENS == 2
        # the tokens just before the block, wrapping around the plan's start
        assert calls == [[0], [plan.n_tokens - 1]]
        calls.clear()
        # never reached: capped at every token
        monkeypatch.setattr(measure, "SWITCH_WARMUP_S", 60.0)
        assert measure.warm_up(reader, plan, 4, 3) == plan.n_tokens
        assert sorted(t for c in calls for t in c) == list(range(plan.n_tokens))
    finally:
        reader.close()
