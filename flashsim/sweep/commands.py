"""CLI: `flashsim sweep SPEC.yaml` (resumable YAML sweeps) and `flashsim run` (the main job)."""

from __future__ import annotations

import argparse
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table, to_jsonable

_RESULT_COLUMNS = [("layout", "layout", "s"), ("window", "k", ".0f"),
                   ("queue_depth", "QD", "d"), ("mb_per_token", "MB/token", ".3f"),
                   ("io_ms_p50", "I/O ms", ".3f"), ("total_ms_p50", "total ms", ".3f"),
                   ("status", "status", "s")]
_MAX_ROWS = 40


def register(subparsers: Any) -> None:
    """Add `sweep` and `run`."""
    s = subparsers.add_parser("sweep", help="run a YAML sweep (resumable; local or Dask)")
    s.add_argument("spec", help="sweep YAML (configs/sweeps/NAME.yaml)")
    s.add_argument("--out", type=cliargs.out_dir("--out"),
                   help="output folder (default results/NAME)")
    s.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local worker processes (default) or a Dask cluster")
    s.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    s.add_argument("--workers", type=cliargs.count("--workers", maximum=4096), default=None,
                   help="worker processes (default: one per CPU)")
    add_json_flag(s)
    s.set_defaults(func=cmd_sweep)

    r = subparsers.add_parser("run", help="the main job: all layouts on the bundled trace "
                                          "and device, paper-style tables and a figure")
    r.add_argument("config", nargs="?", default=None,
                   help="sweep YAML (default: the bundled flashsim/data/default.yaml)")
    r.add_argument("--out", type=cliargs.out_dir("--out"),
                   help="output folder (default results/NAME)")
    r.add_argument("--workers", type=cliargs.count("--workers", maximum=4096), default=None,
                   help="worker processes (default: one per CPU)")
    add_json_flag(r)
    r.set_defaults(func=cmd_run)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep; exit 1 when any run failed."""
    from .api import run_sweep

    outcome = run_sweep(args.spec, args.out, executor=args.executor, workers=args.workers,
                        scheduler=args.scheduler, quiet=args.json)
    rows = to_jsonable(outcome.results.to_dict(orient="records"))
    for row in rows:
        if row.get("bytes_per_token") is not None:
            row["mb_per_token"] = row["bytes_per_token"] / 1e6
    lines = [f"{outcome.n_runs} runs: {outcome.n_skipped} already done, {outcome.n_ran} ran, "
             f"{len(outcome.failed)} failed → {outcome.out_dir}/results.parquet, results.csv"]
    lines.append(table(rows[:_MAX_ROWS], _RESULT_COLUMNS))
    if len(rows) > _MAX_ROWS:
        lines.append(f"... {len(rows) - _MAX_ROWS} more rows in results.csv")
    for f in outcome.failed:
        lines.append(f"FAILED {f['run_id']} {f['layout']}: {f['error']}")
    if outcome.figure:
        lines.append(f"figure: {outcome.figure}")
    emit(args, dict(outcome.to_dict(), results=rows), "\n".join(lines))
    return 1 if outcome.failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job; exit 1 when any layout failed."""
    from .main_job import run_main

    result = run_main(args.config, args.out, workers=args.workers, quiet=args.json)
    o = result.sweep
    tail = (f"results: {o.out_dir}/results.parquet, results.csv"
            + (f"; figure: {result.figure}" if result.figure else ""))
    emit(args, result.to_dict(), result.text + tail)
    return 1 if o.failed else 0
