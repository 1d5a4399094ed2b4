"""The Dask executor: the same runs on a LocalCluster give the same results as local processes."""

from __future__ import annotations

import pandas as pd
import pytest

from flashsim.sweep.api import run_sweep
from sweep_fixtures import comparable, smoke_dict, write_yaml

pytestmark = pytest.mark.dask
pytest.importorskip("distributed", reason="the dask extra is installed in CI")


def test_dask_local_cluster_equals_local_processes(tmp_path):
    spec = write_yaml(tmp_path, smoke_dict())
    local = run_sweep(spec, tmp_path / "local", workers=2, quiet=True, plot=False)
    dask = run_sweep(spec, tmp_path / "dask", executor="dask", workers=2, quiet=True,
                     plot=False, dask_processes=False)
    assert dask.n_ran == local.n_ran == 8 and not dask.failed
    pd.testing.assert_frame_equal(comparable(dask.results), comparable(local.results))
    pd.testing.assert_frame_equal(
        comparable(pd.read_parquet(tmp_path / "dask" / "tokens.parquet")),
        comparable(pd.read_parquet(tmp_path / "local" / "tokens.parquet")))


def test_dask_scheduler_address(tmp_path):
    from distributed import LocalCluster

    spec = write_yaml(tmp_path, smoke_dict(layouts=["sparse"], queue_depths=[8]))
    local = run_sweep(spec, tmp_path / "local", workers=1, quiet=True, plot=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        remote = run_sweep(spec, tmp_path / "remote", executor="dask",
                           scheduler=cluster.scheduler_address, quiet=True, plot=False)
    assert remote.n_ran == 1
    pd.testing.assert_frame_equal(comparable(remote.results), comparable(local.results))


def test_missing_dask_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import importlib.util

    from flashsim.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real(name, *a))
    spec = write_yaml(tmp_path, smoke_dict())
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--executor", "dask"]) == 2
    assert "pip install 'flashsim[dask]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_scheduler_address_writes_nothing(tmp_path, capsys):
    from flashsim.cli import main

    spec = write_yaml(tmp_path, smoke_dict())
    out = tmp_path / "o"
    assert main(["sweep", str(spec), "--out", str(out), "--executor", "dask",
                 "--scheduler", "nonsense://x"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler: cannot reach the Dask scheduler" in err and err.count("\n") == 1
    assert not out.exists()
