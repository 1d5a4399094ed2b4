"""Validation of the mmap baseline: the plan's page-cache reads predicted vs the real gather
through the page cache, per token, in the report rows of `validate`.

Measured: a forked child in a memory cgroup limited to the budget maps the store (cold: the
file's cached pages dropped first) and gathers, per (token, layer), the rows the pattern
touches (sparse: the trace's neurons; dense: all) in file order into a preallocated buffer
with `threads` threads; a token's time is the sum of its layers' gathers (faults and copies
included). One fresh child per repetition, so each starts cold as the plan does.
Predicted: the `MmapLayout` plan (its page cache, the disk's read-around) through the
profile's model at QD = threads, plus the copy out of the cache: per (token, layer)
s_per_call + rows × s_per_row, fitted (least absolute deviations) on a warm pass of the
same gathers with everything cached (no faults), measured in the same run.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..cliutil import emit, table
from ..cost.robust import lad_fit
from ..data import REFERENCE_TRACE
from ..device import make_device
from ..device.cgroup import read_ahead_bytes
from ..device.drift import scaled as drift_scaled
from ..device.profile import DeviceProfile, load_params
from ..errors import InputError
from ..layout.mmap import POLICIES, MmapLayout, share_bounds
from ..layout.plan import IOPlan
from ..layout.registry import make_layout
from ..loader.mmap_source import MappedStore, run_in_memory_cgroup
from ..loader.store import WeightStore, store_for
from ..model.checkpoint import load_checkpoint
from ..trace.format import ActivationTrace
from ..units import parse_size
from .drift_probe import DriftProbe, probe_of
from .fault_probe import FaultProbe
from .predict import predict_token_s
from .rows import ValidationResult, layout_row
from .schedule import Slot

MMAP_LAYOUTS = ("mmap-dense", "mmap-sparse")


def is_mmap(name: str) -> bool:
    return name in MMAP_LAYOUTS


def batch_rows(plan_layout: MmapLayout, trace: ActivationTrace, which: str,
               placement: Any) -> list[np.ndarray]:
    """Per (token, layer) batch b = t * L + l of the generated tokens, the store row indices
    it gathers (fc1 and fc2 rows of its neurons), sorted: file order."""
    g = trace.geometry
    start = trace.n_prompt_tokens
    sets = trace.sets("active" if plan_layout.pattern == "dense" else which)
    row = g.row_bytes
    fc1, fc2 = placement.fc1_offset_bytes // row, placement.fc2_offset_bytes // row
    everyone = np.arange(g.d_ffn)
    out = []
    for t in range(start, trace.n_tokens):
        for layer in range(g.n_layers):
            ids = everyone if plan_layout.pattern == "dense" else sets[layer][t].astype(np.int64)
            out.append(np.sort(np.concatenate([fc1[layer, ids], fc2[layer, ids]])))
    return out


def gather_buffer(mapped: MappedStore, rows: list[np.ndarray]) -> np.ndarray:
    """The buffer every batch gathers into, touched now (charged before the limit: anonymous
    memory cannot be reclaimed, so the budget must not have to make room for it)."""
    view = mapped.rows_view
    buf = np.empty((max((len(r) for r in rows), default=0), view.shape[1]), view.dtype)
    buf.fill(0)
    return buf


def _take(job: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    view, idx, out = job
    np.take(view, idx, axis=0, out=out)


def gather_pass(view: np.ndarray, rows: list[np.ndarray], threads: int,
                pool: ThreadPoolExecutor | None, buf: np.ndarray, times: np.ndarray
                ) -> np.ndarray:
    """Seconds of every batch's gather of `view`'s rows into `buf` (`threads` contiguous
    shares of the batch's rows gathered at once), written into `times`."""
    for b, idx in enumerate(rows):
        t0 = time.perf_counter()
        if pool is None or len(idx) < threads:
            np.take(view, idx, axis=0, out=buf[:len(idx)])
        else:
            cuts = share_bounds(len(idx), threads)
            list(pool.map(_take, [(view, idx[lo:hi], buf[lo:hi])
                                  for lo, hi in zip(cuts[:-1], cuts[1:])]))
        times[b] = time.perf_counter() - t0
    return times


def measure_gathers(store: WeightStore, layout: MmapLayout, rows: list[np.ndarray],
                    advice: str, warm: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """One cold run (or, `warm`, a second pass after a first that caches everything) of the
    batches' gathers in a child within the layout's budget: batch seconds, fault counts."""
    placement = layout.placement(store.geometry)

    def prepare() -> Any:
        mapped = MappedStore(store, placement, advice)
        pool = ThreadPoolExecutor(layout.threads) if layout.threads > 1 else None
        buf, times = gather_buffer(mapped, rows), np.zeros(len(rows))
        # a dry pass over a DRAM twin of the file: the objects, stacks and threads the
        # pass touches are copied on write (charged) now, not out of the budget later
        twin = np.zeros_like(mapped.rows_view)
        gather_pass(twin, rows, layout.threads, pool, buf, times)
        del twin

        def work() -> np.ndarray:
            try:
                if warm:
                    gather_pass(mapped.rows_view, rows, layout.threads, pool, buf, times)
                return gather_pass(mapped.rows_view, rows, layout.threads, pool, buf,
                                   times).copy()
            finally:
                if pool is not None:
                    pool.shutdown()
                mapped.close()
        return work

    return run_in_memory_cgroup(prepare, None if warm else layout.budget_bytes,
                                drop=store.path)


def memory_fit(batch_s: np.ndarray, rows: list[np.ndarray]) -> tuple[float, float]:
    """(s_per_call, s_per_row) of the warm gathers: the copy out of a cache that holds all."""
    n = np.array([len(r) for r in rows], np.float64)
    coef = lad_fit(np.column_stack([np.ones_like(n), n]), batch_s)
    return float(coef[0]), float(coef[1])


def validate_mmap(trace: ActivationTrace, layouts: list[str], qds: list[int], *,
                  budgets: list[int | None], store: str | os.PathLike, profile: Any,
                  model_dir: str | os.PathLike | None = None, reps: int = 3,
                  tokens: int | None = None, which: str = "predicted", advice: str = "normal",
                  readahead_bytes: int | None = None, model_engine: str = "fast",
                  build_stores: bool = False, page_cache: str | list[str] = "two-list",
                  drift_probe: bool = False, fault_probe: bool = False) -> ValidationResult:
    """Rows (layout × budget × threads × page-cache model) of predicted vs measured
    per-token gather time; the models of one (layout, budget, threads) share its runs.

    `store`: a store file, or a folder where the mmap placement's store is (built there
    with `build_stores`; else a missing store is an InputError). `readahead_bytes`: the
    simulated read-around (default: the disk's read_ahead_kb; with `advice="random"`: 0).
    `drift_probe`: re-measure the profile's own 4–64 KiB points before the row blocks
    (drift_probe.py) and scale its model by how much slower or faster the disk is now; the
    rows keep the unscaled model's error (`undrifted_error`). `fault_probe`: time page faults
    of the store at each thread count against the model's time of the same reads
    (fault_probe.py) and scale the rows' I/O by that ratio (`unprobed_error` kept)."""
    policies = [page_cache] if isinstance(page_cache, str) else list(page_cache)
    bad = [n for n in layouts if not is_mmap(n)]
    if bad or not layouts:
        raise InputError(f"not mmap layouts: {bad}", key="layouts",
                         expected=" or ".join(MMAP_LAYOUTS))
    trace = trace.head(tokens)
    # the profile's own model (its measured residual and span factors), as other rows use
    params = (DeviceProfile.load(profile) if isinstance(profile, (str, os.PathLike))
              else profile)
    load_params(params)  # a profile without fitted parameters is refused here
    folder = Path(store)
    probe = (probe_of(params, qds, folder if folder.is_dir() else folder.parent)
             if drift_probe else None)
    if drift_probe and probe is None:
        raise InputError("the profile has no 4-64 KiB points of its own to re-measure",
                         key="--drift-probe", expected="a measured --device profile")
    if drift_probe and fault_probe:
        raise InputError("--drift-probe and --fault-probe both scale the model",
                         key="--fault-probe", expected="one of them (the fault probe's "
                         "ratio holds the disk's drift too)")
    faults = ([b for b in budgets if b is not None] or [FAULT_PROBE_BUDGET])[0] \
        if fault_probe else None
    try:
        blocks, fprobe = _measured_blocks(trace, layouts, qds, budgets, folder, model_dir,
                                          which, advice, readahead_bytes, policies, reps,
                                          build_stores, probe, faults)
    finally:
        if probe is not None:
            probe.remove_file()
    model = make_device(params, model_engine)
    drift = probe.drift() if probe is not None else None
    model_s = fprobe.model_seconds(model) if fprobe is not None else {}
    rows_out, per_token = [], {}
    for name, budget, q, lays, plans, runs in blocks:
        factor = (drift.factor if drift is not None
                  else fprobe.factor(model_s[int(q)], int(q), runs["fault_s"])
                  if fprobe is not None else None)
        scaled = model if factor is None else drift_scaled(model, factor)
        for lay, plan in zip(lays, plans):
            row, times = _row(lay, plan, advice, scaled, reps, model_engine, runs)
            if factor is not None:
                row["undrifted_error" if drift is not None else "unprobed_error"] = _row(
                    lay, plan, advice, model, reps, model_engine, runs)[0]["error"]
            rows_out.append(row)
            per_token[(f"{name}@{budget}/{lay.page_cache}", int(q))] = times
    info = {"trace": trace.meta.get("name") or trace.meta.get("source"),
            "model": trace.geometry.name, "tokens": trace.n_tokens - trace.n_prompt_tokens,
            "reps": reps, "advice": advice, "o_direct": False}
    if probe is not None:
        info["drift_probe"] = probe.info(drift)
    if fprobe is not None:
        info["fault_probe"] = fprobe.info()
    return ValidationResult(rows_out, per_token, info)


PROBE_PARTS = 4
"""Row blocks a drift-probe round is dealt out over (each block follows one part)."""
FAULT_PROBE_BUDGET = 1 << 20
"""The fault probe's page-cache budget when every row of the run has none."""


def _measured_blocks(trace: ActivationTrace, layouts: list[str], qds: list[int],
                     budgets: list[int | None], folder: Path, model_dir: Any, which: str,
                     advice: str, readahead_bytes: int | None, policies: list[str],
                     reps: int, build_stores: bool, probe: DriftProbe | None,
                     fault_budget: int | None
                     ) -> tuple[list[tuple[str, int | None, int, list, list, dict[str, Any]]],
                                FaultProbe | None]:
    """Every (layout, budget, threads) block measured: its layouts (one per page-cache
    model), their plans and the real runs; a part of a drift-probe round before each
    block, or (`fault_budget`: the fault probe's budget) a fault-probe pass before and after
    it (`runs["fault_s"]`)."""
    keys = [(n, b, q) for n in layouts for b in budgets for q in qds]
    parts = max(1, min(PROBE_PARTS, len(keys)))
    blocks, fprobe = [], None
    for index, (name, budget, q) in enumerate(keys):
        lay = make_layout(name, budget_bytes=budget, threads=q)
        st = _store(lay, folder, model_dir, trace, build_stores)
        ra = (0 if advice == "random" else read_ahead_bytes(st.path)
              if readahead_bytes is None else readahead_bytes)
        lays = [make_layout(name, budget_bytes=budget, threads=q, readahead_bytes=ra,
                            page_cache=policy) for policy in policies]
        plans = [lay.plan(trace, which=which) for lay in lays]
        st.check_plan(plans[0])
        if probe is not None:
            probe.measure_part(Slot(index // parts, range(0), (name, q),
                                    (index % parts, parts)))
        if fault_budget is not None and fprobe is None:
            fprobe = FaultProbe.for_run(st, lays[0], qds, fault_budget)
        before = fprobe.measure_passes(int(q)) if fprobe is not None else []
        runs = _measure(lays[0], st, trace, which, advice, reps)
        if fprobe is not None:  # the block bracketed: passes before it and after
            runs["fault_s"] = before + fprobe.measure_passes(int(q))
        blocks.append((name, budget, q, lays, plans, runs))
    return blocks, fprobe


def _store(layout: MmapLayout, path: Path, model_dir: Any, trace: ActivationTrace,
           build: bool) -> WeightStore:
    if path.is_file():
        return WeightStore.open(path)
    if not path.is_dir() and not build:
        raise InputError("no such store or folder", file=path, key="--store",
                         expected="an existing store or folder, or --build-stores")
    path.mkdir(parents=True, exist_ok=True)
    return store_for(load_checkpoint(model_dir), layout, path, trace.geometry, build=build)


def _measure(lay: MmapLayout, st: WeightStore, trace: ActivationTrace, which: str,
             advice: str, reps: int) -> dict[str, Any]:
    """The real side of a row: the copy cost fitted on a warm pass, then `reps` cold runs."""
    rows = batch_rows(lay, trace, which, lay.placement(trace.geometry))
    warm_s, _ = measure_gathers(st, lay, rows, advice, warm=True)
    s_call, s_row = memory_fit(warm_s, rows)
    runs = [measure_gathers(st, lay, rows, advice) for _ in range(reps)]
    return {"rows": rows, "s_call": s_call, "s_row": s_row, "runs": runs}


def _row(lay: MmapLayout, plan: IOPlan, advice: str, params: Any, reps: int,
         model_engine: str, real: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One report row: the measured runs against the plan predicted (I/O + copy)."""
    T, L = plan.n_tokens, plan.n_layers
    runs, rows = real["runs"], real["rows"]
    measured = np.stack([r[0].reshape(T, L).sum(axis=1) for r in runs])
    n_rows = np.array([len(r) for r in rows], np.float64).reshape(T, L)
    mem_s = (real["s_call"] + real["s_row"] * n_rows).sum(axis=1)
    io_s = predict_token_s(plan, params, lay.threads, reps, model_engine)
    predicted = io_s + mem_s[None, :]
    row = layout_row(lay.name, plan, lay.threads, reps, measured, np.zeros_like(measured),
                     predicted)
    faults = [r[1] for r in runs]
    row.update({"budget_bytes": lay.budget_bytes, "readahead_bytes": lay.readahead_bytes,
                "advice": advice, "page_cache": lay.page_cache,
                "predicted_ms": row["predicted_io_ms_p50"],
                "measured_ms": row["measured_io_ms_p50"], "error": row["error_p50_pct"],
                "predicted_major_faults": int(plan.meta["page_faults"].sum()),
                "measured_major_faults": int(np.median([f["major_faults"] for f in faults])),
                "measured_minor_faults": int(np.median([f["minor_faults"] for f in faults])),
                "predicted_cache_bytes": int(plan.meta["cache_pages"] * plan.block_bytes),
                "measured_cache_bytes": _median_or_none([f.get("cache_bytes") for f in faults]),
                "predicted_io_ms_mean_part": float(io_s.mean() * 1e3),
                "predicted_copy_ms_mean": float(mem_s.mean() * 1e3)})
    return row, {"measured_s": measured, "predicted_s": predicted}


def _median_or_none(values: list[Any]) -> int | None:
    """Median of what the cgroup reported (None where the run had no budget, no group)."""
    known = [v for v in values if v is not None]
    return int(np.median(known)) if known else None


MMAP_COLUMNS = [("layout", "layout", "s"), ("page_cache", "cache model", "s"),
                ("budget_bytes", "budget B", "s"),
                ("queue_depth", "threads", "d"), ("measured_ms", "meas ms", ".3f"),
                ("predicted_ms", "pred ms", ".3f"), ("error", "err p50 %", ".1f"),
                ("bias_pct", "bias %", "+.1f"), ("measured_major_faults", "faults real", "d"),
                ("predicted_major_faults", "faults sim", "d")]


def parse_budgets(text: str | None) -> list[int | None]:
    """'1m,2m,none' → [1 MiB, 2 MiB, None] (None: the whole file fits)."""
    if not text:
        return [None]
    return [None if part.strip().lower() == "none" else parse_size(part.strip(), key="--budgets")
            for part in text.split(",") if part.strip()]


def parse_policies(text: str) -> list[str]:
    """'lru,two-list' → both page-cache models, each predicting the same measured runs."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in POLICIES]
    if bad or not names or len(set(names)) != len(names):
        raise InputError(f"page-cache models {text!r}", key="--page-cache",
                         expected="one or more of " + ", ".join(POLICIES) + ", no repeats")
    return names


def cmd_validate_mmap(args: Any, names: list[str], qds: list[int]) -> int:
    """`validate --layouts mmap-…`: the mmap rows (every name must be an mmap layout)."""
    if args.device is None:
        raise InputError("no device profile", key="--device",
                         expected="--device PROFILE.yaml or a bundled name")
    trace = ActivationTrace.load(args.trace) if args.trace else ActivationTrace.load(
        REFERENCE_TRACE)
    result = validate_mmap(trace, names, qds, budgets=parse_budgets(args.budgets),
                           store=args.store, profile=args.device, model_dir=args.model,
                           reps=args.reps, tokens=args.tokens, which=args.which,
                           advice=args.mmap_advice, model_engine=args.model_engine,
                           page_cache=parse_policies(args.page_cache),
                           build_stores=args.build_stores, drift_probe=bool(args.drift_probe),
                           fault_probe=args.fault_probe)
    for row in result.rows:
        row["budget_bytes"] = "none" if row["budget_bytes"] is None else str(row["budget_bytes"])
    head = (f"{result.info['tokens']} tokens of {result.info['model']}, {args.reps} reps, "
            f"through the page cache (madvise {args.mmap_advice})")
    factor = result.info.get("drift_probe", {}).get("factor")
    if factor is not None:
        head += f"; the model × {factor:.3f}, the disk's drift since its calibration"
    per_threads = result.info.get("fault_probe", {}).get("factors", {})
    if per_threads:
        head += "; the model × " + ", ".join(f"{min(f):.2f}–{max(f):.2f} at {q} threads"
                                             for q, f in per_threads.items()) + " (fault probe)"
    emit(args, {"rows": result.rows, **result.info}, head + "\n" + table(result.rows,
                                                                          MMAP_COLUMNS))
    return 0
