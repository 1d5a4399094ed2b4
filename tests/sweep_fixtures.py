"""Helpers for the sweep tests: the smoke sweep YAML, rewritten into a temp folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flashsim.data import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "sweeps" / "smoke.yaml"
DEFAULT = DEFAULT_CONFIG
TRACE = "bundled:opt-mini-ref.trace"
TRAIN_TRACE = "bundled:opt-mini-train.trace"


def smoke_dict(**changes: Any) -> dict[str, Any]:
    """configs/sweeps/smoke.yaml as a mapping, device paths absolute (or bundled:), with
    `changes` applied (a value of None deletes the key)."""
    data = yaml.safe_load(SMOKE.read_text())
    data["devices"] = [d if d.startswith("bundled:") else str((SMOKE.parent / d).resolve())
                       for d in data["devices"]]
    data["traces"] = [TRACE]
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def write_yaml(folder: Path, data: dict[str, Any], name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def comparable(frame):
    """A results/tokens frame without what legitimately differs between runs (wall time)."""
    keys = [c for c in ("run_id", "token") if c in frame.columns]
    return frame.drop(columns=["wall_s"], errors="ignore").sort_values(keys).reset_index(drop=True)
