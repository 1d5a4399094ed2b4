"""Figures: check the requested file type up front, write the rendered file atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .errors import InputError

FIGURE_TYPES = ("png", "pdf", "svg")


def figure_format(path: str | os.PathLike, *, key: str | None = None) -> str:
    """The figure type of `path` (png when it has no suffix); InputError for other types."""
    suffix = Path(path).suffix.lower().lstrip(".") or "png"
    if suffix not in FIGURE_TYPES:
        raise InputError(f"unsupported figure type {suffix!r}", file=path, key=key,
                         expected="a .png, .pdf or .svg path")
    return suffix


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure outside pyplot: no backend is chosen or changed, so it renders
    headless in a script and leaves a notebook's inline backend alone."""
    from matplotlib.figure import (
        Figure,  # matplotlib costs ~0.3 s to import: only when drawing
    )

    return Figure(**kwargs)


def figure_bytes(fig: Any, fmt: str = "png", dpi: int = 110) -> bytes:
    """Render a matplotlib figure to bytes (and close it when pyplot made it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    if fig.canvas.manager is not None:  # a pyplot figure: free its window slot
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 110) -> None:
    """Render `fig` in the type `path` names and write it atomically (nothing half-written)."""
    data = figure_bytes(fig, figure_format(path), dpi)
    with atomic_write(path) as handle:
        handle.write(data)
