"""Device points from fio's JSON output (randread, direct=1, one point per job).

Jobs with the same (bs, iodepth) across files are repeats: the point is their median and
the spread is recorded. Anything that is not a direct random read is rejected, naming the
file and the job.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..units import parse_size
from .profile import DeviceProfile, MeasuredInfo, median_point


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


def job_point(job: dict, glob: dict, *, file: Path) -> dict[str, Any]:
    """(bs, iodepth, throughput, latencies) of one fio job; InputError unless it is a direct
    randread."""
    key = f"jobs.{job.get('jobname', '?')}"
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
    iodepth = int(_option(job, glob, "iodepth") or 1)
    numjobs = int(_option(job, glob, "numjobs") or 1)
    if numjobs != 1:
        raise InputError(f"job has numjobs={numjobs}", file=file, key=key,
                         expected="numjobs=1 (queue depth set by iodepth)")
    read = job.get("read") or {}
    if not read.get("io_bytes"):
        raise InputError("job read nothing", file=file, key=key)
    lat = read.get("lat_ns") or read.get("clat_ns") or {}
    pct = (read.get("lat_ns") or {}).get("percentile") or (read.get("clat_ns") or {}).get(
        "percentile") or {}
    return {"chunk_bytes": chunk, "queue_depth": iodepth,
            "throughput_mb_s": float(read["bw_bytes"]) / 1e6,
            "latency_mean_us": float(lat.get("mean", float("nan"))) / 1e3,
            "latency_p50_us": float(pct.get("50.000000", float("nan"))) / 1e3,
            "latency_p99_us": float(pct.get("99.000000", float("nan"))) / 1e3,
            "runtime_s": float(read.get("runtime", 0)) / 1e3,
            "ioengine": _option(job, glob, "ioengine")}


def profile_from_fio(paths: list[str | os.PathLike], *, name: str = "device",
                     description: str = "") -> DeviceProfile:
    """A profile (without a fit) from fio JSON files; repeats of a point are median-combined."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    version = None
    engines = set()
    stamps: list[int] = []
    disks: set[str] = set()
    files: set[str] = set()
    for raw in paths:
        path = Path(raw)
        data = _load_json(path)
        version = data.get("fio version", version)
        glob = data.get("global options") or {}
        if isinstance(data.get("timestamp"), int):
            stamps.append(data["timestamp"])
        disks.update(str(d.get("name")) for d in data.get("disk_util") or [] if d.get("name"))
        if glob.get("filename"):
            files.add(str(glob["filename"]))
        for job in data["jobs"]:
            pt = job_point(job, glob, file=path)
            engines.add(str(pt["ioengine"]))
            groups.setdefault((pt["chunk_bytes"], pt["queue_depth"]), []).append(pt)
    points = [median_point(chunk, qd, reps) for (chunk, qd), reps in sorted(groups.items())]
    durations = [r["runtime_s"] for reps in groups.values() for r in reps]
    info = MeasuredInfo(
        method="fio randread, direct=1, one job per chunk × iodepth; value = median of repeats",
        date=(_dt.datetime.fromtimestamp(min(stamps), _dt.UTC).isoformat(timespec="seconds")
              if stamps else None),
        block_device=(", ".join(sorted(disks)) + " (fio disk_util)") if disks else None,
        file_path=", ".join(sorted(files)) if files else None,
        o_direct=True, tool=f"{version or 'fio'} (ioengine {', '.join(sorted(engines))})",
        point_duration_s=round(float(np.median(durations)), 2) if durations else None,
        repeats=max(len(r) for r in groups.values()),
        notes="from " + ", ".join(Path(p).name for p in paths))
    return DeviceProfile.from_dict({"name": name, "description": description,
                                    "measured": info.model_dump(exclude_none=True),
                                    "points": [p.model_dump(exclude_none=True) for p in points]})
