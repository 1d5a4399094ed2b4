"""simulate(plan, profile, qd): per-token I/O, memory-management and compute time.

I/O: each (token, layer) batch runs on an idle device (the device model's makespan at the
given queue depth, plus the profile's measured cost of a batch that follows compute, as a
decode's do); a token's I/O time is the sum over its layers, since layer l's reads can only
be issued once layer l - 1 is done. Memory: the flash runtime's memory management
timed on this machine and fitted per (token, layer) (memory.py), or, given only a memcpy
bandwidth, the paper's model: the plan's `mem_moved_bytes` over it. Compute: the decode's
parts calibrated on this machine, from the computed neurons and each token's context
(compute.py). Total = I/O + memory + compute: the runtime runs them one after another
(its reads are synchronous), as in the paper's Table 3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..device import make_device
from ..device.interleave import batch_overhead_s
from ..device.span import at_span
from ..device.throttle import ThrottledDevice
from ..layout.plan import IOPlan
from ..layout.registry import LAYOUTS
from .compute import ComputeModel, calibrate_compute
from .memcpy import measure_memcpy_bytes_per_s
from .memory import MemoryModel, calibrate_memory
from .wait_cost import PROFILE, DecodeWaitCost, resolve_wait_cost


def io_seconds(plan: IOPlan, profile: Any, queue_depth: int, engine: str = "fast", *,
               interleaved: bool = False, gaps_s: np.ndarray | None = None) -> np.ndarray:
    """Device makespan per (token, layer), seconds, shape [n_tokens, n_layers]."""
    return io_seconds_draws(plan, profile, queue_depth, 1, engine, interleaved=interleaved,
                            gaps_s=gaps_s)[0]


def plan_shares(plan: IOPlan, queue_depth: int) -> np.ndarray | None:
    """The plan's per-thread shares of each batch's reads (an mmap plan of several faulting
    threads: each thread faults its own rows), if it has them for `queue_depth` threads."""
    shares = plan.meta.get("read_shares")
    if shares is None or shares.shape[1] != queue_depth + 1:
        return None
    return shares


def io_seconds_draws(plan: IOPlan, profile: Any, queue_depth: int, draws: int,
                     engine: str = "fast", *, interleaved: bool = False,
                     gaps_s: np.ndarray | None = None) -> np.ndarray:
    """Device makespan per (draw, token, layer), seconds, shape [draws, n_tokens, n_layers].

    The plan is simulated `draws` times in one call, each pass with its own per-read
    command and transfer factors (they are drawn from a read's index in the call), as the
    real reader's repetitions each meet the disk's variation anew. `interleaved`: the
    batches come between a decode's compute, each non-empty one paying the profile's
    measured after-compute overhead (device/interleave.py); otherwise back to back, as
    `validate` replays them. Behind a throttle (device/throttle.py) the batches share one
    timeline, each after `gaps_s` [n_tokens, n_layers] of idle (a decode's compute; None:
    back to back), and the draws follow one another on it.
    """
    device = at_span(make_device(profile, engine), plan.file_bytes)
    n = plan.n_reads
    off, length, ptr = plan.offset_bytes, plan.length_bytes, plan.batch_ptr
    shares = plan_shares(plan, queue_depth)
    if draws != 1:  # one draw runs the plan's own arrays (a 6.7B plan's are 0.4 GB)
        ptr = np.concatenate([ptr[:-1] + d * n for d in range(draws)] + [[draws * n]])
        off, length = np.tile(off, draws), np.tile(length, draws)
        if shares is not None:
            shares = np.concatenate([shares + d * n for d in range(draws)])
    if isinstance(device, ThrottledDevice) and gaps_s is not None:
        gaps = np.tile(np.asarray(gaps_s, dtype=np.float64).reshape(-1), draws)
        makespan = device.run_batches(off, length, ptr, queue_depth, shares=shares, gaps_s=gaps)
    else:
        makespan = device.run_batches(off, length, ptr, queue_depth, shares=shares)
    out = np.asarray(makespan, dtype=np.float64).reshape(draws, plan.n_tokens, plan.n_layers)
    overhead_s = batch_overhead_s(profile) if interleaved else 0.0
    if overhead_s > 0.0:
        nonempty = plan.reads_per_batch() > 0
        out += overhead_s * nonempty[None]
    return out


def _memory(plan: IOPlan, model: MemoryModel | None, fixed_bw: float | None, bw: float
            ) -> tuple[np.ndarray, str, MemoryModel | None]:
    """Per-token memory seconds, where they come from, and the model used (if any).

    Dense layouts (the whole FFN read, no per-neuron residency) have no runtime memory
    management to calibrate: their bytes moved go over the memcpy bandwidth.
    """
    layout_cls = LAYOUTS.get(plan.layout, (None,))[0]
    dense = bool(getattr(layout_cls, "dense_ffn", False)
                 or getattr(layout_cls, "memcpy_memory", False))  # mmap: rows copied out
    if model is None and not fixed_bw and not dense:
        model = calibrate_memory(plan.geometry)
    if model is not None and not dense:
        return model.seconds(plan), model.source, model
    return (plan.mem_moved_bytes.sum(axis=1) / bw,
            f"bytes moved / memcpy {bw / 1e9:.2f} GB/s", None)


def _pcts(values: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def context_tokens(plan: IOPlan) -> np.ndarray:
    """Keys each planned token attends to: its position + 1 (the prompt included)."""
    return np.asarray(plan.token_index, dtype=np.float64) + 1.0


def simulate(plan: IOPlan, profile: Any, queue_depth: int, engine: str = "fast", *,
             memcpy_bytes_per_s: float | None = None,
             compute_model: ComputeModel | None = None,
             memory_model: MemoryModel | None = None,
             computed_neurons: np.ndarray | None = None,
             wait_cost: DecodeWaitCost | str | None = PROFILE
             ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-token table and summary of `plan` on the device `profile` at `queue_depth`.

    A model passed is used as given. Memory: `memory_model`, else with `memcpy_bytes_per_s`
    the bytes moved over it, else the runtime's memory management calibrated on this
    machine. Compute: `compute_model`, else the decode calibrated on this machine.
    `computed_neurons` [n_tokens, n_layers] overrides the plan's (e.g. the predicted set
    sizes, which is what the flash runtime multiplies). `wait_cost`: what a decode from flash
    pays for waiting on its reads, calibrated from real decodes (wait_cost.py; default: the
    profile's `decode_wait` when measured; None: none): compute after each batch.
    """
    wait_cost = resolve_wait_cost(wait_cost, profile)
    bw = memcpy_bytes_per_s or measure_memcpy_bytes_per_s(2 * plan.geometry.row_bytes)
    mem_s, mem_source, memory_model = _memory(plan, memory_model, memcpy_bytes_per_s, bw)
    model = compute_model or calibrate_compute(plan.geometry)
    computed = computed_neurons if computed_neurons is not None else plan.computed_neurons
    if computed is None:  # plans without it: compute the loaded neurons
        computed = plan.neurons_loaded
    compute_s = model.seconds(computed, context_tokens(plan))
    # between two batches the decode does a layer's memory management and compute: idle
    # time in which a throttle's budget renews (it matters behind a throttle only)
    gaps_s = np.repeat(((mem_s + compute_s) / plan.n_layers)[:, None], plan.n_layers, axis=1)
    io_s = io_seconds(plan, profile, queue_depth, engine, interleaved=True, gaps_s=gaps_s)
    if wait_cost is not None:
        nonempty = plan.reads_per_batch() > 0
        compute_s = compute_s + wait_cost.compute_s(io_s, nonempty)
    bytes_tok = plan.bytes_per_token()
    reads_tok = plan.reads_per_token()
    frame = pd.DataFrame({
        "token": plan.token_index,
        "io_ms": io_s.sum(axis=1) * 1e3,
        "mem_ms": mem_s * 1e3,
        "compute_ms": compute_s * 1e3,
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
        "compute_source": model.source, "mem_source": mem_source,
        "memory_model": memory_model.to_dict() if memory_model is not None else None,
        "wait_cost_model": wait_cost.to_dict() if wait_cost is not None else None,
    }
    for col in ("io_ms", "mem_ms", "compute_ms", "total_ms"):
        p50, p99 = _pcts(frame[col].to_numpy())
        summary[f"{col}_p50"], summary[f"{col}_p99"] = p50, p99
        summary[f"{col}_mean"] = float(frame[col].mean())
    return frame, summary
