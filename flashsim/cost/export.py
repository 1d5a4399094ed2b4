"""`simulate --out` / `compare --out`: the per-token frame and the summary as CSV or Parquet.

`PATH` gets one row per (layout, token), `PATH` with a `-summary` stem one row per layout,
the format chosen by the suffix; nested summary entries become dotted columns (as the
sweeps' results.csv has them). Both files are written atomically, and only once both are
complete, so an interrupted write leaves neither.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write
from ..errors import InputError

RESULT_SUFFIXES = (".csv", ".parquet")
"""The formats `--out` writes, by the path's suffix."""


def summary_path(path: str | os.PathLike) -> Path:
    """Where the summary of `path` goes: `runs.csv` → `runs-summary.csv`."""
    p = Path(path)
    return p.with_name(f"{p.stem}-summary{p.suffix}")


def check_results_path(path: str | os.PathLike, *, key: str = "out") -> Path:
    """`path` as a results file: a known suffix, and neither target an existing folder."""
    p = Path(path)
    if p.suffix.lower() not in RESULT_SUFFIXES:
        raise InputError(f"unsupported file type {p.suffix or '(none)'!r}", file=p, key=key,
                         expected="a path ending " + " or ".join(RESULT_SUFFIXES))
    for target in (p, summary_path(p)):
        if target.is_dir():
            raise InputError("is a folder", file=target, key=key, expected="a file path")
    if not p.parent.is_dir():
        raise InputError("folder does not exist", file=p.parent, key=key,
                         expected="an existing folder")
    return p


def write_results(path: str | os.PathLike, tokens: dict[str, pd.DataFrame],
                  summaries: list[dict[str, Any]], *, key: str = "out") -> tuple[Path, Path]:
    """Write the per-token frames (layout name → frame, stacked with a `layout` column) to
    `path` and the summaries (one row each) next to it; returns both paths."""
    p = check_results_path(path, key=key)
    per_token = _stacked(tokens)
    summary = pd.DataFrame([flat_row(s) for s in summaries])
    targets = (p, summary_path(p))
    parquet = p.suffix.lower() == ".parquet"
    with contextlib.ExitStack() as stack:  # both temp files complete before either rename
        handles = [stack.enter_context(atomic_write(t, "wb" if parquet else "w"))
                   for t in targets]
        for frame, handle in zip((per_token, summary), handles):
            if parquet:
                frame.to_parquet(handle, index=False)
            else:
                frame.to_csv(handle, index=False)
    return targets


def _stacked(tokens: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The per-token frames one under another, each row led by its layout's name."""
    frames = []
    for name, frame in tokens.items():
        frame = frame.drop(columns="layout", errors="ignore")
        frame.insert(0, "layout", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def flat_row(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars as they are, mappings as dotted columns, lists as JSON text (one cell)."""
    row: dict[str, Any] = {}
    for name, value in summary.items():
        column = f"{prefix}{name}"
        if isinstance(value, dict):
            row.update(flat_row(value, column + "."))
        elif isinstance(value, (list, tuple)):
            row[column] = json.dumps(value, default=str)
        else:
            row[column] = value
    return row
