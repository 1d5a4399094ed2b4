"""Figure (.png) or page (.html) of a validation run: measured vs predicted, error vs noise."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..errors import InputError
from ..figures import figure_bytes, new_figure
from .rows import ValidationResult


def figure_png(result: ValidationResult) -> bytes:
    """Two panels: per-token measured vs predicted I/O (all rows), and error vs noise per row."""
    from matplotlib import colormaps  # matplotlib costs ~0.3 s to import: only when drawing

    fig = new_figure(figsize=(13, 5))
    ax1, ax2 = fig.subplots(1, 2)
    cmap = colormaps["tab10"]
    names = sorted({k[0] for k in result.per_token})
    markers = {1: "o", 8: "s", 32: "^"}
    lo, hi = np.inf, 0.0
    for (name, qd), d in result.per_token.items():
        meas = np.median(d["measured_s"], axis=0) * 1e3
        pred = np.median(np.atleast_2d(d["predicted_s"]), axis=0) * 1e3
        ok = meas > 0
        lo, hi = min(lo, meas[ok].min(), pred[ok].min()), max(hi, meas.max(), pred.max())
        ax1.scatter(meas[ok], pred[ok], s=6, alpha=0.5, color=cmap(names.index(name) % 10),
                    marker=markers.get(qd, "x"), label=f"{name} QD{qd}")
    if hi > 0:
        ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax1.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("measured I/O ms per token (median of reps)")
    ax1.set_ylabel("predicted I/O ms per token (median of draws)")
    ax1.legend(fontsize=6, ncol=2)
    rows = result.rows
    x = np.arange(len(rows))
    ax2.bar(x - 0.2, [r["error_p50_pct"] or 0 for r in rows], 0.4, label="error p50 %")
    ax2.bar(x + 0.2, [r["noise_p50_pct"] or 0 for r in rows], 0.4, label="noise p50 %")
    ax2.axhline(10, color="k", ls="--", lw=0.8)
    ax2.set_xticks(x, [f"{r['layout']} QD{r['queue_depth']}" for r in rows], rotation=60,
                   ha="right", fontsize=7)
    ax2.set_ylabel("%")
    ax2.legend()
    fig.suptitle(f"flashsim validate: {result.info.get('model')} "
                 f"{result.info.get('tokens')} tokens, {result.info.get('reps')} reps", fontsize=9)
    fig.tight_layout()
    return figure_bytes(fig)


def write_report(result: ValidationResult, path: str | os.PathLike) -> None:
    """A .png figure or an .html page (table + the figure inlined)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".png", ".html"):
        raise InputError("unsupported report type", file=p, key="--report",
                         expected="a .png or .html path")
    png = figure_png(result)
    if suffix == ".png":
        with atomic_write(p, "wb") as handle:
            handle.write(png)
        return
    cols = list(result.rows[0].keys()) if result.rows else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in result.rows:
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"<td>{v:.3f}</td>" if isinstance(v, float) else
                         f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    img = base64.b64encode(png).decode()
    page = (f"<!doctype html><meta charset='utf-8'><title>flashsim validate</title>"
            f"<h1>flashsim validate</h1><pre>{html.escape(str(result.info))}</pre>"
            f"<table border=1 cellspacing=0><tr>{head}</tr>{''.join(body)}</table>"
            f"<p><img src='data:image/png;base64,{img}'></p>")
    atomic_write_text(p, page)
