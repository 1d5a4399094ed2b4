"""Where runs execute: local worker processes (default) or a Dask distributed cluster.

Both call the same `runner.run_one` on each config and yield results as they finish; the
caller (the sweep) writes each result file from the main process, so a run is either
fully recorded or not at all. Dask is optional (`pip install 'flashsim[dask]'`) and
imported only when asked for; its workers need flashsim installed and the sweep's files
at the same paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from ..errors import InputError
from .runner import run_one

EXECUTORS = ("local", "dask")


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def execute(configs: list[dict[str, Any]], *, executor: str = "local",
            workers: int | None = None, scheduler: str | None = None,
            dask_processes: bool = True) -> Iterator[dict[str, Any]]:
    """Yield one result per config, in completion order."""
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}", key="--workers", expected="at least 1")
    if executor == "local":
        if scheduler is not None:
            raise InputError("--scheduler is for the dask executor", key="--scheduler",
                             expected="--executor dask")
        return _local(configs, workers or default_workers())
    if executor == "dask":
        return _dask(configs, workers, scheduler, dask_processes)
    raise InputError(f"unknown executor {executor!r}", key="--executor",
                     expected=" or ".join(EXECUTORS))


def _local(configs: list[dict[str, Any]], workers: int) -> Iterator[dict[str, Any]]:
    workers = min(workers, len(configs))
    if workers <= 1:  # in this process: no pickling, one numba warm-up
        for config in configs:
            yield run_one(config)
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
    try:
        pending: dict[Future, dict[str, Any]] = {pool.submit(run_one, c): c for c in configs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                config = pending.pop(future)
                yield _result_or_failure(future, config)
    finally:  # Ctrl-C, or the consumer stopped: drop what has not started
        pool.shutdown(wait=True, cancel_futures=True)


def _die_with_parent() -> None:
    """Worker initializer: drop the inherited folder lock, and on Linux ask the kernel to kill
    this worker when the sweep process dies (kill -9 leaves no orphans behind computing runs
    nobody will write, and no worker keeps the folder locked)."""
    import ctypes
    import signal
    import sys

    from .store import release_inherited_locks

    release_inherited_locks()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() == 1:  # the parent died before prctl
            os._exit(1)


def _result_or_failure(future: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The run's result, or a failed result when its worker died (OOM kill, crash)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a lost worker fails this run, not the sweep
        import pandas as pd

        from .. import __version__

        return {"run_id": config["run_id"], "config": config, "flashsim_version": __version__,
                "status": "failed", "error": " ".join(f"{type(exc).__name__}: {exc}".split()),
                "summary": {}, "tokens": pd.DataFrame(), "wall_s": None}


def connect_dask(scheduler: str) -> Any:
    """A Dask client of the scheduler at `scheduler`; InputError when it cannot be reached."""
    from distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(f"cannot reach the Dask scheduler ({exc})", key="--scheduler",
                         expected="an address like tcp://host:8786") from None


def _dask(configs: list[dict[str, Any]], workers: int | None, scheduler: str | None,
          processes: bool) -> Iterator[dict[str, Any]]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("the dask executor needs Dask, which is not installed",
                         key="--executor",
                         expected="pip install 'flashsim[dask]' (or --executor local)") from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers or min(default_workers(), len(configs)),
                               threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = connect_dask(scheduler)
    try:
        futures = [client.submit(run_one, c, key=f"flashsim-run-{c['run_id']}", pure=False)
                   for c in configs]
        by_key = {f.key: c for f, c in zip(futures, configs)}
        for future in as_completed(futures):
            yield _result_or_failure(future, by_key[future.key])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
