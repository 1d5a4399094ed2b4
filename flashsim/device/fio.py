"""Device points from fio's JSON output (randread, direct=1, one point per job).

Jobs with the same (bs, iodepth) across files are repeats: the point is their median and
the spread is recorded. Anything that is not a direct random read is rejected, naming the
file and the job. The jobs' `iomem` (alias `mem`) says which buffers fio read into:
shmhuge / mmaphuge are huge pages, the default malloc and the other kinds 4 KiB pages.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..config import validation_to_input_error
from ..errors import InputError
from ..units import parse_size
from .profile import DevicePoint, DeviceProfile, MeasuredInfo, median_point


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError("file does not exist", file=path,
                         expected="a fio --output-format=json file")
    text = path.read_text(errors="replace")
    start = text.find("{")  # fio may print warnings before the JSON
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=path,
                         expected="fio --output-format=json output") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list) or not data["jobs"]:
        raise InputError("no 'jobs' list", file=path, expected="fio --output-format=json output")
    return data


def _option(job: dict, glob: dict, name: str) -> Any:
    opts = job.get("job options") or {}
    return opts[name] if name in opts else glob.get(name)


def _mapping(value: Any, *, file: Path, key: str) -> dict:
    """`value` when it is a JSON object (a missing one is empty), else an InputError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"is {type(value).__name__}", file=file, key=key,
                         expected="a JSON object, as fio --output-format=json writes")
    return value


def _number(value: Any, *, file: Path, key: str, default: float = float("nan")) -> float:
    """A JSON number (a missing one is `default`); anything else is an InputError."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{value!r} is not a number", file=file, key=key,
                         expected="fio --output-format=json output")
    return float(value)


def _int_option(job: dict, glob: dict, name: str, *, file: Path, key: str,
                maximum: int) -> int:
    """A whole-number job option from 1 to `maximum` (fio writes options as strings)."""
    raw = _option(job, glob, name) or 1
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise InputError(f"{name}={raw!r}", file=file, key=f"{key}.{name}",
                         expected=f"a whole number from 1 to {maximum}")
    return value


MAX_FIO_QD = 4096
"""Deepest iodepth a profile point holds (DevicePoint.queue_depth)."""
HUGE_IOMEM = frozenset({"shmhuge", "mmaphuge"})
"""fio buffer kinds backed by huge pages (hugetlbfs); malloc (the default), shm, mmap and
mmapshared get 4 KiB pages."""
SMALL_IOMEM = frozenset({"malloc", "shm", "mmap", "mmapshared"})


def buffers_of_iomem(iomem: str | None) -> str:
    """The buffer kind (MeasuredInfo.buffers) of a fio iomem value such as `mmaphuge:/path`."""
    kind = str(iomem or "malloc").split(":")[0].strip().lower()
    if kind in HUGE_IOMEM:
        return "hugepage"
    return "4k-pages" if kind in SMALL_IOMEM else "unknown"


def job_point(job: dict, glob: dict, *, file: Path) -> dict[str, Any]:
    """(bs, iodepth, throughput, latencies) of one fio job; InputError unless it is a direct
    randread."""
    if not isinstance(job, dict):
        raise InputError(f"a job is {type(job).__name__}", file=file, key="jobs",
                         expected="fio --output-format=json output")
    key = f"jobs.{job.get('jobname', '?')}"
    job = {**job, "job options": _mapping(job.get("job options"), file=file,
                                          key=f"{key}.job options")}
    rw = _option(job, glob, "rw") or _option(job, glob, "readwrite")
    if rw != "randread":
        raise InputError(f"job is rw={rw!r}", file=file, key=key, expected="rw=randread")
    direct = str(_option(job, glob, "direct") or "0")
    if direct not in ("1", "true"):
        raise InputError(f"job is direct={direct}", file=file, key=key,
                         expected="direct=1 (page cache bypassed)")
    bs = _option(job, glob, "bs") or _option(job, glob, "blocksize")
    if bs is None:
        raise InputError("job has no bs", file=file, key=key, expected="bs=4k or similar")
    chunk = parse_size(str(bs).split(",")[0], file=str(file), key=f"{key}.bs")
    iodepth = _int_option(job, glob, "iodepth", file=file, key=key, maximum=MAX_FIO_QD)
    numjobs = _int_option(job, glob, "numjobs", file=file, key=key, maximum=1 << 16)
    if numjobs != 1:
        raise InputError(f"job has numjobs={numjobs}", file=file, key=key,
                         expected="numjobs=1 (queue depth set by iodepth)")
    read = _mapping(job.get("read"), file=file, key=f"{key}.read")
    if not _number(read.get("io_bytes"), file=file, key=f"{key}.read.io_bytes", default=0):
        raise InputError("job read nothing", file=file, key=key)
    bw = _number(read.get("bw_bytes"), file=file, key=f"{key}.read.bw_bytes", default=0)
    if not bw > 0:
        raise InputError("job has no read.bw_bytes", file=file, key=key,
                         expected="fio --output-format=json output (fio 3.x)")
    lat_ns = _mapping(read.get("lat_ns"), file=file, key=f"{key}.read.lat_ns")
    clat_ns = _mapping(read.get("clat_ns"), file=file, key=f"{key}.read.clat_ns")
    lat = lat_ns or clat_ns
    pct = _mapping(lat_ns.get("percentile") or clat_ns.get("percentile"), file=file,
                   key=f"{key}.read.lat_ns.percentile")
    us = lambda d, k: _number(d.get(k), file=file, key=f"{key}.read.{k}") / 1e3  # noqa: E731
    return {"chunk_bytes": chunk, "queue_depth": iodepth,
            "throughput_mb_s": bw / 1e6,
            "latency_mean_us": us(lat, "mean"),
            "latency_p50_us": us(pct, "50.000000"),
            "latency_p99_us": us(pct, "99.000000"),
            "runtime_s": _number(read.get("runtime"), file=file, key=f"{key}.read.runtime",
                                 default=0) / 1e3,
            "ioengine": _option(job, glob, "ioengine"),
            "iomem": str(_option(job, glob, "iomem") or _option(job, glob, "mem") or "malloc")}


def points_from_fio(paths: list[str | os.PathLike]) -> tuple[list[DevicePoint], MeasuredInfo]:
    """The points of fio JSON files (repeats of a point median-combined) and how they were
    measured; InputError when the jobs read into different kinds of buffers."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    version = None
    stamps: list[int] = []
    disks: set[str] = set()
    files: set[str] = set()
    for raw in paths:
        path = Path(raw)
        data = _load_json(path)
        version = data.get("fio version", version)
        glob = _mapping(data.get("global options"), file=path, key="global options")
        if isinstance(data.get("timestamp"), int):
            stamps.append(data["timestamp"])
        disks.update(str(d.get("name")) for d in data.get("disk_util") or []
                     if isinstance(d, dict) and d.get("name"))
        if glob.get("filename"):
            files.add(str(glob["filename"]))
        for job in data["jobs"]:
            pt = job_point(job, glob, file=path)
            groups.setdefault((pt["chunk_bytes"], pt["queue_depth"]), []).append(pt)
    try:
        points = [median_point(chunk, qd, reps) for (chunk, qd), reps in sorted(groups.items())]
    except ValidationError as exc:  # an unphysical value: name the files it came from
        raise validation_to_input_error(exc, DevicePoint, file=", ".join(map(str, paths))) \
            from None
    return points, _fio_info(paths, groups, version=version, stamps=stamps, disks=disks,
                             files=files)


def _fio_info(paths, groups: dict[tuple[int, int], list[dict[str, Any]]], *, version,
              stamps: list[int], disks: set[str], files: set[str]) -> MeasuredInfo:
    """The `measured` section of a fio import: tool, engine, buffers, where and when."""
    reps = [r for rs in groups.values() for r in rs]
    iomem = sorted({r["iomem"] for r in reps})
    kinds = {buffers_of_iomem(m) for m in iomem}
    if len(kinds) > 1:
        raise InputError(f"jobs read into different buffers (iomem {', '.join(iomem)})",
                         file=Path(paths[0]), key="iomem",
                         expected="one iomem for every job (a profile has one buffer kind)")
    engines = sorted({str(r["ioengine"]) for r in reps})
    durations = [r["runtime_s"] for r in reps]
    return MeasuredInfo(
        method="fio randread, direct=1, one job per chunk × iodepth; value = median of repeats",
        date=(_dt.datetime.fromtimestamp(min(stamps), _dt.UTC).isoformat(timespec="seconds")
              if stamps else None),
        block_device=(", ".join(sorted(disks)) + " (fio disk_util)") if disks else None,
        file_path=", ".join(sorted(files)) if files else None,
        o_direct=True, tool=f"{version or 'fio'} (ioengine {', '.join(engines)})",
        point_duration_s=round(float(np.median(durations)), 2) if durations else None,
        repeats=max(len(r) for r in groups.values()), buffers=kinds.pop(), iomem=", ".join(iomem),
        notes="from " + ", ".join(Path(p).name for p in paths))


def profile_from_fio(paths: list[str | os.PathLike], *, name: str = "device",
                     description: str = "") -> DeviceProfile:
    """A profile (without a fit) from fio JSON files; repeats of a point are median-combined."""
    points, info = points_from_fio(paths)
    return DeviceProfile.from_dict({"name": name, "description": description,
                                    "measured": info.model_dump(exclude_none=True),
                                    "points": [p.model_dump(exclude_none=True) for p in points]})
