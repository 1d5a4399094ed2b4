"""Resumable results: one Parquet file per run (written atomically), combined at the end.

`OUT/runs/<run_id>.parquet` holds the run's per-token table; its Parquet metadata key
`flashsim` holds JSON with the run id, status, error, the exact config, the summary and
the flashsim version. A file exists only once its run finished, so a sweep killed at any
moment resumes by skipping the ids whose file says status "ok".
`OUT/results.parquet` / `results.csv`: one row per run (config columns + summary);
`OUT/tokens.parquet`: every run's per-token rows with its run_id.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_write, atomic_write_text
from ..cliutil import to_jsonable
from ..errors import InputError

META_KEY = b"flashsim"
RUNS_DIR = "runs"
LOCK_FILE = ".flashsim-sweep.lock"
HELD_LOCK_FDS: set[int] = set()
"""Descriptors of the folder locks this process holds. A forked pool worker closes them at
start-up (`release_inherited_locks`): otherwise it shares the flock, and a worker that is
still exiting after the sweep was killed keeps the folder locked for a moment."""
TMP_PREFIX = ".flashsim-tmp-"  # atomic_write's temp files (left behind by kill -9)
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
TOKENS_PARQUET = "tokens.parquet"

# config keys that are not columns of results (where files are on one machine)
_HIDDEN = ("trace_path", "device_path", "train_trace_path")


class ResultStore:
    """The run files of one output folder."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / RUNS_DIR

    def create(self) -> None:
        """Make the folders (an existing folder is fine: that is how resuming works)."""
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError("output path exists and is not a folder", file=self.out_dir,
                             key="--out")
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder ({exc.strerror})",
                             file=self.out_dir, key="--out") from None

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (one sweep invocation writes a folder at a time); the
        kernel drops it when the process dies, so kill -9 leaves no stale lock. Temp files
        left by a killed writer are removed once the lock is held."""
        handle = open(self.out_dir / LOCK_FILE, "a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError("another flashsim sweep is writing to this folder",
                                 file=self.out_dir, key="--out",
                                 expected="a different --out, or wait for it") from None
            for stale in self.runs_dir.glob(TMP_PREFIX + "*"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            HELD_LOCK_FDS.add(handle.fileno())
            yield self
        finally:
            HELD_LOCK_FDS.discard(handle.fileno())
            handle.close()

    def path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.parquet"

    def write(self, result: dict[str, Any]) -> Path:
        """Write one run's result atomically (per-token table + metadata JSON)."""
        meta = {k: v for k, v in result.items() if k != "tokens"}
        table = pa.Table.from_pandas(result["tokens"], preserve_index=False)
        text = json.dumps(to_jsonable(meta), sort_keys=True)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               META_KEY: text.encode()})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        path = self.path(result["run_id"])
        with atomic_write(path) as handle:
            handle.write(buf.getvalue())
        return path

    def read_meta(self, run_id: str) -> dict[str, Any] | None:
        """The metadata of a finished run, or None (no file, or an unreadable one)."""
        path = self.path(run_id)
        if not path.is_file():
            return None
        try:
            schema = pq.read_schema(path)
            return json.loads(schema.metadata[META_KEY])
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
            return None

    def read(self, run_id: str) -> dict[str, Any]:
        """A run's metadata and its per-token table (`tokens`)."""
        meta = self.read_meta(run_id)
        if meta is None:
            raise InputError("no readable result for this run", file=self.path(run_id))
        meta["tokens"] = pq.read_table(self.path(run_id)).to_pandas()
        return meta

    def finished(self, run_ids: Iterable[str]) -> set[str]:
        """The ids among `run_ids` whose result file exists with status ok."""
        done = set()
        for rid in run_ids:
            meta = self.read_meta(rid)
            if meta is not None and meta.get("status") == "ok":
                done.add(rid)
        return done

    def combine(self, run_ids: list[str]) -> pd.DataFrame:
        """Write results.parquet/.csv and tokens.parquet for `run_ids` (in order); return results."""
        rows, token_frames = [], []
        for rid in run_ids:
            meta = self.read_meta(rid)
            if meta is None:
                continue
            rows.append(result_row(meta))
            tokens = pq.read_table(self.path(rid)).to_pandas()
            if len(tokens):
                tokens.insert(0, "run_id", rid)
                token_frames.append(tokens)
        results = pd.DataFrame(rows)
        _write_parquet(self.out_dir / RESULTS_PARQUET, results)
        atomic_write_text(self.out_dir / RESULTS_CSV, results.to_csv(index=False))
        tokens_all = pd.concat(token_frames, ignore_index=True) if token_frames else pd.DataFrame()
        _write_parquet(self.out_dir / TOKENS_PARQUET, tokens_all)
        return results


def result_row(meta: dict[str, Any]) -> dict[str, Any]:
    """One results row: id, status, error, the config columns, then the scalar summary."""
    row: dict[str, Any] = {"run_id": meta["run_id"], "status": meta["status"],
                           "error": meta.get("error")}
    config = meta["config"]
    row.update({k: v for k, v in config.items() if k not in _HIDDEN and k != "run_id"})
    for key, value in (meta.get("summary") or {}).items():
        if key in row:
            continue
        if isinstance(value, dict):
            row.update({f"{key}.{k}": v for k, v in value.items() if f"{key}.{k}" not in row})
        elif not isinstance(value, list):
            row[key] = value
    row["wall_s"] = meta.get("wall_s")
    return row


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    with atomic_write(path) as handle:
        handle.write(buf.getvalue())


def read_results(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The combined results table of a finished sweep folder."""
    path = Path(out_dir) / RESULTS_PARQUET
    if not path.is_file():
        raise InputError("no results.parquet here (run the sweep first)", file=path)
    return pd.read_parquet(path)


def release_inherited_locks() -> None:
    """In a forked worker: drop its copies of the parent's folder-lock descriptors (the
    parent's own descriptor keeps the lock)."""
    for fd in list(HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    HELD_LOCK_FDS.clear()
