"""fio export: a job file and a `read_iolog` (version 2) replaying exactly an IOPlan's reads.

The iolog lists the plan's reads in plan order (token by token, layer by layer), each as
`<file> read <offset> <length>`; the job replays it with `replay_no_stall=1` (as fast as
possible, order kept), `direct=1` and `iodepth` = QD. fio has no barrier between batches, so
it measures the plan as one stream of reads at that QD; `predict.io_seconds_stream` is the
simulator's number for the same thing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import InputError
from ..layout.plan import IOPlan

IOLOG_HEADER = "fio version 2 iolog"


def fio_available() -> bool:
    """True when the `fio` binary is on PATH."""
    return shutil.which("fio") is not None


def require_fio() -> None:
    """InputError (with how to install it) unless fio is on PATH."""
    if not fio_available():
        raise InputError("fio is not installed", key="--with-fio",
                         expected="fio on PATH (apt-get install fio)")


def iolog_text(plan: IOPlan, target: str, repeat: int = 1) -> str:
    """The iolog v2 text: add/open the target, every read of the plan (`repeat` times), close."""
    if any(c.isspace() for c in target):
        raise InputError("the iolog's file name contains white space", key="target",
                         expected="a path without spaces")
    lines = [IOLOG_HEADER, f"{target} add", f"{target} open"]
    body = [f"{target} read {o} {n}" for o, n in zip(plan.offset_bytes.tolist(),
                                                    plan.length_bytes.tolist())]
    lines += body * int(repeat)
    lines.append(f"{target} close")
    return "\n".join(lines) + "\n"


def job_text(iolog_name: str, queue_depth: int, *, ioengine: str = "libaio",
             name: str = "flashsim-plan") -> str:
    """The fio job replaying `iolog_name` (relative to the job's folder) at `queue_depth`."""
    return (f"; flashsim export-fio: replay an IOPlan's reads exactly (offsets and lengths)\n"
            f"[{name}]\n"
            f"ioengine={ioengine}\n"
            f"direct=1\n"
            f"iodepth={int(queue_depth)}\n"
            f"rw=read\n"
            f"read_iolog={iolog_name}\n"
            f"replay_no_stall=1\n"
            f"thread=1\n")


def parse_iolog(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(files, offsets, lengths) of the reads in an iolog v2 text (inverse of `iolog_text`)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != IOLOG_HEADER:
        raise InputError("not a fio version 2 iolog", key="header", expected=IOLOG_HEADER)
    files, off, length = [], [], []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 4 and parts[1] == "read":
            files.append(parts[0])
            off.append(int(parts[2]))
            length.append(int(parts[3]))
    return files, np.array(off, np.int64), np.array(length, np.int64)


def export_fio(plan: IOPlan, out_dir: str | os.PathLike, queue_depth: int, *,
               target: str | os.PathLike, ioengine: str = "libaio", repeat: int = 1,
               name: str = "plan") -> dict[str, Any]:
    """Write `<name>.fio` and `<name>.iolog` into `out_dir`; return their paths and counts."""
    if isinstance(queue_depth, bool) or int(queue_depth) < 1:
        raise InputError(f"queue depth {queue_depth} must be at least 1", key="qd")
    if ioengine not in ("libaio", "io_uring", "psync", "pvsync2"):
        raise InputError(f"unknown ioengine {ioengine!r}", key="ioengine",
                         expected="libaio or io_uring")
    plan.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    iolog = out / f"{name}.iolog"
    job = out / f"{name}.fio"
    atomic_write_text(iolog, iolog_text(plan, os.fspath(target), repeat))
    atomic_write_text(job, job_text(iolog.name, queue_depth, ioengine=ioengine, name=name))
    return {"job": str(job), "iolog": str(iolog), "target": os.fspath(target),
            "queue_depth": int(queue_depth), "reads": plan.n_reads * int(repeat),
            "bytes": int(plan.length_bytes.sum()) * int(repeat), "repeat": int(repeat),
            "n_tokens": plan.n_tokens}


def run_fio(plan: IOPlan, store_path: str | os.PathLike, out_dir: str | os.PathLike,
            queue_depth: int, *, name: str = "plan", min_reads: int = 20000,
            min_bytes: int = 256 << 20, ioengine: str = "libaio") -> dict[str, float]:
    """Export and run the plan with fio; fio's time per token (ms) and its throughput.

    The plan is repeated in the iolog until it holds ≥ `min_reads` reads or ≥ `min_bytes`
    bytes, so fio's millisecond-resolution runtime is precise enough.
    """
    total = max(int(plan.length_bytes.sum()), 1)
    repeat = max(1, min(-(-min_reads // max(plan.n_reads, 1)), -(-min_bytes // total)))
    info = export_fio(plan, out_dir, queue_depth, target=Path(store_path).resolve(),
                      ioengine=ioengine, repeat=repeat, name=name)
    job = Path(info["job"])
    proc = subprocess.run(["fio", "--output-format=json", job.name], cwd=job.parent,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"fio failed: {proc.stderr.strip()[:300]}", file=job)
    try:
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
        read = report["jobs"][0]["read"]
    except (ValueError, KeyError, IndexError) as exc:
        raise InputError(f"unreadable fio output ({exc})", file=job) from None
    runtime_ms = float(read.get("runtime", 0))
    if read.get("total_ios", 0) != info["reads"]:
        raise InputError(f"fio did {read.get('total_ios')} reads, the iolog has "
                         f"{info['reads']}", file=job)
    return {"fio_ms_per_token": runtime_ms / (plan.n_tokens * repeat),
            "fio_mb_s": float(read.get("bw_bytes", 0)) / 1e6,
            "fio_lat_us_mean": float(read.get("lat_ns", {}).get("mean", float("nan"))) / 1e3}
