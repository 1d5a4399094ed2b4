"""End-to-end validation: the real decode from flash vs the simulator per part. Without the
disk: the part statistics by hand, the plan-vs-reads check, the batch gaps, the replay's
idle gap. On the disk (a small random OPT): every column of every row, an injected read
mismatch, the CLI, bad input in one line with nothing left behind."""

from __future__ import annotations

import json
import time
from collections import namedtuple
from types import SimpleNamespace

import numpy as np
import pytest

from flashsim.cli import main
from flashsim.device.gap import break_even_gap_bytes
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace
from flashsim.validation import e2e_measure
from flashsim.validation.e2e_measure import PARTS, batch_gaps_s, check_reads
from flashsim.validation.e2e_rows import part_stats
from flashsim.validation.measure import measure_plan
from flashsim.validation.spec import ValidationSpec

PROFILE = "flashsim/data/devices/m1max-paper.yaml"
TEXT = ("The interpreter reads a line of input, evaluates it and prints the result. "
        "Modules can import other modules, and functions may be nested inside classes. ") * 20
PROMPT = "The interpreter reads a line"


def tiny_trace(n_generated: int = 3) -> ActivationTrace:
    """One prompt token and `n_generated` tokens of a 2-layer model; layer 1 of the second
    generated token predicts nothing (an empty batch)."""
    g = ModelGeometry("tiny", 2, 64, 256, 2)
    sets = [[np.array([1, 2, 40, 200])] + [np.array([3, 4, 90 + t]) for t in range(n_generated)],
            [np.array([5])] + [np.array([7, 8 + t]) if t != 1 else np.array([], np.int64)
                               for t in range(n_generated)]]
    layers = [NeuronSets.from_lists(s) for s in sets]
    return ActivationTrace(g, np.arange(n_generated + 1, dtype=np.int32), 1, layers, layers,
                           {"synthetic": False})


# ---- without the disk ---------------------------------------------------------------------

def test_part_stats_by_hand():
    measured = np.array([[1.0, 2.0, 4.0, 10.0],
                         [3.0, 2.0, 4.0, 12.0]]) * 1e-3  # per-token medians 2, 2, 4, 11 ms
    predicted = np.array([2.2, 1.8, 5.0, 11.0]) * 1e-3   # errors 10, 10, 25, 0 %
    row = part_stats("mem", measured, predicted)
    assert row["mem_error_p50_pct"] == pytest.approx(10.0)
    assert row["mem_bias_pct"] == pytest.approx(5.0)  # signed: +10, -10, +25, 0 %
    m99, p99 = np.percentile([2, 2, 4, 11], 99), np.percentile([2.2, 1.8, 5, 11], 99)
    assert row["measured_mem_ms_p99"] == pytest.approx(m99)
    assert row["predicted_mem_ms_p50"] == pytest.approx(3.6)
    assert row["mem_error_p99_pct"] == pytest.approx(abs(p99 - m99) / m99 * 100)
    # leave-one-out with 2 reps: |t_r - t_other| / t_other: token 0 → 2/3, 2; token 3 → 2/12,
    # 2/10; tokens 1, 2 → 0 (×2). Sorted: 0, 0, 0, 0, 1/6, … → median (0 + 1/6) / 2
    assert row["mem_noise_p50_pct"] == pytest.approx(100 / 12)
    assert not [k for k in row if "_io_" in k or k.startswith("error")]


def test_part_stats_bias_is_the_signed_median():
    measured = np.array([[1.0, 2.0, 4.0, 10.0]]) * 1e-3
    predicted = np.array([1.1, 1.8, 5.0, 10.0]) * 1e-3  # +10, -10, +25, 0 %
    row = part_stats("total", measured, predicted)
    assert row["total_bias_pct"] == pytest.approx(5.0)
    assert row["total_error_p50_pct"] == pytest.approx(10.0)
    assert row["total_noise_p50_pct"] is None  # one repetition: no noise floor


def plan_reads(plan, n_prompt):
    return {(n_prompt + t, l): plan.batch_reads(t, l)
            for t in range(plan.n_tokens) for l in range(plan.n_layers)}


def test_check_reads_fires_on_any_difference():
    trace = tiny_trace()
    plan = make_layout("bundled").plan(trace)
    reads = plan_reads(plan, 1)
    check_reads(plan, reads, 1, "bundled QD8")  # the plan's own reads pass
    off, length = reads[(2, 0)]
    bad = dict(reads)
    bad[(2, 0)] = (off + 4096, length)
    with pytest.raises(RuntimeError, match="token 1 layer 0"):
        check_reads(plan, bad, 1, "bundled QD8")
    missing = {k: v for k, v in reads.items() if k != (3, 1)}
    with pytest.raises(RuntimeError, match="token 2 layer 1 .no reads."):
        check_reads(plan, missing, 1, "bundled QD8")
    with pytest.raises(RuntimeError):  # keyed as if there were no prompt
        check_reads(plan, reads, 0, "bundled QD8")


def test_batch_gaps_from_stamps_and_derived():
    # two fed tokens (the first a prompt token), 2 layers: gaps 0.5, then 1.0 and 0.25
    stamps = {(0, 0): (0.0, 1.0), (0, 1): (1.5, 2.0), (1, 0): (3.0, 4.0), (1, 1): (4.25, 5.0)}
    per_token = [{"io_ms": 1.75e3, "mem_ms": 0.0, "compute_ms": 0.0, "total_ms": 3.25e3}]
    gen = SimpleNamespace(batch_times_s=stamps, n_prompt_tokens=1, per_token=per_token)
    gaps, how = batch_gaps_s(gen, 2)
    assert gaps.tolist() == [pytest.approx(np.median([1.0, 0.25]))] and "stamps" in how
    gen = SimpleNamespace(n_prompt_tokens=1, per_token=per_token)
    gaps, how = batch_gaps_s(gen, 2)
    assert gaps.tolist() == [pytest.approx((3.25 - 1.75) / 2)] and "derived" in how


class StampingReader:
    """Records when each batch is issued; every read takes no time."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def read_batch(self, off, length, queue_depth):
        self.calls.append(time.perf_counter())
        return SimpleNamespace(start_s=np.zeros(len(off)), makespan_s=0.0)


def test_replay_idles_before_every_batch():
    plan = make_layout("sparse").plan(tiny_trace())
    assert plan.reads_per_token()[1] > 0 and plan.batch_ptr[4] == plan.batch_ptr[3]  # empty
    reader = StampingReader()
    gap_s = 0.004
    t0 = time.perf_counter()
    measure_plan(reader, plan, 8, gap_s=gap_s)
    spacing = np.diff([t0] + reader.calls)
    # 5 batches with reads (token 1 layer 1 is empty): at least one gap before each, two
    # across the empty batch (the decode's compute runs there too)
    assert len(reader.calls) == 5
    assert spacing.min() >= gap_s
    assert spacing[3] >= 2 * gap_s
    reader = StampingReader()
    measure_plan(reader, plan, 8)  # the default: no idle gap, the same reads
    assert len(reader.calls) == 5


# ---- on the disk ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    pytest.importorskip("torch", reason="the tiny test model is built with transformers")
    from flashsim.trace.capture import capture_trace
    from opt_builders import build_random_opt, random_predictors

    root = tmp_path_factory.mktemp("e2e")
    folder = build_random_opt(root / "m", fp16=True, tokenizer_text=TEXT, max_pos=128)
    random_predictors(2, 64, 256, threshold=0.5).save(folder / "predictors.safetensors")
    train = capture_trace(folder, "Modules can import other modules", 30, seed=2, quiet=True)
    (root / "prompt.txt").write_text(PROMPT)
    return namedtuple("M", "root folder train")(root, folder, train)


def fixed_models():
    from flashsim.cost.compute import ComputeModel

    return {"memcpy_bytes_per_s": 1e10, "compute_model": ComputeModel(2e-5, 1e-7, "fixed")}


@pytest.mark.disk
@pytest.mark.torch
def test_end_to_end_rows_have_every_column(model, tmp_path):
    from flashsim.validation.end_to_end import validate_end_to_end

    result = validate_end_to_end(PROMPT, layouts=["sparse", "windowed+bundled", "coactivation"],
                                 qds=[1, 4], tokens=4, reps=2, store=tmp_path / "s",
                                 build_stores=True,
                                 model_dir=model.folder, profile=PROFILE, seed=3,
                                 train_trace=model.train, simulate_options=fixed_models())
    assert [(r["layout"], r["queue_depth"]) for r in result.rows] == [
        ("sparse", 1), ("sparse", 4), ("windowed+bundled", 1), ("windowed+bundled", 4),
        ("coactivation", 1), ("coactivation", 4)]
    for row in result.rows:
        for part in PARTS:
            for key in (f"measured_{part}_ms_p50", f"measured_{part}_ms_p99",
                        f"predicted_{part}_ms_p50", f"predicted_{part}_ms_p99",
                        f"{part}_error_p50_pct", f"{part}_error_p99_pct", f"{part}_bias_pct",
                        f"{part}_noise_p50_pct"):
                assert row[key] is not None and np.isfinite(row[key]), key
            assert row[f"measured_{part}_ms_p50"] > 0
        # the merge gap is the profile's break-even at the row's QD (auto, as simulate)
        assert row["merge_gap_auto"] is True
        assert row["merge_gap_bytes"] == break_even_gap_bytes(PROFILE, row["queue_depth"], 4096)
        assert row["n_tokens"] == 4 and row["reps"] == 2 and row["batch_gap_us_p50"] > 0
    for (name, q), parts in result.per_token.items():
        m = {p: parts[p]["measured_s"] for p in PARTS}
        assert m["io"].shape == (2, 4)
        # the runtime's parts add up to its total; so do the simulator's
        assert np.allclose(m["io"] + m["mem"] + m["compute"], m["total"])
        pred = {p: np.median(np.atleast_2d(parts[p]["predicted_s"]), axis=0) for p in PARTS}
        assert np.allclose(pred["io"] + pred["mem"] + pred["compute"], pred["total"])
    info = result.info
    assert info["tokens"] == 4 and info["reps"] == 2 and info["o_direct"] is True
    assert info["batch_gap"]["median_us"] > 0
    assert info["cost_models"]["memcpy_bytes_per_s"] == 1e10
    # the decode's compute after its waits, calibrated on two rows of the calibration text
    wait = info["wait_cost"]
    assert [(r["layout"], r["queue_depth"]) for r in wait["calibration"]["rows"]] == [
        ("sparse", 1), ("windowed+bundled", 32)]
    assert wait["compute_per_batch_us"] >= 0 and wait["compute_per_io_s"] >= 0
    for row in result.rows:  # and what the same rows give without it
        assert all(np.isfinite(row[f"plain_{p}_error_p50_pct"]) for p in PARTS)
    assert len(list((tmp_path / "s").glob("*.ffn"))) == 3  # one store per placement


@pytest.mark.disk
@pytest.mark.torch
def test_end_to_end_refuses_a_decode_that_read_other_bytes(model, tmp_path, monkeypatch):
    from flashsim.validation.end_to_end import validate_end_to_end

    real = e2e_measure.generate_from_flash
    calls = []

    def tampered(*args, **kwargs):
        gen = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the first timed decode: one read of token 1, layer 0 moves
            key = (gen.n_prompt_tokens + 1, 0)
            off, length = gen.reads[key]
            gen.reads[key] = ((off + 4096, length) if len(off) else
                              (np.array([0], np.int64), np.array([4096], np.int64)))
        return gen

    monkeypatch.setattr(e2e_measure, "generate_from_flash", tampered)
    with pytest.raises(RuntimeError, match="token 1 layer 0"):
        validate_end_to_end(PROMPT, layouts=["bundled"], qds=[2], tokens=3, reps=1,
                            store=tmp_path / "s", build_stores=True, model_dir=model.folder,
                            profile=PROFILE, simulate_options=fixed_models())


@pytest.mark.disk
@pytest.mark.torch
@pytest.mark.slow
def test_end_to_end_calibrated_in_the_run(model, tmp_path):
    from flashsim.validation.end_to_end import validate_end_to_end

    result = validate_end_to_end(PROMPT, layouts=["bundled"], qds=[1, 2], tokens=2, reps=2,
                                 store=tmp_path / "s", build_stores=True,
                                 model_dir=model.folder, calibrate=True,
                                 calibrate_on="store", calibration_duration_s=0.02,
                                 quick_fit=True, merge_gap=0, simulate_options=fixed_models())
    prof = result.info["profile"]
    assert prof["calibrated"] is True and prof["calibrated_on"].endswith(".ffn")
    assert prof["rounds"] == 2 and {p["queue_depth"] for p in prof["points"]} == {1, 2}
    assert [r["merge_gap_bytes"] for r in result.rows] == [0, 0]
    assert all(r["predicted_io_ms_p50"] > 0 for r in result.rows)


@pytest.mark.disk
@pytest.mark.torch
def test_end_to_end_times_its_models_between_the_decodes(model, tmp_path, monkeypatch):
    from flashsim.validation import e2e_models, wait_calibration
    from flashsim.validation.end_to_end import validate_end_to_end

    calls = []

    def logged(module, name, label):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(label) or real(*a, **k))

    logged(e2e_models, "time_memory_management", "memory")
    logged(e2e_models, "time_decode", "compute")
    logged(wait_calibration.WaitRounds, "decode", "wait")
    logged(e2e_measure, "decode", "row")
    result = validate_end_to_end(PROMPT, layouts=["sparse", "bundled"], qds=[2], tokens=3,
                                 reps=2, store=tmp_path / "s", build_stores=True,
                                 model_dir=model.folder, profile=PROFILE, merge_gap=0,
                                 wait_rows=[("sparse", 2)])
    # the reference decode, then per repetition: the memory timing before the first block,
    # the compute timing and the wait calibration's decode before the second
    assert calls == ["row"] + ["memory", "row", "compute", "wait", "row"] * 2
    models = result.info["cost_models"]
    assert "2 rounds between the decodes" in models["mem_source"]
    assert "2 rounds between the decodes" in models["compute_source"]
    assert result.info["wait_cost"]["calibration"]["reps"] == 2
    for row in result.rows:
        assert row["predicted_mem_ms_p50"] > 0 and row["predicted_compute_ms_p50"] > 0


def probed_profile(data_file):
    """The shipped local-virtio profile as if measured on `data_file` (8 MiB), quickly."""
    from flashsim.device.profile import DeviceProfile

    prof = DeviceProfile.load("flashsim/data/devices/local-virtio.yaml")
    measured = prof.measured.model_copy(update={
        "file_path": str(data_file), "file_bytes": 8 << 20, "point_duration_s": 0.02,
        "warmup_s": 0.01})
    return prof.model_copy(update={"measured": measured})


@pytest.mark.disk
@pytest.mark.torch
@pytest.mark.parametrize("own_file", [False, True])
def test_end_to_end_drift_probe_scales_the_model_and_leaves_no_file(model, tmp_path, own_file):
    from flashsim.device.calibrate import ensure_data_file
    from flashsim.validation.drift_probe import PROBE_FILE
    from flashsim.validation.end_to_end import validate_end_to_end

    data = tmp_path / "calib.bin"
    if own_file:  # the profile's calibration file is still there: probed, and kept
        ensure_data_file(data, 8 << 20, seed=0)
    result = validate_end_to_end(PROMPT, layouts=["sparse"], qds=[1, 4], tokens=3, reps=2,
                                 store=tmp_path / "s", build_stores=True,
                                 model_dir=model.folder, profile=probed_profile(data),
                                 merge_gap=0, wait_calibration=False, drift_probe=True,
                                 simulate_options=fixed_models())
    probe = result.info["profile"]["drift_probe"]
    assert probe["file"] == str(data if own_file else tmp_path / "s" / PROBE_FILE)
    assert probe["chunks"] == [4096, 16384, 65536] and probe["qds"] == [1, 4]
    assert probe["measurements"] > 0 and np.isfinite(probe["factor"]) and probe["factor"] > 0
    # steady points at QD 1 and 4 and 16-read batches at QD 1 are in the profile
    assert {(p["queue_depth"], p["batch_reads"]) for p in probe["points"]} >= {(1, None),
                                                                               (4, None)}
    assert data.exists() is own_file and not (tmp_path / "s" / PROBE_FILE).exists()
    for row in result.rows:  # the model scaled by the factor, and what it gives unscaled
        assert all(np.isfinite(row[f"undrifted_{p}_error_p50_pct"]) for p in PARTS)


@pytest.mark.disk
@pytest.mark.torch
def test_end_to_end_without_the_drift_probe_by_default(model, tmp_path):
    from flashsim.validation.end_to_end import validate_end_to_end

    result = validate_end_to_end(PROMPT, layouts=["sparse"], qds=[2], tokens=2, reps=1,
                                 store=tmp_path / "s", build_stores=True,
                                 model_dir=model.folder,
                                 profile=probed_profile(tmp_path / "calib.bin"), merge_gap=0,
                                 wait_calibration=False,
                                 simulate_options=fixed_models())
    assert "drift_probe" not in result.info["profile"]
    assert "undrifted_io_error_p50_pct" not in result.rows[0]
    assert not any((tmp_path / "s").glob("*.bin"))


@pytest.mark.disk
@pytest.mark.torch
def test_end_to_end_cli_json_and_report(model, tmp_path, capsys):
    capsys.readouterr()
    code = main(["validate", "--end-to-end", "--prompt-file", str(model.root / "prompt.txt"),
                 "--store", str(tmp_path / "s"), "--build-stores", "--model", str(model.folder),
                 "--device", PROFILE, "--layouts", "windowed", "--qd", "2", "--tokens", "3",
                 "--reps",
                 "1", "--merge-gap", "8k", "--memcpy-gb-s", "10", "--report",
                 str(tmp_path / "e2e.png"), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)
    (row,) = payload["rows"]
    assert row["layout"] == "windowed" and row["merge_gap_bytes"] == 8192
    assert row["merge_gap_auto"] is False and payload["tokens"] == 3
    assert payload["cost_models"]["memcpy_bytes_per_s"] == 1e10
    assert (tmp_path / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code = main(["validate", "--end-to-end", "--prompt-file", str(model.root / "prompt.txt"),
                 "--store", str(tmp_path / "s"), "--model", str(model.folder), "--device",
                 PROFILE, "--layouts", "windowed", "--qd", "2", "--tokens", "2", "--reps",
                 "1", "--memcpy-gb-s", "10"])
    out, _ = capsys.readouterr()
    assert code == 0 and "windowed" in out and "tot err p50 %" in out


@pytest.mark.parametrize("changes, message", [
    ({"--prompt-file": None}, "no prompt"),
    ({"--prompt-file": "nowhere.txt"}, "prompt file does not exist"),
    ({"--layouts": "naive"}, "reads the dense FFN"),
    ({"--layouts": "bogus"}, "unknown layout"),
    ({"--tokens": "0"}, "--tokens"),
    ({"--tokens": "1000"}, "passes the model's context"),
    ({"--reps": "0"}, "--reps"),
    ({"--qd": "0"}, "--qd"),
    ({"--merge-gap": "lots"}, "not a merge gap"),
    ({"--trace": "x.trace"}, "--trace does not apply"),
    ({"--batch-gap-us": "5"}, "--batch-gap-us does not apply"),
    ({"--report": "x.html"}, "unsupported figure type"),
    ({"--device": None, "--calibrate": ""}, "merge gap auto needs a device profile"),
    ({"--device": "nowhere.yaml"}, "device profile does not exist"),
    ({"--save-profile": "p.json"}, "--save-profile"),
    ({"--save-profile": "p.yaml", "--no-wait-calibration": ""}, "nothing to save"),
    ({"--save-profile": "/nonexistent/p.yaml"}, "--save-profile"),
])
def test_end_to_end_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, changes,
                                                             message):
    (tmp_path / "prompt.txt").write_text(PROMPT)  # the bundled model: a 512-token context
    options = {"--prompt-file": str(tmp_path / "prompt.txt"), "--device": PROFILE,
               "--tokens": "2", **changes}  # None drops an option, "" is a bare flag
    cmd = ["validate", "--end-to-end", "--store", str(tmp_path / "s")]
    for flag, value in options.items():
        cmd += [] if value is None else [flag] if value == "" else [flag, value]
    capsys.readouterr()
    code = main(cmd)
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s").exists()


def test_end_to_end_options_refused_without_the_flag(capsys):
    code = main(["validate", "--store", "/nonexistent/s", "--device", PROFILE,
                 "--prompt-file", "p.txt"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "--prompt-file does not apply" in err
    code = main(["validate", "--store", "/nonexistent/s", "--device", PROFILE,
                 "--batch-gap-us", "-3"])
    _, err = capsys.readouterr()
    assert code == 2 and "--batch-gap-us" in err


@pytest.mark.disk
@pytest.mark.torch
@pytest.mark.skipif("batch_gap_s" not in ValidationSpec.model_fields,
                    reason="needs the ValidationSpec field batch_gap_s")
def test_validate_replay_with_a_batch_gap(model, tmp_path, capsys):
    from flashsim.trace.capture import capture_trace

    capture_trace(model.folder, PROMPT, 3, seed=1, quiet=True).save(tmp_path / "ref.trace")
    capsys.readouterr()
    code = main(["validate", "--trace", str(tmp_path / "ref.trace"), "--store",
                 str(tmp_path / "s"), "--build-stores", "--model", str(model.folder), "--device",
                 PROFILE, "--layouts", "bundled", "--qd", "2", "--reps", "1", "--batch-gap-us", "200",
                 "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["rows"][0]["measured_io_ms_p50"] > 0
