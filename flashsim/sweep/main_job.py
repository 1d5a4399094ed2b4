"""`flashsim run`: the main job — every layout on the bundled trace and a bundled device.

It is a sweep (flashsim/data/default.yaml is a sweep file), so its results are resumable Parquet
like any sweep's; on top it prints the paper-style tables and draws the comparison figure
with the same table columns and figure code as `flashsim compare`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write_text
from ..cliutil import table, to_jsonable
from ..cost.tables import (
    TABLE2_COLUMNS,
    TABLE3_COLUMNS,
    add_display_units,
    plot_compare,
    table3_note,
)
from ..data import DEFAULT_CONFIG
from ..errors import InputError
from ..units import format_size
from .api import SweepOutcome, default_out, run_sweep
from .spec import load_sweep

FIGURE = "compare.png"
TABLES = "tables.txt"
GROUP_KEYS = ("trace", "device", "queue_depth", "neuron_set", "block_bytes", "engine",
              "max_tokens", "merge_gap_bytes", "merge_gap_auto")


def default_config() -> Path:
    """The bundled main-job sweep (package data: the same from a checkout or a wheel)."""
    return DEFAULT_CONFIG


@dataclass
class MainOutcome:
    """The sweep outcome plus the comparison groups (rows as the tables show them)."""

    sweep: SweepOutcome
    groups: list[dict[str, Any]]
    text: str
    figure: Path | None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({**self.sweep.to_dict(), "groups": self.groups,
                            "figure": str(self.figure) if self.figure else None,
                            "tables": str(self.sweep.out_dir / TABLES)})


def run_main(config: str | os.PathLike | None = None, out: str | os.PathLike | None = None, *,
             workers: int | None = None, quiet: bool | None = None) -> MainOutcome:
    """Run the comparison sweep of `config` (default: the bundled default.yaml); tables + figure."""

    path = Path(config) if config is not None else default_config()
    if not path.is_file():
        raise InputError("run config does not exist", file=path,
                         expected="a sweep YAML such as configs/sweeps/smoke.yaml")
    sweep = load_sweep(path)
    out_dir = Path(out) if out is not None else default_out(sweep)
    outcome = run_sweep(sweep, out_dir, workers=workers, quiet=quiet, plot=False)
    ok = outcome.results[outcome.results["status"] == "ok"]
    groups, blocks = [], []
    for keys, frame in _groups(ok):
        rows = [add_display_units(_label(r)) for r in frame.to_dict(orient="records")]
        head = _headline(keys, rows, sweep)
        groups.append({**keys, "headline": head, "rows": rows})
        blocks += [head, "", "I/O (like the paper's Table 2):", table(rows, TABLE2_COLUMNS), "",
                   "Per token (like the paper's Table 3):", table(rows, TABLE3_COLUMNS),
                   table3_note(rows[0], str(keys.get("device"))), ""]
    if outcome.failed:
        blocks.append(f"{len(outcome.failed)} run(s) failed:")
        blocks += [f"  {f['layout']}: {f['error']}" for f in outcome.failed]
    text = "\n".join(blocks).rstrip() + "\n"
    atomic_write_text(outcome.out_dir / TABLES, text)
    figure = None
    if groups:
        figure = outcome.out_dir / FIGURE
        plot_compare(groups[0]["rows"], str(figure), title=groups[0]["headline"])
    return MainOutcome(outcome, groups, text, figure)


def _groups(ok: pd.DataFrame):
    keys = [k for k in GROUP_KEYS if k in ok]
    if ok.empty:
        return
    for values, frame in ok.groupby(keys, sort=False, dropna=False):
        yield dict(zip(keys, values)), frame


def _label(row: dict[str, Any]) -> dict[str, Any]:
    """The layout name, with its window / budget when the config set them."""
    window, budget = row.get("window"), row.get("dram_budget_bytes")
    name = row["layout"]
    if window is not None and not pd.isna(window):
        name += f" k={int(window)}"
    if budget is not None and not pd.isna(budget):
        name += f" ≤{format_size(int(budget))}"
    return dict(row, layout=name)


def _headline(keys: dict[str, Any], rows: list[dict[str, Any]], sweep: Any) -> str:
    geometry = sweep.geometries.get(keys.get("trace"))
    model = (f"{geometry.name} (FFN {format_size(geometry.ffn_bytes)})" if geometry
             else str(keys.get("trace")))
    n_tokens = rows[0].get("n_tokens") if rows else "?"
    synthetic = " SYNTHETIC trace," if any(r.get("trace_synthetic") for r in rows) else ""
    return (f"{n_tokens} generated tokens of {model},{synthetic} {keys.get('neuron_set')} set, "
            f"device {keys.get('device')}, QD {keys.get('queue_depth')}, "
            f"block {format_size(int(keys.get('block_bytes', 4096)))}, "
            f"merge gap {_gap_text(keys)}")


def _gap_text(keys: dict[str, Any]) -> str:
    """`12KiB (auto)`, `0 (paper-literal)`, `8KiB`; `0` for results from before merge gaps."""
    gap = keys.get("merge_gap_bytes")
    if gap is None or pd.isna(gap):
        return "0"
    text = format_size(int(gap)) if int(gap) else "0"
    auto = keys.get("merge_gap_auto")
    if auto is not None and not pd.isna(auto) and bool(auto):
        return text + " (auto)"
    return text + (" (paper-literal)" if int(gap) == 0 else "")
