"""Sweep figures: I/O time per token against queue depth, and DRAM resident against I/O time.

One line per series (layout, plus window / budget / device / trace where the sweep varies
them); written atomically as png, pdf or svg.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..figures import figure_format, new_figure, save_figure

SERIES_KEYS = ("layout", "window", "dram_budget_bytes", "device", "trace", "neuron_set")


def series_labels(results: pd.DataFrame) -> pd.Series:
    """A label per row naming the varied config columns other than queue depth."""
    varied = [k for k in SERIES_KEYS if k in results and results[k].astype(str).nunique() > 1]
    if "layout" not in varied:
        varied.insert(0, "layout")

    def label(row: pd.Series) -> str:
        parts = [str(row["layout"])]
        for key in varied[1:]:
            value = row[key]
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            if key == "window":
                parts.append(f"k={int(value)}")
            elif key == "dram_budget_bytes":
                parts.append(f"budget={value / 1e6:.3g}MB")
            else:
                parts.append(f"{key}={Path(str(value)).stem}")
        return " ".join(parts)

    return results.apply(label, axis=1)


def plot_sweep(results: pd.DataFrame, path: str | os.PathLike, *, title: str = "") -> None:
    """Two panels from a results table (finished runs): I/O ms vs QD, DRAM MB vs I/O ms."""
    from matplotlib import colormaps  # matplotlib costs ~0.4 s to import: only when drawing

    figure_format(path)  # fail before drawing
    frame = results.assign(series=series_labels(results))
    fig = new_figure(figsize=(12, 4.8))
    ax1, ax2 = fig.subplots(1, 2)
    groups = list(frame.groupby("series", sort=False))
    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    for i, (name, group) in enumerate(groups):
        color = cmap(i % cmap.N)
        by_qd = group.groupby("queue_depth", sort=True)["io_ms_p50"].median()
        ax1.plot(by_qd.index, by_qd.values, marker="o", label=name, color=color)
        ax2.scatter(group["io_ms_p50"], group["dram_resident_bytes"] / 1e6, label=name, s=18,
                    color=color)
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("queue depth (reads in flight)")
    ax1.set_ylabel("I/O ms per token (p50, log)")
    ax2.set_xscale("log")
    ax2.set_xlabel("I/O ms per token (p50, log)")
    ax2.set_ylabel("FFN bytes resident in DRAM (MB)")
    ax1.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
