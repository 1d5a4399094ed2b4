"""Plan a layout on a trace and simulate it: the one path the CLI, sweeps and studies share."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from ..device.gap import DEFAULT_MERGE_GAP, resolve_merge_gap
from ..device.profile import DeviceProfile
from ..layout.plan import IOPlan
from ..layout.registry import make_layout
from ..trace.format import ActivationTrace
from .compute import ComputeModel
from .memory import MemoryModel
from .simulate import simulate
from .wait_cost import PROFILE, DecodeWaitCost

DEFAULT_BLOCK_BYTES = 4096
"""Read alignment of `simulate_layout` and `flashsim simulate` / `compare` (one 4 KiB page)."""


def plan_layout(name: str, trace: ActivationTrace, *, which: str = "predicted",
                train_trace: ActivationTrace | None = None, **layout_options: Any) -> IOPlan:
    """The IOPlan of layout `name` (its defaults, `layout_options` applied) on `trace`."""
    layout = make_layout(name, train_trace=train_trace, **layout_options)
    return layout.plan(trace, which=which)


def simulate_plan(plan: IOPlan, params: Any, queue_depth: int, engine: str = "fast", *,
                  memcpy_bytes_per_s: float | None = None,
                  compute_model: ComputeModel | None = None,
                  memory_model: MemoryModel | None = None,
                  computed_neurons: np.ndarray | None = None,
                  wait_cost: DecodeWaitCost | str | None = PROFILE
                  ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`simulate` plus what a reader of the summary needs to know about the plan: its
    scalar layout parameters and, for windowed layouts, the window actually kept."""
    frame, summary = simulate(plan, params, queue_depth, engine,
                              memcpy_bytes_per_s=memcpy_bytes_per_s, compute_model=compute_model,
                              memory_model=memory_model, computed_neurons=computed_neurons,
                              wait_cost=wait_cost)
    summary.pop("compute_model", None)
    summary.pop("memory_model", None)
    wait = summary.pop("wait_cost_model", None) or {}
    # flat scalars, as a sweep's Parquet records hold them
    summary["wait_compute_per_batch_us"] = wait.get("compute_per_batch_us")
    summary["wait_compute_per_io_s"] = wait.get("compute_per_io_s")
    summary["wait_source"] = wait.get("source")
    summary["layout_params"] = {k: v for k, v in plan.params.items()
                                if isinstance(v, (int, float, str, bool, type(None)))}
    windows = plan.meta.get("window_per_token")
    if windows is not None:
        summary["window_min"] = int(np.min(windows))
        summary["window_mean"] = float(np.mean(windows))
    return frame, summary


def simulate_layout(name: str, trace: ActivationTrace | str | os.PathLike, params: Any,
                    queue_depth: int, *, engine: str = "fast", which: str = "predicted",
                    train_trace: ActivationTrace | str | os.PathLike | None = None,
                    memcpy_bytes_per_s: float | None = None,
                    compute_model: ComputeModel | None = None,
                    memory_model: MemoryModel | None = None,
                    block_bytes: int = DEFAULT_BLOCK_BYTES,
                    merge_gap_bytes: int | str = DEFAULT_MERGE_GAP,
                    **layout_options: Any) -> tuple[pd.DataFrame, dict[str, Any], IOPlan]:
    """Plan layout `name` on `trace` and simulate it on `params` at `queue_depth`.

    The defaults are the CLI's (`flashsim simulate`), so both give the same numbers: the
    merge gap is `auto` (the device's break-even gap at this queue depth) unless given in
    bytes (0: paper-literal). Traces and profiles may be objects, paths or bundled names.
    """
    trace, train_trace = _trace(trace), _trace(train_trace)
    if isinstance(params, (str, os.PathLike)):
        params = DeviceProfile.load(params)
    gap = resolve_merge_gap(merge_gap_bytes, params, queue_depth, block_bytes,
                            key="merge_gap_bytes")
    plan = plan_layout(name, trace, which=which, train_trace=train_trace,
                       block_bytes=block_bytes, merge_gap_bytes=gap.gap_bytes, **layout_options)
    frame, summary = simulate_plan(plan, params, queue_depth, engine,
                                   memcpy_bytes_per_s=memcpy_bytes_per_s,
                                   compute_model=compute_model, memory_model=memory_model)
    summary.update(gap.to_dict())
    return frame, summary, plan


def _trace(trace: ActivationTrace | str | os.PathLike | None) -> ActivationTrace | None:
    """A trace object as is; a path or a bundled name (`opt-mini-ref`) loaded."""
    if trace is None or isinstance(trace, ActivationTrace):
        return trace
    return ActivationTrace.load(trace)
