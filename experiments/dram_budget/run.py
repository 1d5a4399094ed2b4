"""The DRAM-budget study (see README.md): ms/token vs DRAM budget for mmap dense, mmap sparse,
the paper's best layout (windowed+bundled, largest window that fits) and `advise`'s pick, on
two device profiles and two traces; writes results.json and figure.png next to this file.

    flock /tmp/flashsim-heavy.lock .venv/bin/python experiments/dram_budget/run.py

Each (trace, device, budget) point is one `advise_layouts` search (I/O + memory: memory is
the bytes moved over a fixed memcpy bandwidth, compute not counted, so the numbers do not
depend on this machine's speed). Points are cached under results/dram_budget/ (gitignored),
so an interrupted run resumes; --fresh recomputes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from flashsim import advise_layouts
from flashsim.atomic import atomic_write_text
from flashsim.data import REFERENCE_TRACE
from flashsim.errors import InputError
from flashsim.figures import new_figure, save_figure
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "results" / "dram_budget"
TRACE_67B = ROOT / "results" / "paper_table2" / "opt-6.7b-synthetic.trace"
"""The SYNTHETIC OPT-6.7B stand-in, shared with paper_table2 and bench_opt67b (made if missing)."""
DEVICES = ("local-virtio", "m1max-paper")
MEMCPY_BYTES_PER_S = 10e9
"""Memory management = bytes moved / 10 GB/s: a fixed single-thread memcpy, the same on every
machine, so the study needs no calibration."""
MMAP_QDS = (1, 32)
"""Faulting threads of the mmap rows (QD = threads): one decode thread, or 32 as the paper's."""
PAPER_QD = 32
MIB, GB = 1 << 20, 10 ** 9
STUDIES: dict[str, dict[str, Any]] = {
    "opt-mini": {"label": "opt-mini reference trace (FFN 4 MiB)", "synthetic": False,
                 "budgets": [int(f * MIB) for f in (0.25, 0.5, 1, 1.5, 2, 3, 4, 5)],
                 "layouts": None, "windows": None},
    "opt-6.7b": {"label": "OPT-6.7B-sized trace, SYNTHETIC (FFN 8.6 GB)", "synthetic": True,
                 "budgets": [int(f * GB) for f in (1, 4, 9)],
                 "layouts": ["windowed+bundled"], "windows": (1, 2, 4, 8)},
}
"""Budgets from near 0 to past the whole FFN. The 6.7B study is cut (one mmap plan there takes
20-50 s): three budgets, and no advise search — the paper's layout is windowed+bundled planned
directly at four windows (see README.md)."""


def load_trace(name: str) -> ActivationTrace:
    if name == "opt-mini":
        return ActivationTrace.load(REFERENCE_TRACE)
    from flashsim.trace.synthetic import ensure_opt_6_7b_trace
    return ActivationTrace.load(ensure_opt_6_7b_trace(TRACE_67B))


def _pick(row: Any) -> dict[str, Any] | None:
    """The numbers a figure point needs from one advise row."""
    if row is None:
        return None
    keys = ("config", "merge_gap", "queue_depth", "dram_bytes", "reads_per_token",
            "mb_per_token", "io_ms", "mem_ms", "compute_ms", "total_ms", "total_ms_p99")
    out = {k: row[k] for k in keys}
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in out.items()}


def paper_best(rows: Any) -> Any:
    """windowed+bundled within the budget at QD 32 and merge gap 0 (the paper's reads), at
    the largest fixed window that fits; the budget-shrunk window when none fits."""
    wb = rows[(rows.family == "windowed+bundled") & rows.within_budget
              & (rows.queue_depth == PAPER_QD) & (rows.merge_gap_bytes == 0)]
    fixed = wb[~wb.budgeted.astype(bool)]
    pool = fixed if len(fixed) else wb
    if not len(pool):
        return None
    return pool.sort_values(["window", "total_ms"], ascending=[False, True]).iloc[0]


def advise_point(trace: ActivationTrace, device: str, budget: int, study: dict[str, Any]
                 ) -> dict[str, Any]:
    """One advise search at `budget`: its pick and the paper's layout (None: nothing fits)."""
    kwargs: dict[str, Any] = {"memory": "calibrate", "compute": "none",
                              "memcpy_bytes_per_s": MEMCPY_BYTES_PER_S}
    if study["layouts"]:
        kwargs.update(layouts=study["layouts"], windows=study["windows"])
    t0 = time.perf_counter()
    try:
        advice = advise_layouts(trace, device, budget, **kwargs)
    except InputError as exc:  # below what any searched layout needs
        return {"advise": None, "paper": None, "error": str(exc).splitlines()[0],
                "seconds": time.perf_counter() - t0}
    return {"advise": _pick(advice.ranked.iloc[0]), "paper": _pick(paper_best(advice.rows)),
            "n_configs": int(advice.info["n_configs"]), "seconds": time.perf_counter() - t0}


def mmap_point(trace: ActivationTrace, budget: int) -> dict[str, Any]:
    """mmap dense and sparse with a page cache of `budget`, planned for 1 and 32 faulting
    threads (the plan does not depend on the device) and simulated on every device."""
    from flashsim.advise.models import cost_models
    from flashsim.cost.simulate import io_seconds
    models = cost_models(trace.geometry, memory="calibrate", compute="none",
                         memcpy_bytes_per_s=MEMCPY_BYTES_PER_S)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for pattern in ("dense", "sparse"):
        for qd in MMAP_QDS:  # qd threads, each faulting its own share of a batch's rows
            layout = make_layout(f"mmap-{pattern}", budget_bytes=budget, threads=qd)
            plan = layout.plan(trace)
            mem_s, _ = models.per_token_s(layout, plan)
            for device in DEVICES:
                total = io_seconds(plan, device, qd).sum(axis=1) + mem_s
                out[f"{device}|{pattern} QD{qd}"] = {
                    "reads_per_token": float(plan.reads_per_token().mean()),
                    "mb_per_token": float(plan.bytes_per_token().mean()) / 1e6,
                    "mem_ms": float(mem_s.mean()) * 1e3,
                    "io_ms": float((total - mem_s).mean()) * 1e3,
                    "total_ms": float(total.mean()) * 1e3,
                    "total_ms_p99": float(np.percentile(total, 99)) * 1e3}
    out["seconds"] = time.perf_counter() - t0
    return out


def working_set_bytes(trace: ActivationTrace) -> int:
    """Bytes mmap-sparse ever faults in with an unbounded page cache: what the sparse decode
    touches over the whole trace, readahead included (dense touches the whole FFN)."""
    return int(make_layout("mmap-sparse").plan(trace).length_bytes.sum())


def cached(key: str, fresh: bool, make: Any) -> Any:
    """`make()`, kept as results/dram_budget/<key>.json so a rerun resumes."""
    path = WORK / f"{key}.json"
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    value = make()
    atomic_write_text(path, json.dumps(value, indent=1))
    return value


def paper_windows(trace: ActivationTrace, windows: Any) -> list[dict[str, Any]]:
    """windowed+bundled at each window (merge gap 0), planned once: its DRAM need and its
    ms/token on every device at QD 32 (the 6.7B study's stand-in for a search)."""
    from flashsim.advise.advise import dram_need_bytes
    from flashsim.advise.models import cost_models
    from flashsim.cost.simulate import io_seconds
    models = cost_models(trace.geometry, memory="calibrate", compute="none",
                         memcpy_bytes_per_s=MEMCPY_BYTES_PER_S)
    out = []
    for k in windows:
        layout = make_layout("windowed+bundled", window=k)
        plan = layout.plan(trace)
        mem_s, _ = models.per_token_s(layout, plan)
        row = {"window": k, "dram_bytes": dram_need_bytes(plan)}
        for device in DEVICES:
            io_s = io_seconds(plan, device, PAPER_QD).sum(axis=1)
            row[device] = {"config": f"windowed+bundled k={k}", "merge_gap": "0",
                           "queue_depth": PAPER_QD, "dram_bytes": row["dram_bytes"],
                           "reads_per_token": float(plan.reads_per_token().mean()),
                           "mb_per_token": float(plan.bytes_per_token().mean()) / 1e6,
                           "io_ms": float(io_s.mean()) * 1e3, "mem_ms": float(mem_s.mean()) * 1e3,
                           "compute_ms": 0.0, "total_ms": float((io_s + mem_s).mean()) * 1e3}
        out.append(row)
    return out


def paper_direct(rows: list[dict[str, Any]], device: str, budget: int) -> dict[str, Any]:
    """The largest planned window that fits `budget` (None: none fits)."""
    fits = [r for r in rows if r["dram_bytes"] <= budget]
    best = max(fits, key=lambda r: r["window"]) if fits else None
    return {"advise": None, "paper": None if best is None else best[device],
            "error": "advise not run (cut)", "seconds": 0.0}


def run_study(name: str, fresh: bool) -> dict[str, Any]:
    study = STUDIES[name]
    trace = load_trace(name)
    points = []
    ws = cached(f"{name}-working-set", fresh, lambda: working_set_bytes(trace))
    direct = None
    if name != "opt-mini":
        direct = cached(f"{name}-paper-windows", fresh,
                        lambda: paper_windows(trace, study["windows"]))
    for budget in study["budgets"]:
        mm = cached(f"{name}-mmap-{budget}", fresh, lambda b=budget: mmap_point(trace, b))
        for device in DEVICES:
            if direct is not None:
                adv = paper_direct(direct, device, budget)
            else:
                adv = cached(f"{name}-{device}-{budget}", fresh,
                             lambda d=device, b=budget: advise_point(trace, d, b, study))
            mmap = {k.split("|")[1]: v for k, v in mm.items() if k.startswith(device + "|")}
            points.append({"device": device, "budget_bytes": budget, **adv, "mmap": mmap})
            print(f"{name} {device} {budget / MIB:8.2f} MiB: advise {adv['seconds']:.1f} s, "
                  f"mmap {mm['seconds']:.1f} s", file=sys.stderr, flush=True)
    return {"label": study["label"], "synthetic": study["synthetic"],
            "ffn_bytes": trace.geometry.ffn_bytes, "working_set_bytes": ws,
            "n_tokens": trace.n_tokens, "searched_layouts": study["layouts"] or "all",
            "searched_windows": list(study["windows"]) if study["windows"] else "default",
            "points": points}


SERIES = [("mmap dense QD1", "C0", ":"), ("mmap dense QD32", "C0", "-"),
          ("mmap sparse QD1", "C1", ":"), ("mmap sparse QD32", "C1", "-"),
          ("paper: windowed+bundled", "C2", "-"), ("advise's pick", "C3", "--")]


def series_ms(point: dict[str, Any], name: str) -> float | None:
    """The ms/token of series `name` at one point (None: nothing fits)."""
    if name.startswith("mmap"):
        return point["mmap"][name[5:]]["total_ms"]
    row = point["paper" if name.startswith("paper") else "advise"]
    return None if row is None else row["total_ms"]


def summarize(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per device and budget: each series' ms/token and mmap's factor behind the best."""
    out = []
    for p in study["points"]:
        ms = {name: series_ms(p, name) for name, _, _ in SERIES}
        # the layouts that read into their own buffers (advise's pick counts only when it
        # is not itself an mmap row: below every layout's need, mmap is all that fits)
        pick = p["advise"]
        fits = [v for k, v in ms.items() if v is not None and k.startswith("paper")]
        if pick is not None and not pick["config"].startswith("mmap"):
            fits.append(pick["total_ms"])
        best_mmap = min(v for k, v in ms.items() if k.startswith("mmap"))
        out.append({"device": p["device"], "budget_bytes": p["budget_bytes"], **ms,
                    "best_mmap_ms": best_mmap,
                    "mmap_behind_x": best_mmap / min(fits) if fits else None,
                    "dense_mmap_qd1_behind_x": ms["mmap dense QD1"] / min(fits) if fits else None})
    return out


def draw(results: dict[str, Any]) -> Any:
    """The study's figure: ms/token vs DRAM budget, a panel per trace × device."""
    fig = new_figure(figsize=(11, 4.2 * len(results["studies"])))
    axes = fig.subplots(nrows=len(results["studies"]), ncols=len(DEVICES), squeeze=False)
    for r, (name, study) in enumerate(results["studies"].items()):
        unit, scale = ("MiB", MIB) if name == "opt-mini" else ("GB", GB)
        for c, device in enumerate(DEVICES):
            ax = axes[r][c]
            pts = [p for p in study["points"] if p["device"] == device]
            x = [p["budget_bytes"] / scale for p in pts]
            for label, color, style in SERIES:
                y = [series_ms(p, label) for p in pts]
                y = [np.nan if v is None else v for v in y]
                ax.plot(x, y, style, color=color, marker="o", ms=3, label=label)
            ax.axvline(study["working_set_bytes"] / scale, color="grey", lw=0.8, ls="--")
            ax.axvline(study["ffn_bytes"] / scale, color="k", lw=0.8)
            ax.text(study["ffn_bytes"] / scale, ax.get_ylim()[1], " FFN", va="top", fontsize=8)
            ax.text(study["working_set_bytes"] / scale, ax.get_ylim()[1], " sparse working set",
                    va="top", fontsize=8, color="grey", rotation=90, ha="right")
            ax.set_yscale("log")
            ax.set_xlabel(f"DRAM budget ({unit})")
            ax.set_ylabel("ms/token (I/O + memory)")
            ax.set_title(f"{study['label']}\n{device}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot(results: dict[str, Any], path: Path) -> None:
    save_figure(draw(results), path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    ap.add_argument("--fresh", action="store_true", help="recompute the cached points")
    ap.add_argument("--out", default=str(HERE), help="folder for results.json and figure.png")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    studies = {name: run_study(name, args.fresh) for name in args.studies}
    for study in studies.values():
        study["summary"] = summarize(study)
    results = {"date": time.strftime("%Y-%m-%d"), "devices": list(DEVICES),
               "cost": f"I/O + memory (bytes moved / {MEMCPY_BYTES_PER_S / 1e9:.0f} GB/s "
                       "memcpy); compute not counted",
               "mmap_queue_depths": list(MMAP_QDS), "paper_queue_depth": PAPER_QD,
               "studies": studies, "seconds": time.perf_counter() - t0}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    plot(results, out / "figure.png")
    for study in studies.values():
        print(f"\n{study['label']}: working set {study['working_set_bytes'] / 1e6:.2f} MB, "
              f"FFN {study['ffn_bytes'] / 1e6:.2f} MB")
        for s in study["summary"]:
            cells = " ".join(f"{k}={'-' if s[k] is None else format(s[k], '.3g')}"
                             for k, _, _ in SERIES)
            print(f"  {s['device']:13s} {s['budget_bytes'] / 1e6:9.2f} MB  {cells}  "
                  f"mmap behind x{s['mmap_behind_x'] or float('nan'):.2f}")


if __name__ == "__main__":
    main()
