"""The advise figure: every configuration's DRAM against its ms/token, the Pareto front and
the budget."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..figures import figure_format, new_figure, save_figure


def _palette() -> list:
    from matplotlib import colormaps

    return list(colormaps["tab20"].colors)


def plot_advice(advice: Any, path: str, *, title: str = "") -> None:
    """Scatter of DRAM (MB) vs predicted ms/token per family, the front as a step line,
    the budget as a vertical line and the pick starred."""
    figure_format(path, key="--plot")  # fail before drawing
    rows, front = advice.rows, advice.front
    fig = new_figure(figsize=(8, 5))
    ax = fig.subplots()
    colors = [c for i, c in enumerate(_palette()) if i % 2 == 0] + _palette()[1::2]
    for i, (family, group) in enumerate(rows.groupby("family", sort=False)):
        ax.scatter(group["dram_mb"], group["total_ms"], s=10, alpha=0.6, label=family,
                   color=colors[i % len(colors)])
    ax.step(front["dram_mb"], front["total_ms"], where="post", color="black", lw=1.2,
            label="Pareto front")
    budget_mb = advice.info["dram_budget_bytes"] / 1e6
    ax.axvline(budget_mb, color="tab:red", ls="--", lw=1, label="DRAM budget")
    best = advice.best
    ax.scatter([best["dram_mb"]], [best["total_ms"]], marker="*", s=180, color="gold",
               edgecolor="black", zorder=5, label=f"pick: {best['config']}")
    ax.set_xlabel("FFN DRAM (MB): resident rows + read buffer, worst token")
    ax.set_ylabel("predicted ms per token (I/O + memory + compute, mean)")
    top = float(np.percentile(rows["total_ms"], 95))
    ax.set_ylim(0, max(top, float(front["total_ms"].max())) * 1.1)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
