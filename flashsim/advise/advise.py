"""advise_layouts(): every layout configuration × merge gap × queue depth under a DRAM budget, ranked.

The search plans each candidate (families.py) once per distinct merge gap — `auto` resolves to
the device's break-even gap at each queue depth, so a plan serves every QD sharing that gap —
and simulates each plan with the fast device model at its queue depths. Memory and compute
per token are charged once per plan (models.py). A configuration's DRAM is what its plan
holds at the worst token: the FFN rows resident over all layers (the window's rows, the
current sets, hybrid's DRAM share) plus the read buffer of the largest (token, layer) batch.
Configurations within the budget are ranked by mean ms/token; the Pareto front of DRAM vs
ms/token is taken over all of them, within the budget or not, to show what more DRAM buys.
Windowed families whose largest window does not fit also get a budgeted variant: the same
window whose size shrinks, token by token, to what the budget leaves (the layout's own
`dram_budget_bytes`).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..cost.simulate import io_seconds
from ..cost.wait_cost import PROFILE, resolve_wait_cost
from ..device import DeviceProfile, load_params
from ..device.gap import parse_merge_gap, resolve_merge_gap
from ..errors import InputError
from ..layout.base import Layout
from ..layout.plan import IOPlan
from ..trace.format import ActivationTrace
from ..units import format_size
from .families import DEFAULT_WINDOWS, Candidate, SearchContext, candidates
from .models import CostModels, cost_models

DEFAULT_QDS = (1, 4, 8, 16, 32, 64)
DEFAULT_GAPS = ("0", "auto")
RANK_BY = "total_ms"


@dataclass
class Planned:
    """A candidate at one merge gap: its layout, plan, DRAM and per-token memory/compute."""

    candidate: Candidate
    gap_bytes: int
    layout: Any
    plan: IOPlan
    dram_bytes: int
    mem_s: np.ndarray
    compute_s: np.ndarray


@dataclass
class Advice:
    """The search's result: `ranked` (within the budget, best first), `front` (the Pareto
    front of DRAM vs ms/token), `rows` (every configuration), `info` (the space, the time)."""

    ranked: pd.DataFrame
    front: pd.DataFrame
    rows: pd.DataFrame
    info: dict[str, Any]
    planned: dict[tuple[str, int], Planned] = field(repr=False, default_factory=dict)

    @property
    def best(self) -> dict[str, Any]:
        return self.ranked.iloc[0].to_dict()

    def distinct(self) -> pd.DataFrame:
        """`ranked` with one row per (configuration, merge gap): its best queue depth."""
        return self.ranked.drop_duplicates(["config", "merge_gap_bytes"]).reset_index(drop=True)

    def planned_of(self, row: dict[str, Any]) -> Planned:
        """The layout and plan behind a row of `rows` / `ranked`."""
        return self.planned[(row["config"], int(row["merge_gap_bytes"]))]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        ranked = self.ranked if top is None else self.ranked.head(top)
        return {**self.info, "ranked": ranked.to_dict(orient="records"),
                "front": self.front.to_dict(orient="records")}


def dram_need_bytes(plan: IOPlan, reads_into_resident: bool = False) -> int:
    """FFN bytes the plan holds in DRAM at its worst token: the rows resident over all
    layers plus the buffer its largest (token, layer) batch of reads lands in (none where
    the reads land in the resident set itself, as an mmap's faults fill the page cache)."""
    resident = int(plan.dram_resident_bytes.sum(axis=1).max()) if plan.n_tokens else 0
    if reads_into_resident:
        return resident
    buffer = int(plan.bytes_per_batch().max()) if plan.n_reads else 0
    return resident + buffer


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point has x ≤ and y ≤ with one of them strictly smaller."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    order = np.lexsort((y, x))  # by x, then y
    keep = np.zeros(len(x), dtype=bool)
    best = np.inf
    for i in order:
        if y[i] < best:
            keep[i] = True
            best = y[i]
    return keep


def _check_search(dram_budget_bytes: Any, qds: Any, windows: Any, gaps: Any
                  ) -> tuple[int, list[int], tuple[int, ...], list[Any]]:
    """The search's settings, checked (a bad one is an InputError naming it)."""
    if isinstance(dram_budget_bytes, bool) or not isinstance(dram_budget_bytes, (int, np.integer)) \
            or dram_budget_bytes < 0:
        raise InputError(f"DRAM budget {dram_budget_bytes!r} is not a byte count",
                         key="dram_budget_bytes", expected="0 or more bytes, e.g. 2MiB")
    for key, values in (("qds", qds), ("windows", windows)):
        ok = len(values) > 0 and all(not isinstance(v, bool) and int(v) == v and v >= 1
                                     for v in values)
        if not ok:
            raise InputError(f"{key} {list(values)!r}", key=key, expected="integers ≥ 1")
    settings = [parse_merge_gap(g, key="merge_gaps") for g in gaps]
    if not settings:
        raise InputError("no merge gaps", key="merge_gaps", expected="e.g. 0,auto")
    return (int(dram_budget_bytes), sorted({int(q) for q in qds}),
            tuple(sorted({int(k) for k in windows})), list(dict.fromkeys(settings)))


def _gap_text(setting: Any) -> str:
    return "auto" if setting == "auto" else format_size(int(setting)) if setting else "0"


def regap(plan: IOPlan, layout: Any) -> IOPlan:
    """`plan` with its reads merged again at `layout`'s merge gap.

    Exact: merging is transitive over sorted ranges, so merging the gap-0 plan's reads
    (touching ranges already joined, long runs cut into touching pieces) with a gap gives
    the runs merging the raw ranges would; the window's replay is not repeated.
    """
    L = plan.n_layers
    batch = np.repeat(np.arange(plan.n_tokens * L, dtype=np.int64), np.diff(plan.batch_ptr))
    start = plan.offset_bytes
    ptr, offset, length = layout.merge_reads(batch, start, start + plan.length_bytes,
                                             plan.n_tokens * L, layout.placement(plan.geometry))
    out = replace(plan, batch_ptr=ptr, offset_bytes=offset, length_bytes=length,
                  params=layout.params())
    out.validate()
    return out


def _plan_one(cand: Candidate, base: Any, gap: int, trace: ActivationTrace, which: str,
              models: CostModels, gap0: IOPlan | None = None) -> Planned:
    """The candidate's plan at merge gap `gap` (the base layout's learned placement shared;
    from `gap0`, the plan at gap 0, by merging its reads again)."""
    layout = base
    if gap != base.merge_gap_bytes:
        layout = copy.copy(base)  # same placement, another gap
        layout.merge_gap_bytes = int(gap)
    plan = layout.plan(trace, which=which) if gap0 is None else regap(gap0, layout)
    mem, comp = models.per_token_s(layout, plan)
    return Planned(cand, int(gap), layout, plan,
                   dram_need_bytes(plan, cand.reads_into_resident), mem, comp)


def _plan_gaps(cand: Candidate, base: Any, gaps: list[int], trace: ActivationTrace,
               which: str, models: CostModels) -> dict[tuple[str, int], Planned]:
    """The candidate at each gap: planned once at gap 0, the other gaps merged from it
    (a layout whose reads are not the base merge is planned at every gap)."""
    first = _plan_one(cand, base, 0, trace, which, models)
    out = {(cand.label, 0): first} if 0 in gaps else {}
    from_gap0 = type(base).merge_reads is Layout.merge_reads
    for gap in gaps:
        if gap:
            out[(cand.label, gap)] = _plan_one(cand, base, gap, trace, which, models,
                                               first.plan if from_gap0 else None)
    return out


def _budgeted(cand: Candidate, base: Any, buffer_bytes: int, budget: int
              ) -> tuple[Candidate, Any]:
    """`cand` with its window shrinking to fit `budget`, less the read buffer it needs."""
    layout = copy.copy(base)
    layout.dram_budget_bytes = max(budget - buffer_bytes, 1)
    label = f"{cand.family} k≤{cand.window} in budget"
    return Candidate(cand.family, label, cand.build, window=cand.window,
                     takes_gap=cand.takes_gap, budgeted=True, options=cand.options), layout


def _gap_values(cand: Candidate, gap_of: dict[tuple[Any, int], int]) -> list[int]:
    return sorted(set(gap_of.values())) if cand.takes_gap else [0]


def _plan_candidates(cands: list[Candidate], gap_of: dict[tuple[Any, int], int],
                     trace: ActivationTrace, which: str, block_bytes: int,
                     models: CostModels) -> tuple[dict[tuple[str, int], Planned], dict]:
    """Every candidate planned at every merge gap it meets; also the base layouts."""
    planned: dict[tuple[str, int], Planned] = {}
    bases: dict[str, Any] = {}
    for cand in cands:
        base = bases[cand.label] = cand.build(block_bytes=block_bytes)
        planned.update(_plan_gaps(cand, base, _gap_values(cand, gap_of), trace, which, models))
    return planned, bases


def _add_budgeted(cands: list[Candidate], bases: dict[str, Any],
                  planned: dict[tuple[str, int], Planned], gap_of: dict[tuple[Any, int], int],
                  trace: ActivationTrace, which: str, models: CostModels,
                  budget: int) -> list[Candidate]:
    """Per windowed family whose largest window exceeds the budget, the budgeted variant."""
    largest: dict[str, Candidate] = {}
    for cand in cands:
        if cand.window is not None and hasattr(bases[cand.label], "dram_budget_bytes"):
            if cand.family not in largest or cand.window > largest[cand.family].window:
                largest[cand.family] = cand
    added = []
    for cand in largest.values():
        first = planned[(cand.label, _gap_values(cand, gap_of)[0])]
        if first.dram_bytes <= budget:
            continue
        buffer = first.dram_bytes - int(first.plan.dram_resident_bytes.sum(axis=1).max())
        new, layout = _budgeted(cand, bases[cand.label], buffer, budget)
        try:
            planned.update(_plan_gaps(new, layout, _gap_values(new, gap_of), trace, which,
                                      models))
        except InputError:  # not even a one-token window fits: no such variant
            continue
        added.append(new)
    return added


def _row(p: Planned, queue_depth: int, io_s: np.ndarray, gap_text: str,
         wait_s: np.ndarray | float = 0.0) -> dict[str, Any]:
    """One configuration's table row (per-token means; ms and MB); `wait_s`: compute the
    decode pays after waiting on its reads (the profile's decode_wait)."""
    compute_s = p.compute_s + wait_s
    total = io_s + p.mem_s + compute_s
    plan = p.plan
    return {"config": p.candidate.label, "family": p.candidate.family, "layout": p.layout.name,
            "window": p.candidate.window, "budgeted": p.candidate.budgeted,
            "merge_gap": gap_text, "merge_gap_bytes": p.gap_bytes,
            "queue_depth": int(queue_depth), "dram_bytes": p.dram_bytes,
            "dram_mb": p.dram_bytes / 1e6,
            "reads_per_token": float(plan.reads_per_token().mean()),
            "mb_per_token": float(plan.bytes_per_token().mean()) / 1e6,
            "io_ms": float(io_s.mean()) * 1e3, "mem_ms": float(p.mem_s.mean()) * 1e3,
            "compute_ms": float(np.mean(compute_s)) * 1e3,
            "total_ms": float(total.mean()) * 1e3,
            "total_ms_p99": float(np.percentile(total, 99)) * 1e3}


def _simulate(cands: list[Candidate], planned: dict[tuple[str, int], Planned],
              settings: list[Any], qds: list[int], gap_of: dict[tuple[Any, int], int],
              params: Any, engine: str) -> list[dict[str, Any]]:
    """Every (candidate, merge gap setting, QD) simulated once (settings that resolve to the
    same gap at a QD share the row)."""
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    wait = resolve_wait_cost(PROFILE, params)
    for cand in cands:
        for q in qds:
            for setting in settings:
                gap = gap_of[(setting, q)] if cand.takes_gap else 0
                key = (cand.label, gap, q)
                text = _gap_text(setting) if cand.takes_gap else "-"
                if key in rows:
                    if text not in rows[key]["merge_gap"].split(","):
                        rows[key]["merge_gap"] += "," + text
                    continue
                p = planned[(cand.label, gap)]
                io_s = io_seconds(p.plan, params, q, engine, interleaved=True)
                wait_s = 0.0
                if wait is not None and np.any(p.compute_s):  # compute counted
                    busy = p.plan.reads_per_batch() > 0
                    wait_s = wait.compute_s(io_s, busy)
                rows[key] = _row(p, q, io_s.sum(axis=1), text, wait_s)
    return list(rows.values())


def _require_fit(planned: dict[tuple[str, int], Planned], budget: int, key: str) -> None:
    """InputError when no planned configuration fits in the budget."""
    least = min(planned.values(), key=lambda p: p.dram_bytes)
    if least.dram_bytes > budget:
        raise InputError(f"DRAM budget {format_size(budget) if budget else 0} is below what any "
                         f"layout needs (the least is {format_size(least.dram_bytes)}, "
                         f"{least.candidate.label})", key=key,
                         expected=f"at least {format_size(least.dram_bytes)}")


def _frames(rows: list[dict[str, Any]], budget: int
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(all rows, ranked rows within the budget, the Pareto front)."""
    frame = pd.DataFrame(rows)
    frame["within_budget"] = frame["dram_bytes"] <= budget
    frame["pareto"] = pareto_mask(frame["dram_bytes"], frame[RANK_BY])
    ranked = frame[frame["within_budget"]].sort_values(
        [RANK_BY, "dram_bytes", "queue_depth", "config"], kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    front = frame[frame["pareto"]].sort_values("dram_bytes", kind="stable")
    return frame, ranked, front.reset_index(drop=True)


def advise_layouts(trace: ActivationTrace, profile: Any, dram_budget_bytes: int, *,
           qds: Any = DEFAULT_QDS, windows: Any = DEFAULT_WINDOWS,
           merge_gaps: Any = DEFAULT_GAPS, layouts: list[str] | None = None,
           train_trace: ActivationTrace | None = None, which: str = "predicted",
           block_bytes: int = 4096, memory: Any = "calibrate", compute: Any = "calibrate",
           memcpy_bytes_per_s: float | None = None, engine: str = "fast",
           budget_key: str = "dram_budget_bytes") -> Advice:
    """Search layout families (`layouts`: names from `family_names()`, default all) ×
    `windows` × `merge_gaps` (sizes or "auto") × `qds` on `trace` and device `profile`;
    rank those within `dram_budget_bytes` by predicted ms/token (see the module doc).

    `memory` / `compute`: "calibrate" (this machine), "none", or a model object (see
    `models.cost_models`). A budget no configuration fits is an InputError (key `budget_key`).
    """
    t0 = time.perf_counter()
    budget, qds, windows, settings = _check_search(dram_budget_bytes, qds, windows, merge_gaps)
    if isinstance(profile, (str, os.PathLike)):
        profile = DeviceProfile.load(profile)  # the whole profile: its correction applies
    params = load_params(profile)
    gap_of = {(s, q): resolve_merge_gap(s, params, q, block_bytes).gap_bytes
              for s in settings for q in qds}
    ctx = SearchContext(trace.geometry, budget, windows, train_trace)
    cands = candidates(ctx, layouts)
    models = cost_models(trace.geometry, memory=memory, compute=compute,
                         memcpy_bytes_per_s=memcpy_bytes_per_s)
    t_models = time.perf_counter()
    planned, bases = _plan_candidates(cands, gap_of, trace, which, block_bytes, models)
    cands += _add_budgeted(cands, bases, planned, gap_of, trace, which, models, budget)
    _require_fit(planned, budget, budget_key)
    t_plans = time.perf_counter()
    rows = _simulate(cands, planned, settings, qds, gap_of, profile, engine)
    frame, ranked, front = _frames(rows, budget)
    t_end = time.perf_counter()
    info = {"dram_budget_bytes": budget, "queue_depths": qds, "windows": list(windows),
            "merge_gaps": [_gap_text(s) for s in settings], "set": which,
            "n_candidates": len(cands), "n_plans": len(planned), "n_configs": len(frame),
            "n_within_budget": len(ranked), "engine": engine, "models": models.describe(),
            "seconds": {"models": t_models - t0, "plans": t_plans - t_models,
                        "simulate": t_end - t_plans, "total": t_end - t0}}
    return Advice(ranked, front, frame, info, planned)
