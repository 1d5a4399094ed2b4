"""simulate(plan, profile, qd): per-token I/O, memory-management and compute time.

I/O: each (token, layer) batch runs on an idle device (the device model's makespan at the
given queue depth); a token's I/O time is the sum over its layers, since layer l's reads
can only be issued once layer l - 1 is done. Memory: the plan's `mem_moved_bytes` over the
memcpy bandwidth measured on this machine. Compute: a numpy-calibrated linear model of the
token's computed neurons (see compute.py). Total = I/O + memory + compute, as in the
paper's Table 3 (no overlap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..device import make_device
from ..layout.plan import IOPlan
from .compute import ComputeModel, calibrate_compute
from .memcpy import measure_memcpy_bytes_per_s


def io_seconds(plan: IOPlan, profile: Any, queue_depth: int, engine: str = "fast") -> np.ndarray:
    """Device makespan per (token, layer), seconds, shape [n_tokens, n_layers]."""
    return io_seconds_draws(plan, profile, queue_depth, 1, engine)[0]


def io_seconds_draws(plan: IOPlan, profile: Any, queue_depth: int, draws: int,
                     engine: str = "fast") -> np.ndarray:
    """Device makespan per (draw, token, layer), seconds, shape [draws, n_tokens, n_layers].

    The plan is simulated `draws` times in one call, each pass with its own per-read
    command and transfer factors (they are drawn from a read's index in the call), as the
    real reader's repetitions each meet the disk's variation anew.
    """
    device = make_device(profile, engine)
    n = plan.n_reads
    ptr = np.concatenate([plan.batch_ptr[:-1] + d * n for d in range(draws)] + [[draws * n]])
    makespan = device.run_batches(np.tile(plan.offset_bytes, draws),
                                  np.tile(plan.length_bytes, draws), ptr, queue_depth)
    return np.asarray(makespan, dtype=np.float64).reshape(draws, plan.n_tokens, plan.n_layers)


def _pcts(values: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def simulate(plan: IOPlan, profile: Any, queue_depth: int, engine: str = "fast", *,
             memcpy_bytes_per_s: float | None = None,
             compute_model: ComputeModel | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-token table and summary of `plan` on the device `profile` at `queue_depth`.

    `memcpy_bytes_per_s` / `compute_model` fix those rates (tests); by default they are
    measured on this machine once per process.
    """
    io_s = io_seconds(plan, profile, queue_depth, engine)
    record = 2 * plan.geometry.row_bytes
    bw = memcpy_bytes_per_s or measure_memcpy_bytes_per_s(record)
    model = compute_model or calibrate_compute(plan.geometry)
    computed = plan.computed_neurons
    if computed is None:  # plans without it: compute the loaded neurons
        computed = plan.neurons_loaded
    bytes_tok = plan.bytes_per_token()
    reads_tok = plan.reads_per_token()
    frame = pd.DataFrame({
        "token": plan.token_index,
        "io_ms": io_s.sum(axis=1) * 1e3,
        "mem_ms": plan.mem_moved_bytes.sum(axis=1) / bw * 1e3,
        "compute_ms": model.seconds(computed) * 1e3,
        "bytes": bytes_tok,
        "reads": reads_tok,
        "useful_bytes": plan.useful_bytes.sum(axis=1),
        "neurons_loaded": plan.neurons_loaded.sum(axis=1),
        "dram_resident_bytes": plan.dram_resident_bytes.sum(axis=1),
        "mem_moved_bytes": plan.mem_moved_bytes.sum(axis=1),
    })
    frame["total_ms"] = frame["io_ms"] + frame["mem_ms"] + frame["compute_ms"]
    total_io_s = float(io_s.sum())
    total_bytes = int(plan.length_bytes.sum())
    summary: dict[str, Any] = {
        "layout": plan.layout, "queue_depth": int(queue_depth), "engine": engine,
        "n_tokens": plan.n_tokens, "set": plan.meta.get("set"),
        "bytes_per_token": float(bytes_tok.mean()),
        "useful_bytes_per_token": float(frame["useful_bytes"].mean()),
        "reads_per_token": float(reads_tok.mean()),
        "mean_read_bytes": total_bytes / plan.n_reads if plan.n_reads else 0.0,
        "throughput_mb_s": total_bytes / total_io_s / 1e6 if total_io_s > 0 else None,
        "read_amplification": plan.read_amplification(),
        "dram_resident_bytes": float(frame["dram_resident_bytes"].mean()),
        "dram_resident_bytes_max": int(frame["dram_resident_bytes"].max()),
        "dram_resident_fraction": float(frame["dram_resident_bytes"].mean())
        / plan.geometry.ffn_bytes,
        "loaded_fraction": float(frame["useful_bytes"].mean()) / plan.geometry.ffn_bytes,
        "memcpy_bytes_per_s": float(bw), "compute_model": model.to_dict(),
    }
    for col in ("io_ms", "mem_ms", "compute_ms", "total_ms"):
        p50, p99 = _pcts(frame[col].to_numpy())
        summary[f"{col}_p50"], summary[f"{col}_p99"] = p50, p99
        summary[f"{col}_mean"] = float(frame[col].mean())
    return frame, summary
