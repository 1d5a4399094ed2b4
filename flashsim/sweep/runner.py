"""One run of a sweep: load its inputs, plan the layout on the trace, simulate the cost.

`run_one(config)` never raises for a failing run: it returns a result whose status is
"failed" with the error, so a sweep carries on and lists the failures at the end. It is
a plain top-level function of plain data, so process pools and Dask can ship it.
"""

from __future__ import annotations

import functools
import time
import traceback
from typing import Any

import pandas as pd

from .. import __version__
from ..cost.compute import ComputeModel
from ..cost.memory import MemoryModel
from ..cost.run import plan_layout, simulate_plan
from ..device import load_params
from ..trace.format import ActivationTrace


@functools.lru_cache(maxsize=8)
def _trace(path: str, sha256: str, max_tokens: int | None):
    trace = ActivationTrace.load(path)
    return trace.head(max_tokens) if max_tokens else trace


@functools.lru_cache(maxsize=8)
def _params(path: str, sha256: str):
    return load_params(path)


PLAN_KEYS = ("trace_path", "trace_sha256", "max_tokens", "train_trace_path",
             "train_trace_sha256", "layout", "window", "dram_budget_bytes", "block_bytes",
             "neuron_set", "merge_gap_bytes")
"""What a plan depends on: runs that differ only in device, queue depth or engine share it
(unless their merge gaps differ; a config from before merge gaps plans with gap 0)."""


@functools.lru_cache(maxsize=4)
def _plan(key: tuple) -> Any:
    c = dict(zip(PLAN_KEYS, key))
    trace = _trace(c["trace_path"], c["trace_sha256"], c["max_tokens"])
    train = None
    if c["train_trace_path"]:
        train = _trace(c["train_trace_path"], c["train_trace_sha256"], None)
    return trace, plan_layout(c["layout"], trace, which=c["neuron_set"], train_trace=train,
                              block_bytes=c["block_bytes"], window=c["window"],
                              dram_budget_bytes=c["dram_budget_bytes"],
                              merge_gap_bytes=c["merge_gap_bytes"])


def simulate_config(config: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Plan and simulate one run config; returns the per-token table and the summary.

    Plans are cached per process (a few), so a queue-depth or device axis re-plans nothing.
    """
    trace, plan = _plan(tuple(config.get(k) for k in PLAN_KEYS))
    params = _params(config["device_path"], config["device_sha256"])
    compute = ComputeModel.from_rates(config, config.get("compute_source")
                                      or "fixed sweep host rates")
    memory = MemoryModel.from_rates(config, config.get("mem_source") or "sweep host rates")
    frame, summary = simulate_plan(plan, params, config["queue_depth"], config["engine"],
                                   memcpy_bytes_per_s=config["memcpy_bytes_per_s"],
                                   compute_model=compute, memory_model=memory)
    summary["trace_synthetic"] = bool(trace.is_synthetic)
    return frame, summary


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """Run one config; a result dict (status ok/failed, error, summary, tokens, wall_s)."""
    start = time.perf_counter()
    result: dict[str, Any] = {"run_id": config["run_id"], "config": config,
                              "flashsim_version": __version__}
    try:
        frame, summary = simulate_config(config)
        result.update(status="ok", error=None, summary=summary, tokens=frame)
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        result.update(status="failed", error=message, summary={}, tokens=pd.DataFrame(),
                      traceback=traceback.format_exc(limit=8))
    result["wall_s"] = time.perf_counter() - start
    return result
