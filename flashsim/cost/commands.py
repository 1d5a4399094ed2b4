"""CLI: `flashsim simulate` (one layout, per-token cost) and `flashsim compare` (all layouts)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table
from ..data import (
    REFERENCE_TRACE,
    REFERENCE_TRACE_NAME,
    TRAINING_TRACE,
    TRAINING_TRACE_NAME,
    bundled_device_names,
    bundled_trace_names,
)
from ..device.gap import DEFAULT_MERGE_GAP
from ..errors import InputError
from ..layout.coactivation import ORDER_METHODS
from ..layout.registry import COMPARE_ORDER, layout_names
from ..units import format_size
from .tables import TABLE2_COLUMNS, TABLE3_COLUMNS, add_display_units, plot_compare

MAX_BLOCK = 64 << 20
"""Largest read alignment: far beyond any device block, small enough to stay a typo check."""
MAX_WINDOW = 1 << 20
"""Largest window in tokens (longer than any trace)."""
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", "")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", help="activation trace: a file or a bundled name ("
                   + ", ".join(bundled_trace_names()) + f"; default {REFERENCE_TRACE_NAME})")
    p.add_argument("--device", required=True, help="device profile: a YAML file or a bundled "
                   "name (" + ", ".join(bundled_device_names()) + ")")
    p.add_argument("--qd", type=cliargs.queue_depth("--qd"), default=32,
                   help="reads in flight (default 32)")
    p.add_argument("--engine", choices=("fast", "des"), default="fast",
                   help="device model: numba fast path (default) or the SimPy reference")
    p.add_argument("--set", dest="which", choices=("predicted", "active"), default="predicted",
                   help="neurons that drive the loads (default: predicted)")
    p.add_argument("--train-trace",
                   help=f"trace the co-activation layouts learn from (default: {TRAINING_TRACE_NAME})")
    p.add_argument("--block", type=cliargs.size("--block", maximum=MAX_BLOCK, power_of_two=True),
                   default=4096, help="read alignment (default 4k)")
    p.add_argument("--memcpy-gb-s", type=cliargs.rate("--memcpy-gb-s"), default=None,
                   help="fix the memcpy bandwidth instead of measuring it")
    p.add_argument("--merge-gap", default=DEFAULT_MERGE_GAP,
                   help="also merge reads at most this far apart: auto (default: the device's "
                        "break-even gap at this QD) or a size (0 = paper-literal, no gap "
                        "merging)")
    p.add_argument("--out", type=cliargs.out_file("--out"),
                   help="also write the per-token rows to OUT and one row per layout to "
                        "OUT-summary (.csv or .parquet, by suffix)")
    add_json_flag(p)


def register(subparsers: Any) -> None:
    """Add `simulate` and `compare`."""
    p = subparsers.add_parser("simulate", help="per-token I/O, memory and compute of a layout")
    _common(p)
    p.add_argument("--layout", default="windowed+bundled",
                   help="one of " + ", ".join(layout_names()))
    p.add_argument("--window", type=cliargs.count("--window", maximum=MAX_WINDOW), default=None,
                   help="window k in tokens (windowed+ layouts)")
    p.add_argument("--dram-budget", type=cliargs.size("--dram-budget", maximum=1 << 40),
                   default=None,
                   help="FFN DRAM budget (e.g. 2m); shrinks the window when exceeded")
    p.add_argument("--chunk", type=cliargs.size("--chunk", maximum=1 << 30), default=None,
                   help="read size of naive/hybrid (default 1m)")
    p.add_argument("--order-method", choices=ORDER_METHODS, default=None,
                   help="neuron ordering of the coactivation layouts (default cluster; path: "
                        "the greedy co-activation walk)")
    p.add_argument("--hot-threshold", type=cliargs.number("--hot-threshold", minimum=0.0,
                                                          maximum=1.0), default=None,
                   help="coactivation: neurons used by at least this share of training "
                        "tokens go first, as one run (default 0.5)")
    p.add_argument("--tokens", action="store_true", help="print the per-token table too")
    p.set_defaults(func=cmd_simulate)

    c = subparsers.add_parser("compare", help="all layouts: paper-style Table 2 and Table 3")
    _common(c)
    c.add_argument("--layouts", default=",".join(COMPARE_ORDER),
                   help="comma-separated layout names (default: all)")
    c.add_argument("--plot", type=cliargs.out_file("--plot", suffixes=FIGURE_SUFFIXES),
                   help="write a figure (png/pdf/svg)")
    c.set_defaults(func=cmd_compare)


def _load_inputs(args: argparse.Namespace):
    """Device profile and trace (files or bundled names); resolves `--merge-gap` into
    `args.gap_setting` and `args.gap` (a GapChoice, for the headline)."""
    from ..device.gap import parse_merge_gap, resolve_merge_gap
    from ..device.profile import DeviceProfile
    from ..trace.format import ActivationTrace

    if args.qd < 1:
        raise InputError(f"queue depth {args.qd} must be at least 1", key="--qd")
    args.gap_setting = parse_merge_gap(args.merge_gap, key="--merge-gap")  # before loading
    params = DeviceProfile.load(args.device)
    trace = ActivationTrace.load(args.trace or REFERENCE_TRACE)
    args.gap = resolve_merge_gap(args.gap_setting, params, args.qd, args.block,
                                 key="--merge-gap")
    return params, trace


def _check_out(args: argparse.Namespace) -> None:
    """Refuse an `--out` of unknown type before any work (its folder is checked by the flag)."""
    if args.out:
        from .export import check_results_path

        check_results_path(args.out, key="--out")


def _write_out(args: argparse.Namespace, frames: dict, summaries: list[dict[str, Any]]
               ) -> dict[str, str] | None:
    """Write `--out` (per-token rows and summaries); the paths written, or None."""
    if not args.out:
        return None
    from .export import write_results

    tokens, summary = write_results(args.out, frames, summaries, key="--out")
    return {"tokens": str(tokens), "summary": str(summary)}


def _gap_line(args: argparse.Namespace) -> str:
    return "merge gap: " + args.gap.describe(Path(args.device).stem)


def _train(args: argparse.Namespace, names: list[str]):
    from ..trace.format import ActivationTrace

    if not any(n.startswith(("coactivation", "windowed+coactivation")) for n in names):
        return None
    return ActivationTrace.load(args.train_trace or TRAINING_TRACE)


def _run(name: str, args: argparse.Namespace, params, trace, train, **overrides):
    from .run import simulate_layout  # pandas: see cli.py on lazy imports in commands

    memcpy = args.memcpy_gb_s * 1e9 if args.memcpy_gb_s else None
    frame, summary, plan = simulate_layout(
        name, trace, params, args.qd, engine=args.engine, which=args.which, train_trace=train,
        memcpy_bytes_per_s=memcpy, block_bytes=args.block, merge_gap_bytes=args.gap_setting,
        **overrides)
    summary["params"] = plan.params | {"placement": plan.meta["placement"]}
    return frame, summary, plan


def cmd_simulate(args: argparse.Namespace) -> int:
    """Plan one layout on the trace and print its per-token cost summary."""
    if args.window is not None and args.window < 1:
        raise InputError(f"window {args.window} must be at least 1 token", key="--window",
                         expected="an integer ≥ 1")
    if args.layout not in layout_names():
        raise InputError(f"unknown layout {args.layout!r}", key="--layout",
                         expected="one of " + ", ".join(layout_names()))
    _check_out(args)
    params, trace = _load_inputs(args)
    train = _train(args, [args.layout])
    frame, summary, _ = _run(args.layout, args, params, trace, train, window=args.window,
                             dram_budget_bytes=args.dram_budget, chunk_bytes=args.chunk,
                             order_method=args.order_method, hot_threshold=args.hot_threshold)
    summary = add_display_units(summary)
    summary["trace"] = str(args.trace or REFERENCE_TRACE_NAME)
    summary["device"] = str(args.device)
    summary.update(args.gap.to_dict())
    written = _write_out(args, {args.layout: frame}, [summary])
    payload = dict(summary, tokens=frame.to_dict(orient="records"), out=written)
    lines = [f"{summary['layout']} on {summary['device']} at QD {args.qd} "
             f"({summary['n_tokens']} tokens, {summary['set']} set, {args.engine} engine)",
             _gap_line(args)]
    lines.append(table([summary], TABLE2_COLUMNS + TABLE3_COLUMNS[1:]))
    if args.tokens:
        lines.append(table(frame.to_dict(orient="records"),
                           [("token", "token", "d"), ("reads", "reads", "d"),
                            ("bytes", "bytes", "d"), ("io_ms", "I/O ms", ".3f"),
                            ("mem_ms", "mem ms", ".4f"), ("compute_ms", "compute ms", ".3f"),
                            ("total_ms", "total ms", ".3f")]))
    if written:
        lines.append(f"results: {written['tokens']}, {written['summary']}")
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Every layout with its defaults on one trace and device: Table 2 and Table 3."""
    from ..progress import progress

    names = [n.strip() for n in args.layouts.split(",") if n.strip()]
    unknown = [n for n in names if n not in layout_names()]
    if unknown or not names:
        raise InputError(f"unknown layout {unknown[0] if unknown else '(none)'!r}",
                         key="--layouts", expected="names from " + ", ".join(layout_names()))
    _check_out(args)
    params, trace = _load_inputs(args)
    train = _train(args, names)
    rows, frames = [], {}
    for name in progress(names, total=len(names), desc="layouts", quiet=args.json):
        frames[name], summary, _ = _run(name, args, params, trace, train)
        rows.append(add_display_units(summary))
    g = trace.geometry
    head = (f"{trace.n_tokens - trace.n_prompt_tokens} generated tokens of {g.name} "
            f"(FFN {format_size(g.ffn_bytes)}), {args.which} set, device {args.device}, "
            f"QD {args.qd}, block {format_size(args.block)}")
    human = "\n".join([head, _gap_line(args), "",
                       "I/O (like the paper's Table 2):", table(rows, TABLE2_COLUMNS), "",
                       "Per token (like the paper's Table 3):", table(rows, TABLE3_COLUMNS)])
    if args.plot:
        plot_compare(rows, args.plot, title=head)
        human += f"\n\nfigure: {args.plot}"
    written = _write_out(args, frames, rows)
    if written:
        human += f"\nresults: {written['tokens']}, {written['summary']}"
    emit(args, {"trace": str(args.trace or REFERENCE_TRACE_NAME), "device": str(args.device),
                "queue_depth": args.qd, "set": args.which, **args.gap.to_dict(),
                "rows": rows, "plot": args.plot, "out": written}, human)
    return 0
