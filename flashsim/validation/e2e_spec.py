"""Every option of an end-to-end validation run (the real decode from flash against the
simulator) in one checked model: defaults, ranges, and the one-line InputError a bad value
gives. Checked before anything is read, built or written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ..config import SizeBytes, validate_model
from ..device.gap import AUTO, parse_merge_gap
from ..errors import InputError
from ..layout.registry import LAYOUTS
from .spec import CalibrationOptions, _at_least_one, queue_depths

DEFAULT_E2E_LAYOUTS = ("sparse", "bundled", "windowed", "windowed+bundled", "coactivation")
"""The sparse layouts the decode can run (a dense layout has no sparse decode to compare)."""
DEFAULT_E2E_TOKENS = 64
"""Generated tokens per decode: the per-token statistics rest on this many tokens."""


class EndToEndSpec(CalibrationOptions):
    """The options of `validate_end_to_end` (see there for what each does). The calibration
    fields carry `ValidationSpec`'s names, so `validation.calibration.Calibration` takes it."""

    prompt_text: str
    layouts: list[str] = Field(default_factory=lambda: list(DEFAULT_E2E_LAYOUTS))
    qds: list[int] = Field(default_factory=lambda: [1, 8, 32])
    store: Path
    build_stores: bool = False
    """Build the layouts' stores that the `store` folder lacks; else a missing one is an error."""
    tokens: int = DEFAULT_E2E_TOKENS
    prompt_tokens: int | None = None
    """Cut the prompt to its first this many tokens (BOS included); None: the whole text."""
    prompt_source: str | None = None
    reps: int = 3
    seed: int = 0
    top_p: float | None = 0.9
    model_dir: Path | None = None
    merge_gap: Any = AUTO
    """`auto` (the device's break-even gap at each row's QD, as `simulate`) or bytes."""
    block_bytes: SizeBytes | None = None
    model_engine: Literal["fast", "des"] = "fast"
    simulate_options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for `cost.run.simulate_plan`: the memory and compute models."""
    wait_calibration: bool = True
    """Calibrate what the decode's compute pays for waiting on its reads (cost/wait_cost.py)
    from real decodes of the calibration text between the measured decodes, and predict
    with it (False: the profile's `decode_wait`, if any)."""
    wait_rows: list[tuple[str, int]] = Field(
        default_factory=lambda: [("sparse", 1), ("windowed+bundled", 32)])
    """(layout, QD) decoded for that calibration: long waits and short ones."""
    quiet: bool = True

    @field_validator("prompt_text")
    @classmethod
    def _some_prompt(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the prompt is empty (expected some text)")
        return text

    @field_validator("layouts")
    @classmethod
    def _sparse_layouts(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("no layouts (expected comma-separated sparse layout names)")
        return names

    @field_validator("qds", mode="before")
    @classmethod
    def _queue_depths(cls, qds: Any) -> list[int]:
        return queue_depths(qds)

    @field_validator("wait_rows")
    @classmethod
    def _wait_rows(cls, rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
        check_layouts([name for name, _ in rows])
        if not rows or any(q < 1 for _, q in rows):
            raise ValueError("expected (sparse layout, queue depth ≥ 1) pairs")
        return rows

    @field_validator("tokens", "reps", mode="before")
    @classmethod
    def _counts(cls, value: Any, info: ValidationInfo) -> int:
        return _at_least_one(value, f"{value!r} {info.field_name}", "an integer ≥ 1")

    @field_validator("prompt_tokens", mode="before")
    @classmethod
    def _prompt_tokens(cls, value: Any) -> int | None:
        return None if value is None else _at_least_one(value, f"{value!r} prompt tokens",
                                                         "an integer ≥ 1")



def check_layouts(names: list[str]) -> None:
    """InputError for an unknown layout or one that reads the dense FFN (no sparse decode)."""
    for name in names:
        if name not in LAYOUTS:
            raise InputError(f"unknown layout {name!r}", key="layouts",
                             expected="one of " + ", ".join(LAYOUTS))
        if LAYOUTS[name][0].dense_ffn:
            raise InputError(f"layout {name!r} reads the dense FFN; the end-to-end run decodes "
                             "sparsely", key="layouts",
                             expected="sparse layouts such as " + ",".join(DEFAULT_E2E_LAYOUTS))


def end_to_end_spec(options: dict[str, Any]) -> EndToEndSpec:
    """The spec of `validate_end_to_end`'s arguments; a bad value is an InputError keyed by
    its option, an unknown option a TypeError (as any Python call with a wrong keyword)."""
    unknown = sorted(set(options) - set(EndToEndSpec.model_fields))
    if unknown:
        raise TypeError(f"validate_end_to_end() got unexpected keyword arguments {unknown} "
                        f"(options: {', '.join(EndToEndSpec.model_fields)})")
    spec = validate_model(dict(options), EndToEndSpec)
    check_layouts(spec.layouts)
    parse_merge_gap(spec.merge_gap, key="merge_gap")
    if spec.calibrate and spec.profile is None and parse_merge_gap(spec.merge_gap) == AUTO:
        raise InputError("merge gap auto needs a device profile before the decode",
                         key="merge_gap", expected="--device PROFILE.yaml next to --calibrate, "
                                                   "or a fixed --merge-gap such as 0 or 8k")
    return spec
