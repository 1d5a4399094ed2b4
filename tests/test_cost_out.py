"""`simulate --out` / `compare --out`: per-token rows and summaries as CSV or Parquet."""

import json

import pandas as pd
import pytest

from flashsim.cli import main, run_json
from flashsim.cost.compute import ComputeModel
from flashsim.cost.export import summary_path

BASE = ["--device", "m1max-paper", "--memcpy-gb-s", "10"]


@pytest.fixture(autouse=True)
def fixed_compute(monkeypatch):
    model = ComputeModel(1e-5, 1e-8, "fixed")
    monkeypatch.setattr("flashsim.cost.simulate.calibrate_compute", lambda geometry: model)


def test_simulate_writes_tokens_and_summary_csv(tmp_path):
    out = tmp_path / "sim.csv"
    payload = json.loads(run_json(["simulate", *BASE, "--layout", "sparse", "--out", str(out)]))
    assert payload["out"] == {"tokens": str(out), "summary": str(tmp_path / "sim-summary.csv")}
    tokens, summary = pd.read_csv(out), pd.read_csv(summary_path(out))
    assert len(tokens) == payload["n_tokens"] and set(tokens["layout"]) == {"sparse"}
    assert tokens["total_ms"].tolist() == pytest.approx([t["total_ms"] for t in payload["tokens"]])
    assert len(summary) == 1 and summary["total_ms_mean"][0] == pytest.approx(
        payload["total_ms_mean"])
    assert summary["merge_gap_break_even.gap_bytes"][0] == payload["merge_gap_bytes"]


def test_compare_writes_one_summary_row_per_layout_parquet(tmp_path):
    out = tmp_path / "cmp.parquet"
    payload = json.loads(run_json(["compare", *BASE, "--layouts", "naive,sparse",
                                   "--out", str(out)]))
    tokens, summary = pd.read_parquet(out), pd.read_parquet(summary_path(out))
    assert summary["layout"].tolist() == ["naive", "sparse"]
    assert summary["io_ms_mean"].tolist() == [r["io_ms_mean"] for r in payload["rows"]]
    assert tokens.groupby("layout").size().to_dict() == {"naive": 256, "sparse": 256}


@pytest.mark.parametrize("name", ["sim.txt", "sim", "missing/sim.csv"])
def test_a_bad_out_is_one_line_and_writes_nothing(tmp_path, capsys, name):
    code = main(["simulate", *BASE, "--out", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out" in err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_neither_file(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError("device went away")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(SystemExit):
        run_json(["simulate", *BASE, "--layout", "sparse", "--out", str(tmp_path / "s.csv")])
    assert list(tmp_path.iterdir()) == []
