"""`run_sweep`: check a sweep, run what is not finished yet, combine the results.

Order matters for "nothing half-written": the YAML, its files and the executor options are
all checked before the output folder is created; each run's file is written atomically
when it finishes; the combined tables are rewritten at the end of every invocation.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write_text
from ..cliutil import to_jsonable
from ..errors import InputError
from ..progress import progress, progress_shown
from .executors import EXECUTORS, connect_dask, execute
from .grid import expand
from .host import host_rates, save_rates
from .plots import plot_sweep
from .spec import Sweep, load_sweep
from .store import ResultStore

MANIFEST = "sweep.json"
FIGURE = "sweep.png"


@dataclass
class SweepOutcome:
    """What a sweep invocation did and where its results are."""

    out_dir: Path
    n_runs: int
    n_skipped: int
    n_ran: int
    failed: list[dict[str, Any]]
    results: pd.DataFrame = field(repr=False)
    figure: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out_dir), "n_runs": self.n_runs, "n_skipped": self.n_skipped,
                "n_ran": self.n_ran, "n_failed": len(self.failed), "failed": self.failed,
                "results_parquet": str(self.out_dir / "results.parquet"),
                "results_csv": str(self.out_dir / "results.csv"),
                "tokens_parquet": str(self.out_dir / "tokens.parquet"),
                "figure": str(self.figure) if self.figure else None}


def default_out(sweep: Sweep) -> Path:
    """results/<sweep name> under the current folder."""
    return Path("results") / sweep.name


def check_executor(executor: str, workers: int | None, scheduler: str | None) -> None:
    """Executor options checked before anything is written."""
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}", key="--executor",
                         expected=" or ".join(EXECUTORS))
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}", key="--workers", expected="at least 1")
    if scheduler is not None and executor != "dask":
        raise InputError("--scheduler is for the dask executor", key="--scheduler",
                         expected="--executor dask")
    if executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise InputError("the dask executor needs Dask, which is not installed",
                         key="--executor",
                         expected="pip install 'flashsim[dask]' (or --executor local)")
    if executor == "dask" and scheduler is not None:
        connect_dask(scheduler).close()  # unreachable: an error before anything is written


def run_sweep(sweep: Sweep | str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
              executor: str = "local", workers: int | None = None,
              scheduler: str | None = None, quiet: bool | None = None, plot: bool = True,
              dask_processes: bool = True) -> SweepOutcome:
    """Run every not-yet-finished run of `sweep` into `out_dir`; return the outcome.

    Failed runs are recorded (status, error) and retried on the next invocation. `quiet`:
    False shows bars on a terminal (the host calibrations', the runs'); None (default) only
    inside the CLI.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    check_executor(executor, workers, scheduler)
    out = Path(out_dir) if out_dir is not None else default_out(sweep)
    store = ResultStore(out)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", file=out, key="--out")
    with progress_shown(None if quiet is None else not quiet):  # the calibrations' bars
        rates, measured = host_rates(sweep, out if out.is_dir() else None)
    configs = expand(sweep, rates)
    ids = [c["run_id"] for c in configs]

    store.create()
    with store.locked():
        if measured:
            save_rates(out, measured)
        _write_manifest(out, sweep, ids)
        done = store.finished(ids)
        pending = [c for c in configs if c["run_id"] not in done]
        results_iter = execute(pending, executor=executor, workers=workers,
                               scheduler=scheduler, dask_processes=dask_processes
                               ) if pending else iter(())
        for result in progress(results_iter, total=len(pending), desc=f"sweep {sweep.name}",
                               quiet=quiet):
            store.write(result)
        results = store.combine(ids)
    failed = [{"run_id": r["run_id"], "layout": r["layout"], "trace": r["trace"],
               "device": r["device"], "queue_depth": r["queue_depth"], "window": r["window"],
               "error": r["error"]}
              for r in results.to_dict(orient="records") if r["status"] != "ok"]
    figure = None
    if plot and (results["status"] == "ok").any():
        figure = out / FIGURE
        plot_sweep(results[results["status"] == "ok"], figure, title=f"sweep {sweep.name}")
    return SweepOutcome(out, len(configs), len(done), len(pending), to_jsonable(failed),
                        results, figure)


def _write_manifest(out: Path, sweep: Sweep, ids: list[str]) -> None:
    data = {"sweep": sweep.name, "file": str(sweep.file),
            "spec": sweep.spec.model_dump(mode="json"), "run_ids": ids}
    atomic_write_text(out / MANIFEST, json.dumps(data, indent=2) + "\n")
