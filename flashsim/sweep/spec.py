"""The sweep YAML: pydantic models, path resolution and the checks done before anything runs.

A sweep names values on six axes (traces, devices, layouts, windows, queue depths, DRAM
budgets) plus fixed settings (among them `merge_gap`: `auto`, the device's break-even gap
resolved per run from its device and queue depth, or a size; 0 = paper-literal). Axes listed
under `grid:` are crossed; the other axes are zipped (equal lengths, or length 1 = fixed).
Every problem is a one-line InputError naming the YAML file and the key path, raised before
any output is written.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from ..config import SizeBytes, StrictModel, load_yaml_model
from ..data import bundled_path
from ..device.gap import DEFAULT_MERGE_GAP, parse_merge_gap
from ..device.profile import DeviceProfile
from ..errors import InputError
from ..layout.registry import COMPARE_ORDER, layout_names
from ..trace.format import ActivationTrace

AXES = ("traces", "devices", "layouts", "windows", "queue_depths", "dram_budgets")
"""The sweep axes, in the order runs are expanded."""

BUNDLED_PREFIX = "bundled:"
"""`bundled:NAME.trace` is a trace in flashsim/data/traces/, `bundled:NAME.yaml` a device
profile in flashsim/data/devices/ (both installed with the package)."""


def _known_layout(name: str) -> str:
    if name not in layout_names():
        raise ValueError(f"unknown layout {name!r} (expected one of {', '.join(layout_names())})")
    return name


def _default_layouts() -> list[str]:
    return list(COMPARE_ORDER)


def _merge_gap(value: Any) -> Any:
    try:
        return parse_merge_gap(value)
    except InputError as exc:  # pydantic collects ValueErrors only
        raise ValueError(f"{exc.problem} (expected {exc.expected})") from None


LayoutName = Annotated[str, AfterValidator(_known_layout)]
MergeGap = Annotated[Literal["auto"] | int, BeforeValidator(_merge_gap)]
"""`auto` (the device's break-even gap at the run's queue depth) or a size in bytes."""
Window = Annotated[int, Field(ge=1)]
QueueDepth = Annotated[int, Field(ge=1, le=4096)]


class HostRates(StrictModel):
    """Memory-copy and compute rates; left out, they are measured once per output folder."""

    memcpy_gb_s: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    compute_fixed_us_per_layer: float | None = Field(default=None, ge=0.0)
    compute_ns_per_neuron: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _compute_pair(self) -> HostRates:
        if (self.compute_fixed_us_per_layer is None) != (self.compute_ns_per_neuron is None):
            raise ValueError("give both compute_fixed_us_per_layer and compute_ns_per_neuron, "
                             "or neither (then compute is calibrated on this machine)")
        return self


class SweepSpec(StrictModel):
    """One sweep file. Lists are axes; `grid` names the crossed ones (default: all)."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.+-]+$")
    description: str = ""
    traces: list[str] = Field(default_factory=lambda: [BUNDLED_PREFIX + "opt-mini-ref.trace"])
    devices: list[str]
    layouts: list[LayoutName] = Field(default_factory=_default_layouts)
    windows: list[Window | None] = Field(default_factory=lambda: [None])
    queue_depths: list[QueueDepth] = Field(default_factory=lambda: [32])
    dram_budgets: list[SizeBytes | None] = Field(default_factory=lambda: [None])
    grid: list[Literal[AXES]] | None = None  # type: ignore[valid-type]
    block_bytes: SizeBytes = 4096
    merge_gap: MergeGap = DEFAULT_MERGE_GAP
    engine: Literal["fast", "des"] = "fast"
    neuron_set: Literal["predicted", "active"] = "predicted"
    max_tokens: int | None = Field(default=None, ge=1)
    train_trace: str = BUNDLED_PREFIX + "opt-mini-train.trace"
    host: HostRates = Field(default_factory=HostRates)

    @model_validator(mode="before")
    @classmethod
    def _scalars_are_one_value_axes(cls, data: Any) -> Any:
        """`queue_depths: 32` means `queue_depths: [32]`."""
        if isinstance(data, dict):
            data = {k: [v] if k in AXES and isinstance(v, (str, int, float)) else v
                    for k, v in data.items()}
        return data


@dataclass(frozen=True)
class FileRef:
    """A file named in the sweep: as written (label), where it is, and its content hash."""

    label: str
    path: str
    sha256: str


@dataclass
class Sweep:
    """A validated sweep: the spec, its file, and every named file resolved and hashed."""

    spec: SweepSpec
    file: Path
    traces: list[FileRef]
    devices: list[FileRef]
    train_trace: FileRef | None
    geometries: dict[str, Any] = field(default_factory=dict)  # trace label -> ModelGeometry

    @property
    def name(self) -> str:
        return self.spec.name or self.file.stem


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (part of each run's identity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_path(text: str, base: Path) -> Path:
    """`bundled:NAME` → the packaged trace or profile; else relative to the YAML file's folder."""
    if text.startswith(BUNDLED_PREFIX):
        return bundled_path(text[len(BUNDLED_PREFIX):])
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base / path


def _ref(text: str, base: Path, file: Path, key: str) -> FileRef:
    try:
        path = resolve_path(text, base)
    except InputError as exc:  # an unknown bundled name: say which sweep file and key
        raise InputError(exc.problem, file=file, key=key, expected=exc.expected) from None
    if not path.is_file():
        raise InputError(f"file does not exist: {path}", file=file, key=key,
                         expected="a path relative to the sweep file, absolute, or bundled:NAME")
    return FileRef(text, str(path.resolve()), file_sha256(path))


def load_sweep(path: str | os.PathLike, *, check_files: bool = True) -> Sweep:
    """Read and check a sweep YAML: keys, values, paths, profiles, traces, zero runs.

    Nothing is written; any problem is a one-line InputError with the file and key path.
    """
    file = Path(path)
    spec = load_yaml_model(file, SweepSpec)
    check_axes(spec, file)
    base = file.resolve().parent
    traces = [_ref(t, base, file, f"traces.{i}") for i, t in enumerate(spec.traces)]
    devices = [_ref(d, base, file, f"devices.{i}") for i, d in enumerate(spec.devices)]
    needs_train = any("coactivation" in name for name in spec.layouts)
    train = _ref(spec.train_trace, base, file, "train_trace") if needs_train else None
    sweep = Sweep(spec, file, traces, devices, train)
    if check_files:
        _check_devices(sweep)
        _check_traces(sweep)
    return sweep


def check_axes(spec: SweepSpec, file: Path) -> None:
    """Zero runs and zipped axes of unequal lengths are errors naming the axis."""
    for axis in AXES:
        if len(getattr(spec, axis)) == 0:
            raise InputError(f"the sweep has zero runs: {axis!r} is an empty list", file=file,
                             key=axis, expected="at least one value")
    grid = spec.grid if spec.grid is not None else list(AXES)
    dupes = sorted({a for a in grid if grid.count(a) > 1})
    if dupes:
        raise InputError(f"axis {dupes[0]!r} is listed twice", file=file, key="grid")
    zipped = [a for a in AXES if a not in grid and len(getattr(spec, a)) > 1]
    lengths = {a: len(getattr(spec, a)) for a in zipped}
    if len(set(lengths.values())) > 1:
        first, *rest = zipped
        other = next(a for a in rest if lengths[a] != lengths[first])
        raise InputError(f"zipped axes differ in length ({first} has {lengths[first]}, "
                         f"{other} has {lengths[other]})", file=file, key=other,
                         expected="equal lengths or length 1, or list the axis under grid "
                                  "to cross it")


def _check_devices(sweep: Sweep) -> None:
    for i, ref in enumerate(sweep.devices):
        try:
            DeviceProfile.load(ref.path).require_params(ref.path)
        except InputError as exc:
            raise InputError(f"bad device profile ({exc})", file=sweep.file,
                             key=f"devices.{i}") from None


def _check_traces(sweep: Sweep) -> None:
    refs = [(f"traces.{i}", r) for i, r in enumerate(sweep.traces)]
    if sweep.train_trace is not None:
        refs.append(("train_trace", sweep.train_trace))
    for key, ref in refs:
        try:
            trace = ActivationTrace.load(ref.path)
        except InputError as exc:
            raise InputError(f"bad trace ({exc})", file=sweep.file, key=key) from None
        if key != "train_trace":
            if sweep.spec.neuron_set == "predicted" and trace.predicted is None:
                raise InputError("trace has no predicted sets", file=sweep.file, key=key,
                                 expected="a trace captured with a predictor, or "
                                          "neuron_set: active")
            if trace.n_tokens <= trace.n_prompt_tokens:
                raise InputError("trace has no generated tokens", file=sweep.file, key=key)
            sweep.geometries[ref.label] = trace.geometry
