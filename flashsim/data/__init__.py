"""The one home of the bundled data: the opt-mini model, its predictors, held-out text, traces.

Everything here is package data, so it is found the same way from a checkout and from an
installed wheel.
"""

from __future__ import annotations

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
    stem = name[:-len(".trace")] if name.endswith(".trace") else name
    path = TRACES_DIR / f"{stem}.trace"
    if not path.is_file():
        raise InputError(f"no bundled trace {name!r}", key="trace",
                         expected="one of " + ", ".join(bundled_trace_names()))
    return path
