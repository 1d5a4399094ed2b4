"""Validation: the real reader replays each layout's IOPlan on its weight store; the simulator
predicts the same plan; per-token I/O time measured vs predicted, next to the noise floor.

A run is a chain of steps, each in its own module: the options (`spec.ValidationSpec`) →
the plans and their stores (`setup.prepare`) → the order of the reads (`schedule`: every
repetition reads each layout × QD row in blocks of tokens interleaved with the other rows'
blocks, the order rotating, so the drift of a shared disk, ~20 % over minutes here, hits
every row alike) → the real reads (`measure`), with a quick calibration dealt out between
the blocks (`calibration`) → the device model's prediction (`predict`) → the report rows
(`rows`). A token's measured time is the median of its repetitions, its predicted time the
median over as many simulator passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..device import make_device
from ..device.base import DeviceModel
from ..device.baseline import Baseline
from ..device.drift import scaled as drift_scaled
from ..device.profile import DeviceParams, DeviceProfile
from ..device.span import bandwidth_factor, fixed_time_factor, time_ratio
from ..device.throttle import ThrottledDevice, blkio_throttle_of
from ..progress import progress
from ..trace.format import ActivationTrace
from .calibration import Calibration
from .drift_probe import probe_of
from .fio_export import require_fio, run_fio
from .measure import Measured, measure_rows
from .predict import (
    baseline_token_s,
    given_profile,
    io_seconds_stream,
    predict_token_s,
    profile_baseline,
)
from .rows import ValidationResult, baseline_stats, layout_row, run_info
from .schedule import RowKey, schedule
from .setup import Setup, prepare
from .spec import ValidationSpec, spec_from_options


def validate(trace: ActivationTrace, layouts: list[str], qds: list[int],
             **options: Any) -> ValidationResult:
    """Measure and predict per-token I/O of every layout × QD on `trace` (see module doc).

    `options` are `ValidationSpec`'s fields; a bad value is an InputError naming it. Among them:
    `store`: a store file (used for every layout; it must match each plan) or a folder where
    each layout's store is (named by placement digest); `build_stores` builds those missing.
    `profile`: a device profile (path or object); with `calibrate` a quick profile is
    measured in the same run and used instead (one round per repetition, dealt out between
    its row blocks; per point the median over rounds, then the fit) on a `calibration_bytes`
    random-data file in the store folder (`calibrate_on="file"`) or over the largest store
    (`"store"`: the file extent the plans read), with short batches of
    `calibration_batch_reads` reads (empty: none) at the plans' QDs read as a plan's batches
    are; each point in `calibration_pieces` pieces per repetition. `model_engine` (fast |
    des) is the device model that predicts; `reader_engine` (auto | aio | threads) issues
    the real reads; `train_trace` is what the co-activation layouts learn from.
    """
    train_trace = options.pop("train_trace", None)
    return run_validation(spec_from_options(layouts, qds, options), trace, train_trace)


def run_validation(spec: ValidationSpec, trace: ActivationTrace,
                   train_trace: ActivationTrace | None = None) -> ValidationResult:
    """The run `spec` describes on `trace`: plan, read, calibrate, predict, report."""
    setup = prepare(spec, trace, train_trace)
    if spec.with_fio:
        require_fio()
    calibration = (Calibration.target(spec, setup.plans, setup.stores, setup.folder)
                   if spec.calibrate else None)
    probe = None
    if calibration is None:  # a bad profile fails before any reading
        params, profile_info = given_profile(spec)
        probe = probe_of(spec.profile, spec.qds, setup.folder) if spec.drift_probe else None
    slots = schedule(setup.keys, setup.n_tokens, spec.reps)
    before = (calibration.measure_part if calibration is not None
              else probe.measure_part if probe is not None else None)
    try:
        measured = measure_rows(spec, setup, slots, before)
    finally:
        if probe is not None:
            probe.remove_file()
    if calibration is not None:
        params, profile_info = calibration.fit()
    fio = fio_times(setup) if spec.with_fio else {}
    baseline = profile_baseline(spec, profile_info)
    model = make_device(params, spec.model_engine)
    profile_info["throttle"] = throttle_record(model, setup.stores[0].path)
    drift = probe.drift() if probe is not None else None
    scaled = model if drift is None else drift_scaled(model, drift.factor)
    rows, per_token = predicted_rows(spec, setup, measured, scaled, fio, baseline=baseline)
    if probe is not None:
        profile_info["drift_probe"] = probe.info(drift)
        plain, _ = predicted_rows(spec, setup, measured, model, fio)
        for row, unscaled in zip(rows, plain):
            for key in ("error_p50_pct", "error_p99_pct"):
                row[f"undrifted_{key}"] = unscaled[key]
    return ValidationResult(rows, per_token, run_info(spec, setup.trace, measured, profile_info))


def throttle_record(model: DeviceModel, path: Any) -> dict[str, Any]:
    """The throttle the model runs behind and the one this run read behind (a blkio
    cgroup's caps on the store's disk): a profile of a throttled device predicts a run
    without the throttle (or the other way round) no better than another device's would."""
    modelled = model.throttle if isinstance(model, ThrottledDevice) else None
    read = blkio_throttle_of(path)
    return {"model": None if modelled is None else modelled.model_dump(),
            "this_run": None if read is None else read.model_dump(),
            "agree": _caps(modelled) == _caps(read)}


def _caps(throttle: Any) -> tuple[float | None, float | None] | None:
    return None if throttle is None else (throttle.read_iops, throttle.read_mb_s)


def fio_times(setup: Setup) -> dict[RowKey, dict[str, float]]:
    """fio's replay of every row's plan (its time per token and throughput)."""
    return {(i, q): run_fio(setup.plans[i], setup.stores[i].path, setup.folder / "fio", q,
                            name=f"{setup.layouts[i].name}-qd{q}")
            for i, q in progress(setup.keys, total=len(setup.keys), desc="fio", unit="row")}


def predicted_rows(spec: ValidationSpec, setup: Setup, measured: Measured,
                   params: DeviceProfile | DeviceParams | DeviceModel,
                   fio: dict[RowKey, dict[str, float]],
                   baseline: Baseline | None = None
                   ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], dict[str, np.ndarray]]]:
    """Predict every row (one simulator pass per repetition) and compare with `measured`;
    with `baseline`, its prediction beside the model's."""
    rows, per_token = [], {}
    params = make_device(params, spec.model_engine)  # one residual for every row
    for i, q in progress(setup.keys, total=len(setup.keys), desc="predict", unit="row",
                         quiet=spec.quiet):
        plan, name = setup.plans[i], setup.layouts[i].name
        pred = predict_token_s(plan, params, q, spec.reps, spec.model_engine)
        row = layout_row(name, plan, q, spec.reps, measured.io_s[(i, q)],
                         measured.dispatch_s[(i, q)], pred)
        # a model-free baseline scales by the span's measured time ratio (span.py)
        span = getattr(params, "span", None)
        base = None if baseline is None else (baseline_token_s(plan, baseline, q)
                                              * time_ratio(span, plan.file_bytes))
        row.update(baseline_stats(measured.io_s[(i, q)], base),
                   span_bandwidth_factor=round(bandwidth_factor(span, plan.file_bytes), 4),
                   span_fixed_time_factor=round(fixed_time_factor(span, plan.file_bytes), 4))
        if (i, q) in fio:
            row.update(fio[(i, q)])
            one = io_seconds_stream(plan, params, q, spec.model_engine)
            row["predicted_stream_ms_per_token"] = one * 1e3 / plan.n_tokens
        rows.append(row)
        per_token[(name, int(q))] = {"measured_s": measured.io_s[(i, q)], "predicted_s": pred}
        if base is not None:
            per_token[(name, int(q))]["baseline_s"] = base
    return rows, per_token
