"""Plan a layout on a trace and simulate it: the one path the CLI, sweeps and studies share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..layout.plan import IOPlan
from ..layout.registry import make_layout
from ..trace.format import ActivationTrace
from .compute import ComputeModel
from .memory import MemoryModel
from .simulate import simulate


def plan_layout(name: str, trace: ActivationTrace, *, which: str = "predicted",
                train_trace: ActivationTrace | None = None, **layout_options: Any) -> IOPlan:
    """The IOPlan of layout `name` (its defaults, `layout_options` applied) on `trace`."""
    layout = make_layout(name, train_trace=train_trace, **layout_options)
    return layout.plan(trace, which=which)


def simulate_plan(plan: IOPlan, params: Any, queue_depth: int, engine: str = "fast", *,
                  memcpy_bytes_per_s: float | None = None,
                  compute_model: ComputeModel | None = None,
                  memory_model: MemoryModel | None = None,
                  computed_neurons: np.ndarray | None = None
                  ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`simulate` plus what a reader of the summary needs to know about the plan: its
    scalar layout parameters and, for windowed layouts, the window actually kept."""
    frame, summary = simulate(plan, params, queue_depth, engine,
                              memcpy_bytes_per_s=memcpy_bytes_per_s, compute_model=compute_model,
                              memory_model=memory_model, computed_neurons=computed_neurons)
    summary.pop("compute_model", None)
    summary.pop("memory_model", None)
    summary["layout_params"] = {k: v for k, v in plan.params.items()
                                if isinstance(v, (int, float, str, bool, type(None)))}
    windows = plan.meta.get("window_per_token")
    if windows is not None:
        summary["window_min"] = int(np.min(windows))
        summary["window_mean"] = float(np.mean(windows))
    return frame, summary


def simulate_layout(name: str, trace: ActivationTrace, params: Any, queue_depth: int, *,
                    engine: str = "fast", which: str = "predicted",
                    train_trace: ActivationTrace | None = None,
                    memcpy_bytes_per_s: float | None = None,
                    compute_model: ComputeModel | None = None,
                    memory_model: MemoryModel | None = None,
                    **layout_options: Any) -> tuple[pd.DataFrame, dict[str, Any], IOPlan]:
    """Plan layout `name` on `trace` and simulate it on `params` at `queue_depth`."""
    plan = plan_layout(name, trace, which=which, train_trace=train_trace, **layout_options)
    frame, summary = simulate_plan(plan, params, queue_depth, engine,
                                   memcpy_bytes_per_s=memcpy_bytes_per_s,
                                   compute_model=compute_model, memory_model=memory_model)
    return frame, summary, plan
