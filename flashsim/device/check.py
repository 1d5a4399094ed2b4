"""A profile's predictors against measured points: its model (the layered model times its
measured residual, residual.py, when the profile has that correction), the layered model
alone (fit.py, the DES fast path), and the interpolation baseline (baseline.py), per point
and summarized.

The points come from fio JSON (`fio.points_from_fio`), from a profile YAML (e.g. a fresh
`flashsim calibrate`: its points and holdout points), from the profile's own holdout points
(measured with its points, seen by no fit), or are held out of the profile's points here:
the model is refitted and the baseline rebuilt without them, then both predict them.
Points read into another kind of buffer than the profile's are refused: on a virtio disk
reads of 48 KiB and more ran 1.5-2.5x slower into 4 KiB pages than into huge pages, which
no predictor should be blamed for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import model_validator

from ..errors import InputError
from ..units import format_size
from . import make_device
from .baseline import Baseline
from .fast import FastDevice
from .fio import points_from_fio
from .fit import fit_profile, predict_batch_makespan_us, predict_detail
from .profile import DevicePoint, DeviceProfile
from .throttle import throttled

PREDICTORS = ("model", "layered", "baseline")
"""model: what simulate uses (with the profile's correction); layered: the DES alone."""


class PointsFile(DeviceProfile):
    """A profile YAML read for its points only: any number of them, no fit needed."""

    @model_validator(mode="after")
    def _enough_points(self) -> PointsFile:
        if not self.points:
            raise ValueError("no points (expected at least one measured point)")
        return self


@dataclass
class PointSet:
    """Measured points to check a profile against, and the buffers they were read into."""

    points: list[DevicePoint]
    buffers: str
    source: str


def load_points(path: str | os.PathLike) -> PointSet:
    """Points from fio JSON (.json) or a profile YAML (.yaml/.yml); InputError otherwise."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        points, info = points_from_fio([p])
        return PointSet(points, info.buffers, f"fio JSON {p}")
    if suffix in (".yaml", ".yml"):  # its fitted and its held-out points alike
        prof = PointsFile.load(p)
        return PointSet([*prof.points, *getattr(prof, "holdout_points", [])],
                        prof.measured.buffers, f"profile {p}")
    raise InputError("unsupported points file", file=p, key="--against",
                     expected="fio JSON (.json) or a profile YAML (.yaml)")


def holdout_point_set(profile: DeviceProfile, file: str | os.PathLike | None = None) -> PointSet:
    """The profile's own holdout points: measured with the others, seen by no fit."""
    points = list(getattr(profile, "holdout_points", []))
    if not points:
        raise InputError("the profile has no holdout points", file=file, key="holdout_points",
                         expected="a profile calibrated with holdout points, or --against")
    return PointSet(points, profile.measured.buffers, "the profile's holdout points")


def buffer_note(profile_buffers: str, points_buffers: str, *, allow_mismatch: bool,
                file: str | os.PathLike | None = None) -> str | None:
    """None when both sides read into the same kind of buffer; a note when either is unknown
    or a mismatch is allowed; InputError on a mismatch otherwise."""
    if profile_buffers == points_buffers and profile_buffers != "unknown":
        return None
    if "unknown" in (profile_buffers, points_buffers):
        return (f"buffers: profile {profile_buffers}, points {points_buffers}: the comparison "
                "may mix buffer kinds")
    if not allow_mismatch:
        raise InputError(f"points read into {points_buffers} buffers, the profile into "
                         f"{profile_buffers}", file=file, key="--against",
                         expected="points measured with the profile's buffers, or "
                                  "--allow-buffer-mismatch")
    return f"buffers differ (profile {profile_buffers}, points {points_buffers}): allowed"


def _err(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None:
        return None
    return 100.0 * (pred - meas) / meas


def _model_values(device: Any, p: DevicePoint) -> dict[str, float | None]:
    if device is None:
        return {"throughput_mb_s": None, "latency_us": None, "batch_makespan_us": None}
    if p.batch_reads is not None:
        m = predict_batch_makespan_us(device, p.chunk_bytes, p.queue_depth, p.batch_reads,
                                      p.pattern)
        return {"throughput_mb_s": p.batch_reads * p.chunk_bytes / m, "latency_us": None,
                "batch_makespan_us": m}
    d = predict_detail(device, p.chunk_bytes, p.queue_depth, p.pattern)
    return {"throughput_mb_s": d["throughput_mb_s"], "latency_us": d["latency_mean_us"],
            "batch_makespan_us": None}


def _baseline_values(base: Baseline, p: DevicePoint) -> dict[str, float | None]:
    try:
        if p.batch_reads is not None:
            m = base.batch_makespan_us(p.chunk_bytes, p.queue_depth, p.batch_reads, p.pattern)
            return {"throughput_mb_s": p.batch_reads * p.chunk_bytes / m, "latency_us": None,
                    "batch_makespan_us": m}
        return {"throughput_mb_s": float(base.throughput_mb_s(p.chunk_bytes, p.queue_depth,
                                                                p.pattern)),
                "latency_us": float(base.latency_us(p.chunk_bytes, p.queue_depth, p.pattern)),
                "batch_makespan_us": None}
    except InputError:  # a pattern the profile has no steady-state points of
        return {"throughput_mb_s": None, "latency_us": None, "batch_makespan_us": None}


def point_rows(points: Sequence[DevicePoint], profile: DeviceProfile | None,
               baseline: Baseline) -> list[dict[str, Any]]:
    """Per point: measured, model, layered-model and baseline throughput, latency (steady
    state) or batch makespan (short batch), and each predictor's signed % error (predicted
    − measured). `profile` gives the model (None or no params: no model predictions)."""
    layered = model = None
    if profile is not None and profile.params is not None:
        layered = throttled(FastDevice(profile.params), profile.throttle)
        model = make_device(profile) if profile.correction != "none" else layered
    rows = []
    for p in points:
        row: dict[str, Any] = {
            "chunk": format_size(p.chunk_bytes), "chunk_bytes": p.chunk_bytes,
            "queue_depth": p.queue_depth, "pattern": p.pattern, "batch_reads": p.batch_reads,
            "measured_throughput_mb_s": p.throughput_mb_s,
            "measured_latency_us": p.latency_mean_us if p.batch_reads is None else None,
            "measured_batch_makespan_us": p.batch_makespan_us}
        for name, values in (("model", _model_values(model, p)),
                             ("layered", _model_values(layered, p)),
                             ("baseline", _baseline_values(baseline, p))):
            for key, value in values.items():
                row[f"{name}_{key}"] = value
            row[f"{name}_throughput_error_pct"] = _err(values["throughput_mb_s"],
                                                       p.throughput_mb_s)
            row[f"{name}_latency_error_pct"] = _err(values["latency_us"],
                                                    row["measured_latency_us"])
        rows.append(row)
    return rows


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median_abs_error_pct": None, "worst_abs_error_pct": None,
                "median_error_pct": None}
    v = np.asarray(values)
    return {"n": len(v), "median_abs_error_pct": float(np.median(np.abs(v))),
            "worst_abs_error_pct": float(np.max(np.abs(v))),
            "median_error_pct": float(np.median(v))}


def error_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per predictor: median and worst |error| (and the median signed error) of throughput,
    of latency, and of both together."""
    out = {}
    for name in PREDICTORS:
        tput = [r[f"{name}_throughput_error_pct"] for r in rows
                if r[f"{name}_throughput_error_pct"] is not None]
        lat = [r[f"{name}_latency_error_pct"] for r in rows
               if r[f"{name}_latency_error_pct"] is not None]
        out[name] = {"throughput": _stats(tput), "latency": _stats(lat), "all": _stats(tput + lat)}
    return out


def check_against(profile: DeviceProfile, points: PointSet, *, allow_buffer_mismatch: bool = False,
                  profile_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """The profile's model and baseline against `points` (buffer kinds checked first)."""
    note = buffer_note(profile.measured.buffers, points.buffers,
                       allow_mismatch=allow_buffer_mismatch, file=profile_file)
    rows = point_rows(points.points, profile, Baseline(profile.points))
    return {"profile": profile.name, "against": points.source,
            "profile_buffers": profile.measured.buffers, "points_buffers": points.buffers,
            "buffer_note": note, "model": "fitted" if profile.params else None,
            "correction": profile.correction,
            "summary": error_summary(rows), "points": rows}


def held_out(point: DevicePoint, chunks: set[int], qds: set[int]) -> bool:
    """True for a point whose chunk or queue depth is among the held-out ones."""
    return point.chunk_bytes in chunks or point.queue_depth in qds


def check_held_out(profile: DeviceProfile, *, chunks: Sequence[int] = (),
                   qds: Sequence[int] = (), quick_fit: bool = False) -> dict[str, Any]:
    """Hold the points of `chunks` and `qds` out of `profile`, refit the model and rebuild
    the baseline on the rest, and compare both on the held-out points."""
    chunk_set, qd_set = {int(c) for c in chunks}, {int(q) for q in qds}
    test = [p for p in profile.points if held_out(p, chunk_set, qd_set)]
    if not test:
        raise InputError("no point of the profile is held out", key="--hold-out-chunks",
                         expected="chunk sizes or queue depths the profile has points at")
    train_points = [p for p in profile.points if not held_out(p, chunk_set, qd_set)]
    train = DeviceProfile.from_dict(
        {"name": profile.name, "measured": profile.measured.model_dump(),
         "points": [p.model_dump() for p in train_points]})
    fitted = fit_profile(train, quick=quick_fit, correction=profile.correction)
    rows = point_rows(test, fitted, Baseline(train_points))
    return {"profile": profile.name, "against": "held-out points of the profile",
            "held_out_chunks": sorted(chunk_set), "held_out_qds": sorted(qd_set),
            "n_train": len(train_points), "n_held_out": len(test), "quick_fit": quick_fit,
            "train_fit_median_abs_error_pct": fitted.fit.median_abs_error_pct,
            "train_fit_worst_abs_error_pct": fitted.fit.worst_abs_error_pct,
            "params": fitted.params.model_dump(), "correction": fitted.correction,
            "profile_buffers": profile.measured.buffers,
            "buffer_note": None, "model": "refitted without the held-out points",
            "summary": error_summary(rows), "points": rows}


def summary_lines(payload: dict[str, Any]) -> str:
    """One line per predictor: median and worst |error| of throughput and latency."""
    lines = []
    for name in PREDICTORS:
        s = payload["summary"][name]
        parts = []
        for q in ("throughput", "latency", "all"):
            st = s[q]
            if st["n"]:
                parts.append(f"{q} median |err| {st['median_abs_error_pct']:.1f}%, worst "
                             f"{st['worst_abs_error_pct']:.1f}% (n {st['n']})")
        lines.append(f"{name}: " + ("; ".join(parts) if parts else "no predictions"))
    if payload.get("buffer_note"):
        lines.append(payload["buffer_note"])
    return "\n".join(lines)
