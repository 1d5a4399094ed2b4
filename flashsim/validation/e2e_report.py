"""Figure of an end-to-end run: per layout × QD, the real decode's mean per-token time next to
the simulator's, each bar stacked by part (I/O, memory, compute; the stack is the total)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..figures import figure_format, new_figure, save_figure

STACKED = (("io", "I/O", "tab:blue"), ("mem", "memory", "tab:orange"),
           ("compute", "compute", "tab:green"))
"""The parts stacked in each bar, bottom to top; means add up to the mean total."""


def draw_stacked_bars(ax: Any, rows: list[dict[str, Any]]) -> None:
    """Real (solid) and simulated (hatched) mean ms per token of every row, parts stacked,
    with the total p50 of each side as a black tick."""
    x = np.arange(len(rows))
    w = 0.38
    for side, dx, hatch in (("measured", -w / 2, None), ("predicted", w / 2, "//")):
        bottom = np.zeros(len(rows))
        for part, label, colour in STACKED:
            h = np.array([r.get(f"{side}_{part}_ms_mean") or 0.0 for r in rows])
            ax.bar(x + dx, h, w, bottom=bottom, color=colour, hatch=hatch, edgecolor="white",
                   lw=0.3, label=f"{label} ({'real' if side == 'measured' else 'sim'})")
            bottom += h
        p50 = [r.get(f"{side}_total_ms_p50") or 0.0 for r in rows]
        ax.scatter(x + dx, p50, marker="_", s=120, color="k", zorder=3,
                   label="total p50" if side == "measured" else None)
    ax.set_xticks(x, [f"{r['layout']}\nQD{r['queue_depth']}" for r in rows], fontsize=7,
                  rotation=45, ha="right")
    ax.set_ylabel("ms per token (mean; bars: real left, simulated right)")
    ax.legend(fontsize=7, ncol=2)


def figure(rows: list[dict[str, Any]], info: dict[str, Any]) -> Any:
    """The stacked-bar figure of an end-to-end result's rows and info."""
    fig = new_figure(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.8))
    ax = fig.subplots()
    draw_stacked_bars(ax, rows)
    ax.set_title(f"end-to-end: {info.get('model')}, {info.get('tokens')} tokens after "
                 f"{info.get('prompt_tokens')} prompt tokens, {info.get('reps')} reps", fontsize=9)
    fig.tight_layout()
    return fig


def write_figure(rows: list[dict[str, Any]], info: dict[str, Any],
                 path: str | os.PathLike) -> None:
    """Write the figure (.png, .pdf or .svg) atomically."""
    figure_format(path, key="--report")
    save_figure(figure(rows, info), path)
