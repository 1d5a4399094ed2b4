"""The one home of the bundled data: the opt-mini model, its predictors, held-out text,
traces, device profiles and the main job's config.

Everything here is package data, so it is found the same way from a checkout and from an
installed wheel; traces and device profiles are also found by name (`opt-mini-ref`,
`m1max-paper`) wherever a path is taken.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError

DATA_DIR = Path(__file__).resolve().parent
BUNDLED_MODEL_DIR = DATA_DIR / "opt-mini"
BUNDLED_PREDICTORS = BUNDLED_MODEL_DIR / "predictors.safetensors"
TEXT_DIR = DATA_DIR / "text"
TRACES_DIR = DATA_DIR / "traces"
REFERENCE_TRACE_NAME = "opt-mini-ref.trace"
TRAINING_TRACE_NAME = "opt-mini-train.trace"
REFERENCE_TRACE = TRACES_DIR / REFERENCE_TRACE_NAME
TRAINING_TRACE = TRACES_DIR / TRAINING_TRACE_NAME
DEVICES_DIR = DATA_DIR / "devices"
DEFAULT_CONFIG = DATA_DIR / "default.yaml"
"""The main job's sweep (`flashsim run` without --config)."""


def bundled_model_dir() -> Path:
    """The folder of the bundled opt-mini checkpoint (HF layout, fp16 safetensors)."""
    return BUNDLED_MODEL_DIR


def default_predictors_path(model_dir: str | Path) -> Path:
    """Predictors ship next to the model they were trained for: `<model_dir>/predictors.safetensors`."""
    return Path(model_dir) / "predictors.safetensors"


def bundled_trace_names() -> list[str]:
    """Names of the traces shipped with flashsim (e.g. 'opt-mini-ref')."""
    return sorted(p.stem for p in TRACES_DIR.glob("*.trace"))


def bundled_trace_path(name: str) -> Path:
    """Path of a bundled trace by name, with or without its '.trace' suffix."""
    path = _bundled(TRACES_DIR, name, ".trace")
    if path is None:
        raise InputError(f"no bundled trace {name!r}", key="trace",
                         expected="one of " + ", ".join(bundled_trace_names()))
    return path


def bundled_device_names() -> list[str]:
    """Names of the device profiles shipped with flashsim (e.g. 'm1max-paper')."""
    return sorted(p.stem for p in DEVICES_DIR.glob("*.yaml"))


def bundled_device_path(name: str) -> Path:
    """Path of a bundled device profile by name, with or without its '.yaml' suffix."""
    path = _bundled(DEVICES_DIR, name, ".yaml")
    if path is None:
        raise InputError(f"no bundled device profile {name!r}", key="device",
                         expected="one of " + ", ".join(bundled_device_names()))
    return path


def bundled_path(name: str) -> Path:
    """A bundled trace (`NAME.trace`) or device profile (`NAME.yaml`) by file name."""
    if name.endswith(".yaml"):
        return bundled_device_path(name)
    return bundled_trace_path(name)


def resolve_trace(name_or_path: str | os.PathLike) -> Path:
    """An existing trace file as given, else the bundled trace of that name."""
    return _resolve(name_or_path, TRACES_DIR, ".trace", "trace", bundled_trace_names)


def resolve_device(name_or_path: str | os.PathLike) -> Path:
    """An existing profile file as given, else the bundled profile of that name."""
    return _resolve(name_or_path, DEVICES_DIR, ".yaml", "device profile", bundled_device_names)


def _bundled(folder: Path, name: str, suffix: str) -> Path | None:
    """`folder/NAME{suffix}` when `name` is a plain file name of one; else None."""
    stem = name[:-len(suffix)] if name.endswith(suffix) else name
    if not stem or Path(stem).name != stem or stem.startswith("."):
        return None
    path = folder / f"{stem}{suffix}"
    return path if path.is_file() else None


def _resolve(name_or_path: str | os.PathLike, folder: Path, suffix: str, what: str,
             names: Callable[[], list[str]]) -> Path:
    """A path that exists wins; a bare name falls back to the bundled file, and is an
    InputError listing the bundled names when there is none. A missing path is returned as
    given, so the reader reports it in its own words."""
    path = Path(name_or_path)
    text = os.fspath(name_or_path)
    if path.exists() or path.name != text:
        return path
    bundled = _bundled(folder, text, suffix)
    if bundled is None:
        raise InputError(f"{what} does not exist (no such file or bundled name)", file=text,
                         expected=f"a {suffix} file or a bundled name: " + ", ".join(names()))
    return bundled
