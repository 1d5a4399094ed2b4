"""DeviceProfile: a flash device's measured chunk × queue-depth points, its fitted model, the fit.

One YAML file per device; the bundled ones (flashsim/data/devices/) are also found by name.
Loading is strict: unknown keys, bad sizes (`-4k`, `4q`), queue depth 0 or too few points to
fit are one-line InputErrors naming the file and the key. The fitted parameters are nested by
the model's stage in the file (schema_version 2, profile_layout.py) and flat in Python;
version 1 files (flat `params`) still load, and `flashsim device migrate` rewrites them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ..atomic import atomic_write_text
from ..cliutil import to_jsonable
from ..config import (
    SizeBytes,
    StrictModel,
    read_yaml,
    validate_model,
    validation_to_input_error,
)
from ..data import resolve_device
from ..errors import InputError
from .profile_layout import (
    NESTED_KEY,
    check_flat,
    file_version,
    flatten_params,
    nest_params,
    upgrade_data,
)

PROFILE_SCHEMA_VERSION = 2
"""The profile layout this flashsim writes (`schema_version` in the YAML): version 2 nests
`params` by stage (profile_layout.py)."""
READABLE_SCHEMA_VERSIONS = (1, 2)
"""Layouts this flashsim reads: version 1 (flat `params`) is migrated in memory."""
BANDWIDTH_MB_S = (1e-3, 1e9)
"""A bandwidth a profile may hold: from 1 kB/s (slower than a floppy) to 1 PB/s (far beyond any
link: the stand-in for "costs nothing"); a value outside is a unit mistake, and 1e-300 MB/s
would overflow every time computed from it."""
MAX_TIME_US = 1e8
"""The longest physical per-read or per-batch time: 100 s."""


def physical_value(value: Any, name: str) -> Any:
    """A profile's float `name` checked against what a device can be: finite, a bandwidth
    (`*_mb_s`) within BANDWIDTH_MB_S, a time (`*_us`) at most MAX_TIME_US."""
    if not isinstance(value, float):
        return value
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    low, high = BANDWIDTH_MB_S
    if name.endswith("_mb_s") and not low <= value <= high:
        raise ValueError(f"{value:g} MB/s is not a physical bandwidth "
                         f"(expected {low:g} to {high:g} MB/s)")
    if name.endswith("_us") and abs(value) > MAX_TIME_US:
        raise ValueError(f"{value:g} µs is not a physical time (expected at most "
                         f"{MAX_TIME_US:g} µs)")
    return value


def physical_field(model: Any, value: Any, handler: Any, info: ValidationInfo) -> Any:
    """A field's value as pydantic reads it, then `physical_value`; `true` is no number (lax
    pydantic would read it as 1)."""
    name = info.field_name or ""
    annotation = model.model_fields[name].annotation
    if isinstance(value, bool) and bool not in (getattr(annotation, "__args__", None)
                                                or (annotation,)):
        raise ValueError(f"{value} is not a {name.rsplit('_', 1)[-1]} value (expected a number)")
    return physical_value(handler(value), name)


MIN_POINTS_TO_FIT = 4
"""Fewer distinct steady-state (chunk, queue depth, pattern) points than this cannot pin the
model down (short-batch points come on top)."""


class DeviceParams(StrictModel):
    """Parameters of the layered flash model (see des.py): host → command → units → link."""

    host_overhead_us: float = Field(ge=0.0, description="host software time per read, before it "
                                                         "is issued (not in its latency)")
    command_latency_us: float = Field(ge=0.0, description="time a flash unit spends before its "
                                                           "first byte")
    command_latency_spread: float = Field(
        default=0.0, ge=0.0, le=4.0,
        description="read-to-read variation of the command latency: factor E^spread / "
                    "Γ(1 + spread), E ~ Exp(1) (Weibull, mean 1); 0 = every read alike, "
                    "1 = exponential, more = heavier tail")
    n_units: int = Field(ge=1, le=4096, description="parallel flash units (dies/channels)")
    unit_bandwidth_mb_s: float = Field(gt=0.0, description="transfer rate of one unit")
    link_bandwidth_mb_s: float = Field(gt=0.0, description="shared interface link cap")
    stripe_bytes: SizeBytes = Field(default=65536, description="bytes per unit before striping on")
    link_overhead_us: float = Field(
        default=0.0, ge=0.0,
        description="per-read time on the shared link besides the bytes (command processing "
                    "of a serial back-end, e.g. a virtual disk's I/O thread)")
    link_wakeup_us: float = Field(
        default=0.0, ge=0.0,
        description="extra link time for a read that finds the link idle (waking a back end "
                    "that sleeps when idle: a virtio kick, an interrupt); reads arriving while "
                    "it is busy skip it, so deep queues amortize it; 0 = none")
    transport_latency_us: float = Field(
        default=0.0, ge=0.0,
        description="fixed completion-path delay that occupies no unit (interrupt, virtio "
                    "round trip); counts in latency, not in unit busy time")
    host_cpus: int = Field(
        default=0, ge=0, le=4096,
        description="host CPUs that run the per-read host work (submit and completion), "
                    "shared by all workers, FIFO: 1 for a single submitting thread (fio's one "
                    "job, a Python reader under the GIL); 0 = every worker has its own (no "
                    "host queueing)")
    host_completion_us: float = Field(
        default=0.0, ge=0.0,
        description="host software time per read to reap its completion (interrupt, "
                    "io_getevents, waking the reader); counts in latency")
    link_congestion_per_read: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="empirical: each read in flight beyond the first slows link transfers by "
                    "this fraction (back-end interference of a shared/virtual disk); 0 = none")
    link_amortization_per_read: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="empirical: each read in flight beyond the first divides the link's "
                    "per-read overhead (link_overhead_us / (1 + this × (in flight − 1))): a "
                    "back end that serves its waiting requests in one pass (a virtual disk's "
                    "I/O thread) spends less per read the deeper the queue; 0 = none")
    host_call_us: float = Field(
        default=0.0, ge=0.0,
        description="host time per system call: every submit pays it (one io_submit per "
                    "read, as flashsim's AIO reader and fio's libaio), a reap only when it does "
                    "not follow a reap on its CPU (a run of completions is one io_getevents); "
                    "0 = none")
    link_transfer_spread: float = Field(
        default=0.0, ge=0.0, le=2.0,
        description="read-to-read variation of the link transfer time (the bytes part): "
                    "factor E^spread / Γ(1 + spread), E ~ Exp(1) (Weibull, mean 1), drawn "
                    "apart from the command factor; fitted to the largest chunk's latency "
                    "p99 / p50 at QD 1; 0 = every transfer alike")
    batch_start_us: float = Field(
        default=0.0, ge=0.0,
        description="fixed cost at the start of every batch: its first reads may be submitted "
                    "only this long after the batch starts (the host preparing and handing "
                    "the batch to the I/O engine); shifts a batch's makespan, invisible in "
                    "steady-state points; 0 = none")
    link_passes: bool = Field(
        default=False,
        description="the link serves in passes (des.py, step 3'): reads that reach it before a "
                    "pass begins are served together and complete together at its end; reads "
                    "arriving during a pass wait for the next. A pass begins only while the "
                    "shared host CPUs are idle (a virtual disk whose back end runs when the "
                    "guest's submitting thread waits). False = reads served one by one (FIFO)")
    link_pass_us: float = Field(
        default=0.0, ge=0.0,
        description="fixed time of one pass of the link (link_passes), on top of its reads' "
                    "overhead and bytes; 0 = none")

    @field_validator("*", mode="wrap")
    @classmethod
    def _physical(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        return physical_field(cls, value, handler, info)


class MeasuredInfo(StrictModel):
    """Where and how the points were measured."""

    method: str = "unknown"
    host: str | None = None
    file_system: str | None = None
    block_device: str | None = None
    date: str | None = None
    o_direct: bool | None = None
    file_path: str | None = None
    file_bytes: SizeBytes | None = None
    point_duration_s: float | None = None
    warmup_s: float | None = None
    repeats: int | None = None
    total_duration_s: float | None = None
    tool: str | None = None
    notes: str | None = None
    buffers: Literal["hugepage", "4k-pages", "unknown"] = Field(
        default="unknown",
        description="memory the reads landed in: hugepage (2 MiB pages: one DMA segment per "
                    "read) or 4k-pages (a scatter list; on a virtio disk reads of 48 KiB and "
                    "more ran 1.5-2.5x slower); unknown for profiles that did not record it")
    iomem: str | None = Field(default=None, description="fio's iomem (mem) option, for "
                                                       "profiles imported from fio")

    @field_validator("*", mode="wrap")
    @classmethod
    def _physical(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        return physical_field(cls, value, handler, info)


class DevicePoint(StrictModel):
    """One measured (or published, or assumed) random-read point."""

    chunk_bytes: SizeBytes
    queue_depth: int = Field(ge=1, le=4096)
    pattern: Literal["random", "sequential", "clustered"] = Field(
        default="random",
        description="random: chunk-aligned offsets over the whole file; sequential: "
                    "consecutive chunks; clustered (short batches only): every other chunk "
                    "from a random start, so a batch's reads are near one another but never "
                    "contiguous (like a plan's reads of one layer)")
    throughput_mb_s: float = Field(gt=0.0)
    latency_mean_us: float | None = Field(default=None, gt=0.0)
    latency_p50_us: float | None = Field(default=None, gt=0.0)
    latency_p99_us: float | None = Field(default=None, gt=0.0)
    source: Literal["measured", "published", "assumption"] = "measured"
    repeats: int | None = Field(default=None, ge=1)
    throughput_spread_pct: float | None = Field(default=None, ge=0.0)
    batch_reads: int | None = Field(
        default=None, ge=1,
        description="None: a steady-state closed-loop point (throughput and latency read off "
                    "its middle). n: a short-batch point: batches of n random reads, each from "
                    "an idle reader, their median makespan `batch_makespan_us` (ramp-up, "
                    "drain and the per-batch start cost included); throughput_mb_s = n × "
                    "chunk / makespan")
    batch_makespan_us: float | None = Field(default=None, gt=0.0)
    span_bytes: SizeBytes | None = Field(
        default=None, gt=0,
        description="None: offsets over the whole file. S: a span point, the reads confined "
                    "to the file's first S bytes (device/span.py)")
    note: str | None = None

    @field_validator("*", mode="wrap")
    @classmethod
    def _physical(cls, value: Any, handler: Any, info: ValidationInfo) -> Any:
        return physical_field(cls, value, handler, info)

    @model_validator(mode="after")
    def _batch_has_makespan(self) -> DevicePoint:
        if (self.batch_reads is None) != (self.batch_makespan_us is None):
            raise ValueError("batch_reads and batch_makespan_us go together (a short-batch "
                             "point needs both, a steady-state point neither)")
        if self.pattern == "clustered" and self.batch_reads is None:
            raise ValueError("pattern clustered is for short-batch points only")
        return self


def median_point(chunk_bytes: int, queue_depth: int,
                 repeats: Sequence[Mapping[str, Any]], batch_reads: int | None = None,
                 pattern: str = "random", span_bytes: int | None = None) -> DevicePoint:
    """One measured point from repeated measurements of it: the median of each value (missing
    or non-finite latencies skipped) and the throughput spread, (max − min) / median.

    With `batch_reads` (a short-batch point) each repeat holds `batch_makespan_us`; the
    point's throughput is n × chunk / the median makespan.
    """
    tput = np.array([r["throughput_mb_s"] for r in repeats], dtype=float)
    med = float(np.median(tput))

    def mid(key: str) -> float | None:
        vals = [r[key] for r in repeats if r.get(key) is not None and np.isfinite(r[key])]
        return round(float(np.median(vals)), 2) if vals else None

    makespan = None
    if batch_reads is not None:
        makespan = mid("batch_makespan_us")
        med = batch_reads * chunk_bytes / makespan
    return DevicePoint(
        chunk_bytes=chunk_bytes, queue_depth=queue_depth, throughput_mb_s=round(med, 3),
        latency_mean_us=mid("latency_mean_us"), latency_p50_us=mid("latency_p50_us"),
        latency_p99_us=mid("latency_p99_us"), source="measured", repeats=len(repeats),
        throughput_spread_pct=round(float(100 * (tput.max() - tput.min()) / med), 2),
        batch_reads=batch_reads, batch_makespan_us=makespan, pattern=pattern,
        span_bytes=span_bytes)


class PointError(StrictModel):
    """Model error at one point, in percent of the measured value (signed: model − measured)."""

    chunk_bytes: SizeBytes
    queue_depth: int
    pattern: Literal["random", "sequential", "clustered"] = "random"
    throughput_error_pct: float
    latency_error_pct: float | None = None
    batch_reads: int | None = None
    """A short-batch point: throughput_error_pct is then the error of n × chunk / makespan."""


class InterleavePoint(StrictModel):
    """One short-batch point read back to back and after a compute gap (medians, µs)."""

    chunk_bytes: int = Field(gt=0)
    queue_depth: int = Field(ge=1)
    batch_reads: int = Field(ge=1)
    back_to_back_us: float = Field(gt=0)
    after_compute_us: float = Field(gt=0)
    overhead_us: float


class InterleaveInfo(StrictModel):
    """What a batch costs more after the CPU computed than back to back (interleave.py):
    a decode's batches each follow a layer's compute, a replay's do not."""

    batch_overhead_us: float = Field(
        ge=0, le=1e5, description="median over the points of after-compute minus back-to-back "
                                  "wall time of a batch; added to every batch of a decode")
    gap_us: float = Field(gt=0, description="compute between two batches when measured")
    work: str = ""
    points: list[InterleavePoint] = Field(default_factory=list)


class SpanFactor(StrictModel):
    """What a span's points say: the measured time ratio and the bandwidth factor the model
    needs to reproduce it (device/span.py)."""

    span_bytes: SizeBytes = Field(gt=0)
    time_ratio: float = Field(gt=0, description="median over the span points' batches of "
                                                "makespan over the span / over the whole file")
    agree: bool = Field(description="every batch faster (or every one slower) over the span; "
                                    "if not, the span changes nothing (drift, not span)")
    bandwidth_factor: float = Field(ge=1.0, le=64.0, description="the unit and link "
                                    "bandwidths × this, every per-read and per-batch time × "
                                    "fixed_time_factor: the model reproduces the ratios "
                                    "(1 and 1: no effect)")
    fixed_time_factor: float = Field(default=1.0, gt=0.0, le=1.0,
                                     description="see bandwidth_factor")


class SpanInfo(StrictModel):
    """How the same reads speed up over a small span of the device (device/span.py)."""

    file_bytes: SizeBytes = Field(gt=0, description="the calibration file: the whole span")
    spans: list[SpanFactor] = Field(default_factory=list)


class ThrottleInfo(StrictModel):
    """The kernel's blk-throttle in front of the device (a cgroup's read caps): not fitted,
    read from the cgroup the calibration ran in (device/throttle.py). Each slice lets
    `read_iops` × slice reads and `read_mb_s` × slice bytes through at the device's own
    speed; what is over waits for the next slice."""

    read_iops: float | None = Field(default=None, gt=0, le=1e9,
                                    description="read I/Os per second (None: no cap)")
    read_mb_s: float | None = Field(default=None, gt=0, le=1e9,
                                    description="read MB/s, 1 MB = 1e6 bytes (None: no cap)")
    slice_ms: float = Field(default=100.0, gt=0, le=1000,
                            description="the throttle's slice (the kernel's is HZ/10: 100 ms)")
    source: str = Field(default="", description="where the caps were read")

    @model_validator(mode="after")
    def _some_cap(self) -> ThrottleInfo:
        if self.read_iops is None and self.read_mb_s is None:
            raise ValueError("a throttle needs read_iops or read_mb_s")
        return self


class DecodeWaitInfo(StrictModel):
    """What a decode from flash pays in compute for waiting on its reads (cost/wait_cost.py),
    measured by real decodes on this machine: extra compute over a decode from DRAM per
    non-empty batch and per second waited."""

    compute_per_batch_us: float = Field(ge=0, le=1e5)
    compute_per_io_s: float = Field(ge=0, le=100)
    source: str = ""
    calibration: dict[str, Any] = Field(default_factory=dict)


class FitInfo(StrictModel):
    """How well the fitted parameters reproduce the points."""

    median_abs_error_pct: float
    worst_abs_error_pct: float
    method: str = "scipy.optimize.least_squares on log errors, Nelder-Mead minimax polish"
    points: list[PointError] = Field(default_factory=list)
    duration_s: float | None = Field(default=None, description="seconds the fit took")
    cv_folds: int | None = Field(
        default=None, ge=2, description="k of the k-fold cross-validation (None: not run)")
    cv_method: str | None = None
    cv_median_abs_error_pct: float | None = Field(
        default=None, description="median |error| of every point predicted by a fit that "
                                  "did not see it (its fold left out)")
    cv_worst_abs_error_pct: float | None = None
    cv_points: list[PointError] = Field(
        default_factory=list, description="each point's error when its fold was left out")
    cv_duration_s: float | None = None
    holdout_median_abs_error_pct: float | None = Field(
        default=None, description="median |error| at the profile's holdout points (measured "
                                  "with the others, never fitted)")
    holdout_worst_abs_error_pct: float | None = None
    holdout_points: list[PointError] = Field(default_factory=list)
    correction_method: str | None = Field(
        default=None, description="how the profile's correction was chosen")
    uncorrected_cv_median_abs_error_pct: float | None = Field(
        default=None, description="the cross-validated error of the layered model alone "
                                  "(without the profile's measured-residual correction)")
    uncorrected_cv_worst_abs_error_pct: float | None = None
    uncorrected_holdout_median_abs_error_pct: float | None = Field(
        default=None, description="the holdout error of the layered model alone")
    uncorrected_holdout_worst_abs_error_pct: float | None = None


class DeviceProfile(StrictModel):
    """A device: its points, the fitted parameters and the fit quality."""

    schema_version: int = PROFILE_SCHEMA_VERSION
    name: str
    description: str = ""
    measured: MeasuredInfo = Field(default_factory=MeasuredInfo)
    points: list[DevicePoint]
    holdout_points: list[DevicePoint] = Field(
        default_factory=list,
        description="points measured with the others (same rounds) that no fit sees: their "
                    "error is the model's error off the fitted grid")
    span_points: list[DevicePoint] = Field(
        default_factory=list,
        description="short batches measured again over small spans of the file, never "
                    "fitted: how much faster the same reads are over a small store "
                    "(device/span.py)")
    params: DeviceParams | None = None
    correction: Literal["measured-residual", "none"] = Field(
        default="none",
        description="measured-residual: the layered model times the measured / modelled ratio "
                    "at the steady-state points, interpolated between them (residual.py); "
                    "none: the layered model alone")
    interleave: InterleaveInfo | None = Field(
        default=None, description="the after-compute cost of a batch (None: not measured, "
                                  "a decode's batches cost what back-to-back ones do)")
    decode_wait: DecodeWaitInfo | None = Field(
        default=None, description="what a decode from flash pays for waiting on its reads, "
                                  "measured by real decodes (None: not measured)")
    span: SpanInfo | None = Field(
        default=None, description="the bandwidth factors fitted to the span points (None: "
                                  "none measured, a plan costs alike over any span)")
    throttle: ThrottleInfo | None = Field(
        default=None, description="a blk-throttle cgroup's read caps in front of the device, "
                                  "as measured (None: none)")
    fit: FitInfo | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_layout(cls, data: Any) -> Any:
        """A profile mapping of any readable schema version in the current one: version 1's
        flat `params` are DeviceParams fields already, version 2's are flattened here (with
        errors naming the nested key, `params.link.bandwidth_mb_s`)."""
        if not isinstance(data, Mapping):
            return data
        version = file_version(data)
        if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
            raise InputError(f"profile schema version {version!r}, this flashsim reads "
                             "versions " + " and ".join(map(str, READABLE_SCHEMA_VERSIONS)),
                             key="schema_version")
        data = dict(data, schema_version=PROFILE_SCHEMA_VERSION)
        params = data.get("params")
        if version == 1:
            check_flat(params)
        elif params is not None and not isinstance(params, DeviceParams):
            data["params"] = _nested_params(params)
        return data

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, version: Any) -> int:
        if isinstance(version, bool) or version != PROFILE_SCHEMA_VERSION:
            raise ValueError(f"profile schema version {version!r}, this flashsim holds version "
                             f"{PROFILE_SCHEMA_VERSION}")
        return PROFILE_SCHEMA_VERSION

    @model_serializer(mode="wrap")
    def _nest_params(self, handler: Any) -> Any:
        """Dumps (and so the YAML) hold `params` nested by stage, as version 2 files do."""
        data = handler(self)
        if isinstance(data, dict) and isinstance(data.get("params"), Mapping):
            data["params"] = nest_params(data["params"])
        return data

    @model_validator(mode="after")
    def _enough_points(self) -> DeviceProfile:
        keys = {(p.chunk_bytes, p.queue_depth, p.pattern) for p in self.points
                if p.batch_reads is None}
        if len(keys) < MIN_POINTS_TO_FIT:
            raise ValueError(f"{len(keys)} distinct points, too few to fit the device model "
                             f"(need at least {MIN_POINTS_TO_FIT} chunk × queue depth points)")
        return self

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeviceProfile:
        """Read and validate a profile YAML file, or a bundled profile by name (`m1max-paper`);
        an InputError naming file and key on bad input."""
        file = resolve_device(path)
        return cls.from_dict(read_yaml(file), file=file)

    @classmethod
    def from_dict(cls, data: dict, *, file: str | os.PathLike | None = None) -> DeviceProfile:
        """Validate an in-memory mapping (same errors as `load`)."""
        try:
            return validate_model(data, cls, file=file)
        except InputError as exc:  # the layout's own errors are raised without the file
            if exc.file is not None or file is None:
                raise
            raise InputError(exc.problem, file=file, key=exc.key,
                             expected=exc.expected) from None

    def require_params(self, file: str | os.PathLike | None = None) -> DeviceParams:
        """The fitted parameters, or an InputError telling how to fit them."""
        if self.params is None:
            raise InputError("profile has no fitted parameters", file=file, key="params",
                             expected="a profile written by `flashsim calibrate` or "
                                      "`flashsim device fit`")
        return self.params

    def to_yaml(self) -> str:
        """YAML text with a stable key order (sizes as plain byte counts, params by stage)."""
        return dump_yaml(to_jsonable(self.model_dump(mode="python", exclude_none=True)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile atomically."""
        atomic_write_text(path, self.to_yaml())


class _Dumper(yaml.SafeDumper):
    """Safe YAML with long texts as folded blocks, so descriptions stay readable."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else (">" if len(text) > 90 else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """A profile mapping as YAML text, keys in their order."""
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, width=96, allow_unicode=True)


def _nested_params(nested: Any) -> DeviceParams:
    """A version 2 file's `params` validated; errors name the key as the file writes it."""
    flat = flatten_params(nested)
    try:
        return DeviceParams.model_validate(flat)
    except ValidationError as exc:
        err = validation_to_input_error(exc, DeviceParams)
        head, _, rest = (err.key or "").partition(".")
        key = ".".join(k for k in ("params", NESTED_KEY.get(head, head), rest) if k)
        raise InputError(err.problem, key=key, expected=err.expected) from None


def migrate_profile(path: str | os.PathLike, out: str | os.PathLike | None = None
                    ) -> dict[str, Any]:
    """Rewrite a profile file in the current layout (schema_version 2, params by stage),
    atomically, to `out` (default: in place); every other key and value is kept as written,
    and the file loads to the same DeviceParams. A file already current is left alone
    unless `out` names another file."""
    src = Path(path)
    data = read_yaml(src)
    before = DeviceProfile.from_dict(data, file=src)  # a file that does not load stays as is
    version = file_version(data)
    new = upgrade_data(data, version)
    after = DeviceProfile.from_dict(new, file=src)
    if after.params != before.params:
        raise AssertionError(f"{src}: the migrated parameters differ")  # a bug, never input
    target = Path(out) if out is not None else src
    write = version != PROFILE_SCHEMA_VERSION or target.resolve() != src.resolve()
    if write:
        atomic_write_text(target, dump_yaml(new))
    return {"profile": str(src), "out": str(target), "from_version": version,
            "schema_version": PROFILE_SCHEMA_VERSION, "written": write}


def load_params(source: DeviceProfile | DeviceParams | dict | str | os.PathLike) -> DeviceParams:
    """DeviceParams from a profile, a params object, a mapping or a profile path."""
    if isinstance(source, DeviceParams):
        return source
    if isinstance(source, DeviceProfile):
        return source.require_params()
    if isinstance(source, dict):
        return validate_model(source, DeviceParams)
    if isinstance(source, (str, os.PathLike)):
        return DeviceProfile.load(source).require_params(source)
    raise TypeError(f"cannot make device parameters from {type(source).__name__}")
