"""Where the bundled opt-mini model, its predictors, held-out text and reference traces live."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_MODEL_DIR = DATA_DIR / "opt-mini"
BUNDLED_PREDICTORS = BUNDLED_MODEL_DIR / "predictors.safetensors"
TEXT_DIR = DATA_DIR / "text"
TRACES_DIR = DATA_DIR / "traces"
REFERENCE_TRACE = TRACES_DIR / "opt-mini-ref.trace"
TRAINING_TRACE = TRACES_DIR / "opt-mini-train.trace"


def bundled_model_dir() -> Path:
    """The folder of the bundled opt-mini checkpoint (HF layout, fp16 safetensors)."""
    return BUNDLED_MODEL_DIR


def default_predictors_path(model_dir: str | Path) -> Path:
    """Predictors ship next to the model they were trained for: `<model_dir>/predictors.safetensors`."""
    return Path(model_dir) / "predictors.safetensors"
