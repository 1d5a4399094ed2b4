"""Every option of a validation run in one checked model: defaults, ranges, and the error a
bad value gives (a one-line InputError naming the option)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ..config import SizeBytes, StrictModel, validate_model
from ..units import MAX_QUEUE_DEPTH

DEFAULT_CALIBRATION_BYTES = 1 << 30
"""Size of the random-data calibration file (`calibrate_on="file"`)."""
DEFAULT_BATCH_READS = (1, 4, 16, 64)
"""Short-batch calibration points: the plans' (token, layer) batches hold 1-60 reads."""
CALIBRATION_PIECES = 4
"""Each calibration point is measured in this many pieces per repetition (each 1/pieces of
the point's time), dealt out between the row blocks: a point's median then samples the
drifting disk at 4 × reps moments rather than reps, and the fit (and every prediction)
inherits less of where those few moments fell."""


def _at_least_one(value: Any, problem: str, expected: str) -> int:
    """`value` as an int ≥ 1; `True` is not a count (pydantic alone would read it as 1)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{problem} (expected {expected})")
    return int(value)


def queue_depths(qds: Any) -> list[int]:
    """A non-empty list of queue depths, each an integer from 1 to MAX_QUEUE_DEPTH (a
    ValueError for pydantic)."""
    expected = f"integers from 1 to {MAX_QUEUE_DEPTH}"
    if isinstance(qds, (str, bytes)) or not qds:
        raise ValueError(f"queue depths {qds!r} (expected {expected})")
    out = [_at_least_one(q, f"queue depths {list(qds)}", expected) for q in qds]
    if max(out) > MAX_QUEUE_DEPTH:
        raise ValueError(f"queue depths {out} (expected {expected})")
    return out


class CalibrationOptions(StrictModel):
    """Where the device profile comes from (a given one, or calibrated in the run) and how
    the calibration measures: shared by the replay and the end-to-end validation."""

    calibrate: bool = False  # before profile: its check reads calibrate
    profile: Any = Field(default=None, validate_default=True)
    """A device profile: a YAML path or a profile/params object (not needed with calibrate)."""
    calibration_bytes: SizeBytes = Field(default=DEFAULT_CALIBRATION_BYTES, gt=0)
    calibrate_on: Literal["file", "store"] = "file"
    calibration_duration_s: float = Field(default=0.5, gt=0.0)
    quick_fit: bool = False
    correction: Literal["auto", "measured-residual", "none"] = "auto"
    """The calibrated profile's correction (device/residual.py; auto: kept where it lowers the
    cross-validated error); a given profile keeps its own."""
    calibration_batch_reads: tuple[int, ...] = DEFAULT_BATCH_READS
    calibration_pieces: int = CALIBRATION_PIECES
    allow_page_cache: bool = False
    drift_probe: bool = False
    """With a given profile, re-measure a few of its own calibration points between the
    row blocks (or decodes) and scale its model by how much slower or faster they are now
    (device/drift.py); each row keeps its errors without that (`undrifted_*`). Off by
    default: in a run on the virtio disk the probe measured it 11 % faster than its profile
    while the decodes' I/O was within -8 to +15 % of the unscaled model, so it is a
    diagnostic, not a correction."""

    @field_validator("profile")
    @classmethod
    def _profile_or_calibrate(cls, profile: Any, info: ValidationInfo) -> Any:
        if profile is None and not info.data.get("calibrate"):
            raise ValueError("no device profile (expected --device PROFILE.yaml or --calibrate)")
        return profile

    @field_validator("calibration_pieces", mode="before")
    @classmethod
    def _pieces(cls, pieces: Any) -> int:
        return _at_least_one(pieces, f"{pieces!r} calibration pieces", "an integer ≥ 1")

    @field_validator("calibration_batch_reads", mode="before")
    @classmethod
    def _batch_reads(cls, reads: Any) -> tuple[int, ...]:
        return tuple(_at_least_one(n, f"batches of {n!r} reads", "integers ≥ 1") for n in reads)


class ValidationSpec(CalibrationOptions):
    """The options of `run_validation` (see `validate` for what each does)."""

    layouts: list[str]
    qds: list[int]
    store: Path
    build_stores: bool = False
    """Build the layouts' stores that `store` (a folder) lacks; else a missing one is an error."""
    model_dir: Path | None = None
    reps: int = 3
    tokens: int | None = Field(default=None, ge=1)
    model_engine: Literal["fast", "des"] = "fast"
    """Which device-model engine predicts: the numba fast path or the SimPy reference."""
    reader_engine: Literal["auto", "aio", "threads"] = "auto"
    """How the real reads are issued: native AIO (auto: where available) or threads."""
    with_fio: bool = False
    which: Literal["predicted", "active"] = "predicted"
    batch_gap_s: float = Field(default=0.0, ge=0.0)
    """Idle time before every (token, layer) batch of the replay (`measure.measure_plan`):
    what the decode's compute leaves between its batches; 0: back to back."""
    quiet: bool = True

    @field_validator("layouts")
    @classmethod
    def _some_layouts(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("no layouts (expected comma-separated layout names)")
        return names

    @field_validator("qds", mode="before")
    @classmethod
    def _queue_depths(cls, qds: Any) -> list[int]:
        return queue_depths(qds)

    @field_validator("reps", mode="before")
    @classmethod
    def _reps(cls, reps: Any) -> int:
        return _at_least_one(reps, f"{reps} repetitions", "at least 1")


def spec_from_options(layouts: list[str], qds: list[int],
                      options: dict[str, Any]) -> ValidationSpec:
    """The spec of `validate`'s arguments; a bad value is an InputError keyed by its option.

    An unknown option is a TypeError, as for any Python call with a wrong keyword."""
    unknown = sorted(set(options) - set(ValidationSpec.model_fields))
    if unknown:
        raise TypeError(f"validate() got unexpected keyword arguments {unknown} "
                        f"(options: {', '.join(ValidationSpec.model_fields)})")
    return validate_model({"layouts": list(layouts), "qds": list(qds), **options},
                          ValidationSpec)


def profile_source(profile: Any) -> str:
    """What a report calls the profile: its path, or "object"."""
    return str(profile) if isinstance(profile, (str, os.PathLike)) else "object"
