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

import numpy as np
import pandas as pd

from .. import __version__


@functools.lru_cache(maxsize=8)
def _trace(path: str, sha256: str, max_tokens: int | None):
    from ..trace.format import ActivationTrace

    trace = ActivationTrace.load(path)
    return truncate(trace, max_tokens) if max_tokens else trace


@functools.lru_cache(maxsize=8)
def _params(path: str, sha256: str):
    from ..device import load_params

    return load_params(path)


def truncate(trace: Any, max_generated: int) -> Any:
    """The trace with its prompt and only its first `max_generated` generated tokens."""
    from ..trace.format import ActivationTrace

    stop = min(trace.n_tokens, trace.n_prompt_tokens + max_generated)
    if stop == trace.n_tokens:
        return trace
    cut = [s.slice_tokens(0, stop) for s in trace.active]
    pred = [s.slice_tokens(0, stop) for s in trace.predicted] if trace.predicted else None
    meta = dict(trace.meta, truncated_to_tokens=int(stop))
    return ActivationTrace(trace.geometry, trace.token_ids[:stop], trace.n_prompt_tokens,
                           cut, pred, meta)


PLAN_KEYS = ("trace_path", "trace_sha256", "max_tokens", "train_trace_path",
             "train_trace_sha256", "layout", "window", "dram_budget_bytes", "block_bytes",
             "neuron_set", "merge_gap_bytes")
"""What a plan depends on: runs that differ only in device, queue depth or engine share it
(unless their merge gaps differ; a config from before merge gaps plans with gap 0)."""


@functools.lru_cache(maxsize=4)
def _plan(key: tuple) -> Any:
    from ..layout.registry import make_layout

    c = dict(zip(PLAN_KEYS, key))
    trace = _trace(c["trace_path"], c["trace_sha256"], c["max_tokens"])
    train = None
    if c["train_trace_path"]:
        train = _trace(c["train_trace_path"], c["train_trace_sha256"], None)
    layout = make_layout(c["layout"], train_trace=train, block_bytes=c["block_bytes"],
                         window=c["window"], dram_budget_bytes=c["dram_budget_bytes"],
                         merge_gap_bytes=c["merge_gap_bytes"])
    return trace, layout.plan(trace, which=c["neuron_set"])


def simulate_config(config: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Plan and simulate one run config; returns the per-token table and the summary.

    Plans are cached per process (a few), so a queue-depth or device axis re-plans nothing.
    """
    from ..cost.compute import ComputeModel
    from ..cost.simulate import simulate

    trace, plan = _plan(tuple(config.get(k) for k in PLAN_KEYS))
    params = _params(config["device_path"], config["device_sha256"])
    compute = ComputeModel(config["compute_fixed_s_per_layer"], config["compute_s_per_neuron"],
                           source="sweep host rates")
    frame, summary = simulate(plan, params, config["queue_depth"], config["engine"],
                              memcpy_bytes_per_s=config["memcpy_bytes_per_s"],
                              compute_model=compute)
    summary.pop("compute_model", None)
    summary["trace_synthetic"] = bool(trace.is_synthetic)
    summary["layout_params"] = {k: v for k, v in plan.params.items()
                                if isinstance(v, (int, float, str, bool, type(None)))}
    windows = plan.meta.get("window_per_token")
    if windows is not None:
        summary["window_min"] = int(np.min(windows))
        summary["window_mean"] = float(np.mean(windows))
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
