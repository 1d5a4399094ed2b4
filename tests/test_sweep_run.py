"""Sweep runs: result files, the combined tables, failures, and resuming after kill -9 / Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flashsim import __version__
from flashsim.cli import main
from flashsim.sweep.api import run_sweep
from flashsim.sweep.store import LOCK_FILE, ResultStore
from sweep_fixtures import comparable, smoke_dict, write_yaml


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smoke")
    spec = write_yaml(folder, smoke_dict())
    outcome = run_sweep(spec, folder / "out", workers=1, quiet=True)
    return spec, outcome


def test_every_run_has_one_parquet_file_with_its_config_and_version(smoke):
    _, outcome = smoke
    assert outcome.n_runs == outcome.n_ran == 8 and not outcome.failed
    files = sorted((outcome.out_dir / "runs").glob("*.parquet"))
    assert [f.stem for f in files] == sorted(outcome.results["run_id"])
    meta = json.loads(pq.read_schema(files[0]).metadata[b"flashsim"])
    assert meta["status"] == "ok" and meta["flashsim_version"] == __version__
    assert meta["config"]["run_id"] == files[0].stem
    assert meta["config"]["queue_depth"] in (4, 32)
    tokens = pq.read_table(files[0]).to_pandas()
    assert len(tokens) == 6  # max_tokens: 6
    assert meta["summary"]["n_tokens"] == 6


def test_results_match_the_layout_library_and_the_fixed_host_rates(smoke):
    from flashsim.layout.registry import make_layout
    from flashsim.trace.format import ActivationTrace

    _, outcome = smoke
    res = outcome.results.set_index("run_id")
    row = res[(res["layout"] == "windowed+bundled") & (res["window"] == 2)].iloc[0]
    config = json.loads(pq.read_schema(outcome.out_dir / "runs" / f"{row.name}.parquet")
                        .metadata[b"flashsim"])["config"]
    trace = ActivationTrace.load(config["trace_path"]).head(6)
    # merge_gap: auto (the default) resolved for the run's device and queue depth
    assert config["merge_gap_auto"] and row["merge_gap_bytes"] == config["merge_gap_bytes"]
    plan = make_layout("windowed+bundled", window=2, block_bytes=4096,
                       merge_gap_bytes=config["merge_gap_bytes"]).plan(trace)
    assert row["bytes_per_token"] == pytest.approx(plan.bytes_per_token().mean())
    assert row["reads_per_token"] == pytest.approx(plan.reads_per_token().mean())
    naive = res[res["layout"] == "naive"].iloc[0]
    assert naive["bytes_per_token"] == trace.geometry.ffn_bytes  # naive reads the whole FFN
    tokens = pd.read_parquet(outcome.out_dir / "tokens.parquet")
    mine = tokens[tokens["run_id"] == row.name]
    # memcpy fixed at 10 GB/s in smoke.yaml: mem ms = moved bytes / 1e10 s
    np.testing.assert_allclose(mine["mem_ms"], mine["mem_moved_bytes"] / 1e10 * 1e3)
    np.testing.assert_allclose(mine["total_ms"],
                               mine["io_ms"] + mine["mem_ms"] + mine["compute_ms"])
    # compute fixed at 20 us per layer + 5 ns per neuron: at least the fixed part
    assert (mine["compute_ms"] >= 20e-3 * trace.geometry.n_layers - 1e-12).all()
    csv = pd.read_csv(outcome.out_dir / "results.csv")
    assert list(csv["run_id"]) == list(outcome.results["run_id"])


def test_rerunning_skips_finished_runs_and_changes_nothing(smoke):
    spec, outcome = smoke
    again = run_sweep(spec, outcome.out_dir, workers=1, quiet=True)
    assert (again.n_skipped, again.n_ran) == (8, 0)
    pd.testing.assert_frame_equal(comparable(again.results), comparable(outcome.results))


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    # a 1-byte DRAM budget cannot hold one token's neurons: that run raises
    spec = write_yaml(tmp_path, smoke_dict(dram_budgets=["1", None], grid=None))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_runs"] == 12 and payload["n_failed"] == 4
    assert {f["layout"] for f in payload["failed"]} == {"windowed+bundled"}
    assert all("budget" in f["error"] for f in payload["failed"])
    results = pd.read_parquet(out / "results.parquet")
    failed = results[results["status"] == "failed"]
    assert set(failed["dram_budget_bytes"]) == {1}
    assert (results[results["status"] == "ok"]["bytes_per_token"] > 0).all()
    store = ResultStore(out)
    assert store.finished(results["run_id"]) == set(results[results["status"] == "ok"]["run_id"])


def _start(spec, out, workers):
    env = dict(os.environ, CI="1")
    return subprocess.Popen([sys.executable, "-m", "flashsim", "sweep", str(spec), "--out",
                             str(out), "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _processes_mentioning(text):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


def _open_files(pid):
    names = []
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            names.append(os.readlink(fd))
        except OSError:
            pass
    return names


# 396 runs, ~4 s in all on one core here, so the kill lands mid-sweep even when this test
# process is starved for a while on a loaded machine (48 short runs once finished first,
# and 112 did once the fast path doubled its speed)
LONG = dict(layouts=["windowed+bundled", "windowed", "sparse"], windows=list(range(1, 17)),
            queue_depths=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64], max_tokens=6)
N_LONG = 2 * 16 * 12 + 12  # the windowed layouts at every window, sparse at every QD


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    spec = write_yaml(folder, smoke_dict(**LONG))
    return run_sweep(spec, folder / "out", workers=1, quiet=True, plot=False)


@pytest.mark.slow
@pytest.mark.parametrize("sig, workers", [(signal.SIGKILL, 2), (signal.SIGINT, 1)])
def test_interrupted_sweep_resumes_without_losing_runs(tmp_path, sig, workers, uninterrupted):
    spec = write_yaml(tmp_path, smoke_dict(**LONG))
    out = tmp_path / "killed"
    proc = _start(spec, out, workers)
    runs = out / "runs"
    deadline = time.monotonic() + 120
    while not (runs.is_dir() and any(runs.glob("*.parquet"))):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    if workers > 1:
        assert len(_processes_mentioning(str(out))) >= 1 + workers
        lock = str((out / LOCK_FILE).resolve())
        for pid in set(_processes_mentioning(str(out))) - {str(proc.pid)}:
            assert lock not in _open_files(pid), "a pool worker holds the folder lock"
        assert lock in _open_files(str(proc.pid))
    os.kill(proc.pid, sig)
    code = proc.wait(60)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    finished = ResultStore(out).finished(p.stem for p in runs.glob("*.parquet"))
    assert 0 < len(finished) < N_LONG
    assert not (out / "results.parquet").exists()
    if workers > 1:  # worker processes die with the sweep (their command line is the sweep's)
        deadline = time.monotonic() + 10
        while _processes_mentioning(str(out)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_mentioning(str(out)) == []

    resumed = run_sweep(spec, out, workers=1, quiet=True, plot=False)
    assert resumed.n_skipped == len(finished) and resumed.n_ran == N_LONG - len(finished)
    assert not list(runs.glob(".flashsim-tmp-*"))  # a killed write leaves no litter
    whole = uninterrupted
    pd.testing.assert_frame_equal(comparable(resumed.results), comparable(whole.results))
    pd.testing.assert_frame_equal(comparable(pd.read_parquet(out / "tokens.parquet")),
                                  comparable(pd.read_parquet(whole.out_dir / "tokens.parquet")))


def test_one_sweep_at_a_time_per_folder(tmp_path, capsys):
    spec = write_yaml(tmp_path, smoke_dict(layouts=["sparse"], queue_depths=[8]))
    out = tmp_path / "out"
    store = ResultStore(out)
    store.create()
    with store.locked():
        assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 2
    assert "another flashsim sweep is writing to this folder" in capsys.readouterr().err
    assert not list((out / "runs").iterdir())
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1"]) == 0
