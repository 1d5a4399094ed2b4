"""CLI: `flashsim advise` — rank layouts × window × merge gap × QD under a DRAM budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..cliutil import add_json_flag, emit, table
from ..data import REFERENCE_TRACE, REFERENCE_TRACE_NAME, TRAINING_TRACE, TRAINING_TRACE_NAME
from ..errors import InputError
from ..units import format_size, parse_int_list, parse_size

RANKED_COLUMNS = [("rank", "#", "d"), ("config", "configuration", "s"),
                  ("merge_gap", "gap", "s"), ("merge_gap_bytes", "gap B", "d"),
                  ("queue_depth", "QD", "d"), ("dram_mb", "DRAM MB", ".3f"),
                  ("reads_per_token", "reads/tok", ".1f"), ("io_ms", "I/O ms", ".3f"),
                  ("mem_ms", "mem ms", ".3f"), ("compute_ms", "compute ms", ".3f"),
                  ("total_ms", "total ms", ".3f")]
FRONT_COLUMNS = [c for c in RANKED_COLUMNS if c[0] != "rank"] + [
    ("within_budget", "in budget", "")]
CHECK_COLUMNS = [("rank", "#", "d"), ("config", "configuration", "s"),
                 ("queue_depth", "QD", "d"), ("predicted_io_ms", "pred I/O ms", ".3f"),
                 ("measured_io_ms", "meas I/O ms", ".3f"), ("error_pct", "err %", "+.1f"),
                 ("predicted_total_ms", "pred total", ".3f"),
                 ("measured_total_ms", "meas total", ".3f"),
                 ("vs_best_measured_pct", "vs best %", "+.1f")]


def register(subparsers: Any) -> None:
    """Add `advise`."""
    p = subparsers.add_parser("advise", help="the layout, window, merge gap and QD to use "
                                             "under a DRAM budget, ranked by ms/token")
    p.add_argument("--device", required=True, help="device profile YAML")
    p.add_argument("--dram-budget", required=True,
                   type=lambda t: parse_size(t, key="--dram-budget", allow_zero=True),
                   help="DRAM for the FFN weights (e.g. 2MiB, 512k)")
    p.add_argument("--trace", help=f"activation trace (default: bundled {REFERENCE_TRACE_NAME})")
    p.add_argument("--train-trace", help=f"what the co-activation orders learn from "
                                         f"(default: {TRAINING_TRACE_NAME})")
    p.add_argument("--qd", default="1,4,8,16,32,64", help="queue depths (default 1,4,8,16,32,64)")
    p.add_argument("--windows", default="1,2,3,4,5,6,8", help="window sizes k (default 1-6,8)")
    p.add_argument("--merge-gaps", default="0,auto",
                   help="merge gaps: sizes or auto (the device's break-even at each QD)")
    p.add_argument("--layouts", default=None, help="comma-separated layout families "
                                                   "(default: all)")
    p.add_argument("--set", dest="which", choices=("predicted", "active"), default="predicted")
    p.add_argument("--block", type=lambda t: parse_size(t, key="--block"), default=4096)
    p.add_argument("--no-compute", action="store_true", help="leave compute out of ms/token")
    p.add_argument("--io-only", action="store_true", help="rank by I/O alone")
    p.add_argument("--memcpy-gb-s", type=float, default=None,
                   help="memory as bytes moved over this bandwidth (no timing run)")
    p.add_argument("--rates", help="fixed memory/compute rates (JSON: compute_*, mem_* keys, "
                                   "or a sweep's host_rates.json)")
    p.add_argument("--top", type=int, default=10, help="ranked rows printed (default 10)")
    p.add_argument("--all-qds", action="store_true",
                   help="print every QD of a configuration (default: its best QD only)")
    p.add_argument("--plot", help="write the DRAM vs ms/token figure (png/pdf/svg)")
    v = p.add_argument_group("the top configurations on the real disk (--validate)")
    v.add_argument("--validate", action="store_true", help="read the top three on this disk")
    v.add_argument("--store", help="folder for the stores (--validate)")
    v.add_argument("--build-stores", action="store_true",
                   help="build the missing stores in --store (else they must exist)")
    v.add_argument("--model", help="model folder the stores are built from (default: bundled)")
    v.add_argument("--validate-tokens", type=int, default=64, help="tokens read (default 64)")
    v.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    v.add_argument("--reader-engine", choices=("auto", "aio", "threads"), default="auto")
    add_json_flag(p)
    p.set_defaults(func=cmd_advise)


def _ints(text: str, key: str) -> list[int]:
    return parse_int_list(text, key=key)


def _rates(path: str, geometry: Any) -> dict[str, Any]:
    """Flat rates from `path`: the file itself, or its entry for this geometry (host rates)."""
    from ..sweep.grid import geometry_key

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read rates ({type(exc).__name__})", file=path,
                         key="--rates", expected="a JSON file of compute_*/mem_* rates") from None
    if isinstance(data, dict) and isinstance(data.get(geometry_key(geometry)), dict):
        data = data[geometry_key(geometry)]
    if not isinstance(data, dict) or not any(str(k).startswith("compute_") for k in data):
        raise InputError("no compute_* rates", file=path, key="--rates",
                         expected=f"compute_*/mem_* keys (or an entry {geometry_key(geometry)})")
    return data


def _models(args: argparse.Namespace, geometry: Any) -> dict[str, Any]:
    """advise()'s memory/compute keywords from the flags."""
    from ..cost.compute import ComputeModel
    from ..cost.memory import MemoryModel

    out: dict[str, Any] = {"memcpy_bytes_per_s": args.memcpy_gb_s * 1e9
                           if args.memcpy_gb_s else None}
    if args.rates:
        rates = _rates(args.rates, geometry)
        out["compute"] = ComputeModel.from_rates(rates, f"fixed rates from {args.rates}")
        mem = MemoryModel.from_rates(rates, f"fixed rates from {args.rates}")
        out["memory"] = mem if mem is not None else "calibrate"
        out["memcpy_bytes_per_s"] = out["memcpy_bytes_per_s"] or rates.get("memcpy_bytes_per_s")
    if args.no_compute or args.io_only:
        out["compute"] = "none"
    if args.io_only:
        out["memory"] = "none"
    return out


def _check_flags(args: argparse.Namespace) -> None:
    if args.validate and not args.store:
        raise InputError("--validate needs a store folder", key="--store",
                         expected="--store DIR (with --build-stores: built there when missing)")
    for key, value in (("--top", args.top), ("--validate-tokens", args.validate_tokens),
                       ("--reps", args.reps)):
        if value < 1:
            raise InputError(f"{value} must be at least 1", key=key)


def cmd_advise(args: argparse.Namespace) -> int:
    """Search, print the ranked table and the Pareto front; plot and validate on request."""
    from ..device import load_params
    from ..trace.format import ActivationTrace
    from .advise import advise_layouts

    _check_flags(args)
    qds, windows = _ints(args.qd, "--qd"), _ints(args.windows, "--windows")
    gaps = [g.strip() for g in args.merge_gaps.split(",") if g.strip()]
    families = [n.strip() for n in args.layouts.split(",")] if args.layouts else None
    params = load_params(Path(args.device))
    trace = ActivationTrace.load(args.trace or REFERENCE_TRACE)
    train = ActivationTrace.load(args.train_trace or TRAINING_TRACE)
    advice = advise_layouts(trace, params, args.dram_budget, qds=qds, windows=windows,
                    merge_gaps=gaps, layouts=families, train_trace=train, which=args.which,
                    block_bytes=args.block, budget_key="--dram-budget",
                    **_models(args, trace.geometry))
    payload = {"trace": str(args.trace or REFERENCE_TRACE_NAME), "device": str(args.device),
               **advice.to_dict(top=args.top)}
    lines = _summary(args, advice)
    if args.plot:
        from .plot import plot_advice

        plot_advice(advice, args.plot, title=f"{Path(args.device).stem}, budget "
                                             f"{format_size(args.dram_budget)}")
        payload["plot"] = args.plot
        lines.append(f"\nfigure: {args.plot}")
    if args.validate:
        checked = _validate(args, advice, trace, params)
        payload["validation"] = checked.to_dict(orient="records")
        lines += ["", "Top three on this disk (I/O measured; memory and compute modelled):",
                  table(payload["validation"], CHECK_COLUMNS)]
    emit(args, payload, "\n".join(lines))
    return 0


def _summary(args: argparse.Namespace, advice: Any) -> list[str]:
    info, best = advice.info, advice.best
    head = (f"{info['n_configs']} configurations ({info['n_candidates']} layout settings × "
            f"merge gaps {','.join(info['merge_gaps'])} × QD {args.qd}; {info['n_plans']} plans)"
            f" searched in {info['seconds']['total']:.1f} s; {info['n_within_budget']} within "
            f"the budget of {format_size(args.dram_budget) if args.dram_budget else 0}")
    pick = (f"pick: {best['config']}, merge gap {best['merge_gap']} "
            f"({best['merge_gap_bytes']} B), QD {best['queue_depth']}: "
            f"{best['total_ms']:.3f} ms/token, {best['dram_mb']:.3f} MB DRAM")
    ranked = (advice.ranked if args.all_qds else advice.distinct()).head(args.top)
    ranked = ranked.to_dict(orient="records")
    front = advice.front.to_dict(orient="records")
    return [head, f"memory: {info['models']['memory']}; compute: {info['models']['compute']}",
            pick, "", "Ranked (mean per token; # counts every QD):", table(ranked, RANKED_COLUMNS), "",
            "Pareto front of DRAM vs ms/token (all configurations):",
            table(front, FRONT_COLUMNS)]


def _validate(args: argparse.Namespace, advice: Any, trace: Any, params: Any):
    from .real import validate_top

    return validate_top(advice, trace, params, store=args.store, tokens=args.validate_tokens,
                        reps=args.reps, model_dir=args.model,
                        build_stores=args.build_stores, reader_engine=args.reader_engine,
                        quiet=args.json)
