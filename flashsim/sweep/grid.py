"""Grid expansion: a validated sweep → the list of run configs, each with a stable id.

Axes under `grid` are crossed; the others are zipped (length-1 axes broadcast). A layout
that takes no window gets window and DRAM budget None, so crossing it with several windows
gives one run, not duplicates. A run's id is a hash of its exact config (file contents by
sha256, not by path), so the same run in another checkout or folder has the same id.
The merge gap is resolved here, per run: `auto` becomes the break-even gap of the run's
device at its queue depth (`merge_gap_bytes`, with `merge_gap_auto` true).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from typing import Any

from .. import __version__
from ..device import load_params
from ..device.gap import resolve_merge_gap
from ..layout.registry import LAYOUTS
from .spec import AXES, Sweep

# spec axis -> run config key
AXIS_KEY = {"traces": "trace", "devices": "device", "layouts": "layout", "windows": "window",
            "queue_depths": "queue_depth", "dram_budgets": "dram_budget_bytes"}

PATH_KEYS = ("trace_path", "device_path", "train_trace_path")
"""Where the files are on this machine: used to load them, left out of the run id."""


def run_id(config: dict[str, Any]) -> str:
    """16 hex digits of sha256 over the config (sorted JSON), paths excluded."""
    core = {k: v for k, v in config.items() if k not in PATH_KEYS and k != "run_id"}
    text = json.dumps(core, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def takes_window(layout: str) -> bool:
    """True for the windowed+ layouts (the ones with a window and a DRAM budget)."""
    return "window" in LAYOUTS[layout][1]


def axis_points(sweep: Sweep) -> list[dict[str, Any]]:
    """One dict of axis values (spec axis names) per point of the grid, in a stable order."""
    spec = sweep.spec
    grid = spec.grid if spec.grid is not None else list(AXES)
    values = {"traces": sweep.traces, "devices": sweep.devices, "layouts": spec.layouts,
              "windows": spec.windows, "queue_depths": spec.queue_depths,
              "dram_budgets": spec.dram_budgets}
    factors: list[list[dict[str, Any]]] = []
    for axis in AXES:
        if axis in grid:
            factors.append([{axis: v} for v in values[axis]])
    zipped = [a for a in AXES if a not in grid]
    if zipped:
        n = max(len(values[a]) for a in zipped)
        factors.append([{a: values[a][i if len(values[a]) > 1 else 0] for a in zipped}
                        for i in range(n)])
    points = []
    for combo in itertools.product(*factors):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(part)
        points.append(point)
    return points


def expand(sweep: Sweep, host: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Run configs of `sweep` (duplicates removed), with the host rates per trace geometry.

    `host` maps a geometry key (see `geometry_key`) to {memcpy_bytes_per_s,
    compute_fixed_s_per_layer, compute_s_per_neuron}.
    """
    spec = sweep.spec
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for point in axis_points(sweep):
        trace, device, layout = point["traces"], point["devices"], point["layouts"]
        windowed = takes_window(layout)
        config: dict[str, Any] = {
            "trace": trace.label, "trace_sha256": trace.sha256, "trace_path": trace.path,
            "device": device.label, "device_sha256": device.sha256, "device_path": device.path,
            "layout": layout,
            "window": point["windows"] if windowed else None,
            "dram_budget_bytes": point["dram_budgets"] if windowed else None,
            "queue_depth": point["queue_depths"],
            "block_bytes": spec.block_bytes, "engine": spec.engine,
            **_gap(spec.merge_gap, device.path, device.sha256, point["queue_depths"],
                   spec.block_bytes),
            "neuron_set": spec.neuron_set, "max_tokens": spec.max_tokens,
            "train_trace": None, "train_trace_sha256": None, "train_trace_path": None,
            "flashsim_version": __version__,
        }
        if "coactivation" in layout and sweep.train_trace is not None:
            tt = sweep.train_trace
            config.update(train_trace=tt.label, train_trace_sha256=tt.sha256,
                          train_trace_path=tt.path)
        config.update(host[geometry_key(sweep.geometries[trace.label])])
        config["run_id"] = run_id(config)
        if config["run_id"] not in seen:
            seen.add(config["run_id"])
            configs.append(config)
    return configs


@functools.lru_cache(maxsize=64)
def _params(path: str, sha256: str) -> Any:
    return load_params(path)


def _gap(setting: Any, device_path: str, device_sha256: str, queue_depth: int,
         block_bytes: int) -> dict[str, Any]:
    """{merge_gap_bytes, merge_gap_auto} of one run (auto: the device's break-even gap)."""
    choice = resolve_merge_gap(setting, _params(device_path, device_sha256), queue_depth,
                               block_bytes)
    return {"merge_gap_bytes": choice.gap_bytes, "merge_gap_auto": choice.auto}


def geometry_key(geometry: Any) -> str:
    """A short text key of a model geometry (host rates depend on its shapes)."""
    g = geometry
    return f"{g.name}:{g.n_layers}x{g.d_model}x{g.d_ffn}x{g.dtype_bytes}"
