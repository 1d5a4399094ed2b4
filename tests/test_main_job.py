"""`flashsim run`: every layout on the bundled trace and device, tables, results and figure."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from flashsim.cli import main
from flashsim.layout.registry import COMPARE_ORDER
from sweep_fixtures import DEFAULT, TRACE, TRAIN_TRACE, write_yaml


@pytest.fixture(scope="module")
def short_default(tmp_path_factory):
    """The bundled default.yaml on the first 8 generated tokens (device path made absolute)."""
    folder = tmp_path_factory.mktemp("main")
    data = yaml.safe_load(DEFAULT.read_text())
    data["devices"] = [str((DEFAULT.parent / d).resolve()) for d in data["devices"]]
    data["traces"] = [TRACE]
    data["train_trace"] = TRAIN_TRACE
    data["max_tokens"] = 8
    return write_yaml(folder, data, "default.yaml")


@pytest.fixture(scope="module")
def first_run(short_default, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "default"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", str(short_default), "--out", str(out), "--json", "--workers", "1"])
    return code, json.loads(buf.getvalue()), out


def test_run_compares_every_layout_in_paper_order(first_run):
    code, payload, out = first_run
    assert code == 0 and payload["n_failed"] == 0 and payload["n_runs"] == len(COMPARE_ORDER)
    (group,) = payload["groups"]
    assert [r["layout"] for r in group["rows"]] == list(COMPARE_ORDER)
    assert group["queue_depth"] == 32 and group["neuron_set"] == "predicted"
    assert all(r["n_tokens"] == 8 for r in group["rows"])


def test_naive_reads_the_whole_ffn_and_hybrid_half(first_run):
    from flashsim.sweep.spec import resolve_path
    from flashsim.trace.format import ActivationTrace

    _, payload, _ = first_run
    rows = {r["layout"]: r for r in payload["groups"][0]["rows"]}
    ffn_bytes = ActivationTrace.load(resolve_path(TRACE, DEFAULT.parent)).geometry.ffn_bytes
    assert rows["naive"]["mb_per_token"] == pytest.approx(ffn_bytes / 1e6)
    assert rows["naive"]["dram_resident_mb"] == 0
    assert rows["hybrid"]["mb_per_token"] == pytest.approx(ffn_bytes / 2e6)
    assert rows["hybrid"]["dram_resident_mb"] == pytest.approx(ffn_bytes / 2e6)
    # the sparse layouts read less than the whole FFN per token, windowing less than sparse
    assert rows["sparse"]["mb_per_token"] < rows["naive"]["mb_per_token"]
    assert rows["windowed"]["mb_per_token"] < rows["sparse"]["mb_per_token"]


def test_run_writes_results_tables_and_figure(first_run):
    _, payload, out = first_run
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["layout"]) == sorted(COMPARE_ORDER)
    assert (results["status"] == "ok").all()
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "tables.txt").read_text()
    assert "like the paper's Table 2" in text and "like the paper's Table 3" in text
    assert all(name in text for name in COMPARE_ORDER)
    rates = json.loads((out / "host_rates.json").read_text())
    (entry,) = rates.values()
    assert entry["memcpy_bytes_per_s"] > 0 and entry["compute_s_per_neuron"] >= 0


def test_second_run_reuses_results_and_rates(first_run, short_default, capsys):
    _, payload, out = first_run
    before = (out / "tables.txt").read_text()
    assert main(["run", str(short_default), "--out", str(out), "--workers", "1"]) == 0
    human = capsys.readouterr().out
    assert "I/O (like the paper's Table 2):" in human and "results:" in human
    assert (out / "tables.txt").read_text() == before


def test_missing_run_config_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "run config does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
