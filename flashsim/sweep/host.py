"""Memory and compute rates for a sweep: fixed in the YAML, or measured once and kept.

The cost model times memory management and compute with models calibrated on this machine
(cost/memory.py: the runtime's bookkeeping; cost/compute.py: the decode's parts), or with
the rates a sweep fixes (memcpy bandwidth; compute per layer and per neuron). A sweep
calibrates them once (per model geometry, in the parent process) and keeps them in
`host_rates.json` in its output folder, so every run of the sweep — resumed runs, other
worker processes, Dask workers — uses the same rates and gives the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..cost.compute import calibrate_compute
from ..cost.memcpy import measure_memcpy_bytes_per_s
from ..cost.memory import calibrate_memory
from ..errors import InputError
from .grid import geometry_key
from .spec import Sweep

HOST_FILE = "host_rates.json"


def host_rates(sweep: Sweep, out_dir: Path | None
               ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Rates per geometry key, and the newly measured ones among them (to be saved).

    Fixed rates from the sweep's `host:` win; else rates saved in `out_dir`; else measured.
    """
    fixed = sweep.spec.host
    saved = load_saved(out_dir) if out_dir is not None else {}
    rates: dict[str, dict[str, Any]] = {}
    measured: dict[str, dict[str, Any]] = {}
    for geometry in sweep.geometries.values():
        key = geometry_key(geometry)
        if key in rates:
            continue
        old = saved.get(key, {})
        r: dict[str, Any] = {}
        if fixed.memcpy_gb_s is not None:  # the paper's memory model: bytes / this bandwidth
            r["memcpy_bytes_per_s"] = fixed.memcpy_gb_s * 1e9
        elif "memcpy_bytes_per_s" in old and "mem_s_per_call" in old:
            r.update({k: v for k, v in old.items() if k.startswith(("memcpy_", "mem_"))})
        else:
            model = calibrate_memory(geometry)
            r["memcpy_bytes_per_s"] = measure_memcpy_bytes_per_s(2 * geometry.row_bytes)
            r.update(model.to_rates(), mem_source=model.source)
            measured.setdefault(key, {}).update(
                {k: v for k, v in r.items() if k.startswith(("memcpy_", "mem_"))})
        if fixed.compute_fixed_us_per_layer is not None:
            r["compute_fixed_s_per_layer"] = fixed.compute_fixed_us_per_layer * 1e-6
            r["compute_s_per_neuron"] = fixed.compute_ns_per_neuron * 1e-9
        elif "compute_s_per_neuron" in old and "compute_source" in old:
            r.update({k: v for k, v in old.items() if k.startswith("compute_")})
        else:
            model = calibrate_compute(geometry)
            new = {**model.to_rates(), "compute_source": model.source}
            r.update(new)
            measured.setdefault(key, {}).update(new)
        rates[key] = r
    return rates, measured


def load_saved(out_dir: Path) -> dict[str, Any]:
    """Rates kept in an output folder by an earlier (maybe interrupted) run of the sweep."""
    path = out_dir / HOST_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError("unreadable host rates file; delete it to measure again",
                         file=path) from None
    return data if isinstance(data, dict) else {}


def save_rates(out_dir: Path, rates: dict[str, dict[str, float]]) -> None:
    """Merge measured `rates` into the folder's host_rates.json (atomically)."""
    data = load_saved(out_dir)
    for key, values in rates.items():
        data.setdefault(key, {}).update(values)
    atomic_write_text(out_dir / HOST_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
