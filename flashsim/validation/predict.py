"""The model side of a validation run: the device model's per-token I/O time of each plan, as
many simulator passes as the real run had repetitions, each with its own per-read draws of
the model's command and transfer spreads (`cost.simulate.io_seconds_draws`); beside it the
interpolation baseline of the profile's measured points (`device.baseline`), which the model
has to beat."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..cost.simulate import io_seconds_draws
from ..device import load_params, make_device
from ..device.baseline import Baseline
from ..device.profile import DeviceParams, DevicePoint, DeviceProfile
from ..device.span import at_span
from ..layout.plan import IOPlan
from .spec import CalibrationOptions, ValidationSpec, profile_source


def given_profile(spec: CalibrationOptions) -> tuple[DeviceProfile | DeviceParams, dict[str, Any]]:
    """The profile the spec names (loaded; bare parameters stay parameters), and what the
    report says about it."""
    source = spec.profile
    if isinstance(source, (str, os.PathLike)):
        source = DeviceProfile.load(source)
    params = load_params(source)
    correction = source.correction if isinstance(source, DeviceProfile) else "none"
    return source, {"calibrated": False, "source": profile_source(spec.profile),
                    "correction": correction, "params": params.model_dump()}


def predict_token_s(plan: IOPlan, params: Any, queue_depth: int, draws: int,
                    model_engine: str = "fast", *, interleaved: bool = False) -> np.ndarray:
    """Predicted I/O seconds per (draw, token): layers one after another, as measured
    (`interleaved`: each batch after a decode's compute, as the real decode reads them)."""
    return io_seconds_draws(plan, params, queue_depth, draws, model_engine,
                            interleaved=interleaved).sum(axis=2)


def io_seconds_stream(plan: IOPlan, params: Any, queue_depth: int,
                      model_engine: str = "fast") -> float:
    """Predicted time of the whole plan as one stream at `queue_depth` (no layer barriers).

    What a fio replay of the plan's iolog measures (fio cannot wait between batches).
    """
    if plan.n_reads == 0:
        return 0.0
    device = make_device(params, model_engine)
    ptr = np.array([0, plan.n_reads], np.int64)
    device = at_span(device, plan.file_bytes)
    return float(np.asarray(device.run_batches(plan.offset_bytes, plan.length_bytes, ptr,
                                               queue_depth))[0])


def profile_baseline(spec: ValidationSpec, profile_info: dict[str, Any]) -> Baseline | None:
    """The interpolation baseline of the points the run's model was fitted to: the
    calibration's, or the given profile's; None for bare parameters (no points)."""
    if profile_info.get("calibrated"):
        return Baseline(DevicePoint.model_validate(p) for p in profile_info["points"])
    source = spec.profile
    if isinstance(source, DeviceProfile):
        return Baseline(source.points)
    if isinstance(source, (str, os.PathLike)):
        return Baseline(DeviceProfile.load(source).points)
    return None


def baseline_token_s(plan: IOPlan, baseline: Baseline, queue_depth: int) -> np.ndarray:
    """The baseline's I/O seconds per token: its batch makespans, layers one after another."""
    makespan = baseline.batch_makespan_s(plan.offset_bytes, plan.length_bytes, plan.batch_ptr,
                                         queue_depth)
    return makespan.reshape(plan.n_tokens, plan.n_layers).sum(axis=1)
