"""CLI: `validate` (the real reader vs the simulator on the same plans) and `export-fio`
(a plan as a fio job + read_iolog)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cliutil import add_json_flag, emit, table
from ..errors import InputError
from ..loader.commands import add_layout_args, load_trace, make_layout_from_args
from ..loader.store import WeightStore
from ..trace.format import ActivationTrace
from ..units import format_size, parse_int_list, parse_size
from .fio_export import export_fio
from .report import write_report
from .rows import meets_goal

DEFAULT_VALIDATE_LAYOUTS = "naive,sparse,windowed,bundled,windowed+bundled,coactivation"


def register(subparsers: Any) -> None:
    """Add `validate` and `export-fio`."""
    val = subparsers.add_parser("validate", help="real reader vs simulator on the same plans")
    val.add_argument("--trace", help="activation trace (default: the bundled reference trace)")
    val.add_argument("--store", required=True,
                     help="a store file (used for every layout), or a folder where each "
                          "layout's store is built on first use and reused")
    val.add_argument("--model", help="model folder for building stores (default: bundled)")
    val.add_argument("--device", help="device profile YAML (not needed with --calibrate)")
    val.add_argument("--layouts", default=DEFAULT_VALIDATE_LAYOUTS,
                     help=f"comma-separated layouts (default {DEFAULT_VALIDATE_LAYOUTS})")
    val.add_argument("--qd", default="1,8,32", help="queue depths (default 1,8,32)")
    val.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    val.add_argument("--tokens", type=int, default=None, help="first N generated tokens only")
    val.add_argument("--calibrate", action="store_true",
                     help="measure a quick profile now (chunks/QDs matched to the plans)")
    val.add_argument("--calibration-size", type=lambda t: parse_size(t, key="--calibration-size"),
                     default=1 << 30, help="calibration data file size (default 1GiB)")
    val.add_argument("--calibrate-on", choices=("file", "store"), default="file",
                     help="calibrate on a fresh random-data file (default) or over the "
                          "largest store (the extent the plans read)")
    val.add_argument("--calibration-duration", type=float, default=0.5,
                     help="seconds per calibration point and repetition (default 0.5)")
    val.add_argument("--calibration-pieces", type=int, default=None,
                     help="measure each calibration point in this many shorter pieces per "
                          "repetition, dealt out apart (default: spec.CALIBRATION_PIECES, 4)")
    val.add_argument("--calibration-batch-reads", default="1,4,16,64",
                     help="short-batch calibration points: batches of these many reads at "
                          "the plans' QDs, read like a plan's batch (default 1,4,16,64; "
                          "'none': steady-state points only)")
    val.add_argument("--quick-fit", action="store_true",
                     help="the device fit's quick mode (fewer unit/stripe candidates)")
    val.add_argument("--reader-engine", choices=("auto", "aio", "threads"), default="auto",
                     help="DirectReader engine for the real runs and the calibration "
                          "(auto: native AIO where available, else threads)")
    val.add_argument("--with-fio", action="store_true", help="also replay each plan with fio")
    val.add_argument("--model-engine", choices=("fast", "des"), default="fast",
                     help="device model that predicts: numba fast path (default) or the "
                          "SimPy reference")
    val.add_argument("--engine", dest="model_engine", choices=("fast", "des"),
                     default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    val.add_argument("--set", dest="which", choices=("predicted", "active"), default="predicted")
    val.add_argument("--train-trace", help="trace the co-activation layouts learn from")
    val.add_argument("--report", help="write a figure (.png) or a page (.html)")
    val.add_argument("--allow-page-cache", action="store_true")
    add_json_flag(val)
    val.set_defaults(func=cmd_validate)

    e = subparsers.add_parser("export-fio", help="write a fio job + read_iolog of a plan")
    e.add_argument("--trace", help="activation trace (default: the bundled reference trace)")
    add_layout_args(e, "windowed+bundled")
    e.add_argument("--store", required=True, help="the layout's store file (the reads' target)")
    e.add_argument("--out", required=True, help="folder for plan.fio and plan.iolog")
    e.add_argument("--qd", type=int, default=32, help="iodepth (default 32)")
    e.add_argument("--ioengine", default="libaio", choices=("libaio", "io_uring"))
    e.add_argument("--target", help="file name written into the iolog (default: the store's "
                                     "absolute path; set it for another machine)")
    add_json_flag(e)
    e.set_defaults(func=cmd_export_fio)


VALIDATE_COLUMNS = [("layout", "layout", "s"), ("queue_depth", "QD", "d"),
                  ("reads_per_token", "reads/tok", ".0f"),
                  ("measured_io_ms_p50", "meas p50", ".3f"),
                  ("predicted_io_ms_p50", "pred p50", ".3f"),
                  ("measured_io_ms_p99", "meas p99", ".3f"),
                  ("predicted_io_ms_p99", "pred p99", ".3f"),
                  ("error_p50_pct", "err p50 %", ".1f"), ("error_p99_pct", "err p99 %", ".1f"),
                  ("bias_pct", "bias %", "+.1f"), ("noise_p50_pct", "noise %", ".1f")]


def cmd_validate(args: argparse.Namespace) -> int:
    # validate pulls in the device fit (scipy.optimize) and numba: ~2.3 s measured with
    # -X importtime, which every other command's start-up would pay at the top
    from .validate import validate

    names = [n.strip() for n in args.layouts.split(",") if n.strip()]
    qds = parse_int_list(args.qd, key="--qd")
    if args.device is None and not args.calibrate:
        raise InputError("no device profile", key="--device",
                         expected="--device PROFILE.yaml or --calibrate")
    if args.device is not None and not Path(args.device).is_file() and not args.calibrate:
        raise InputError("device profile does not exist", file=args.device)
    if args.report and Path(args.report).suffix.lower() not in (".png", ".html"):
        raise InputError("unsupported report type", key="--report",
                         expected="a .png or .html path")
    batch_reads = () if args.calibration_batch_reads.strip().lower() in ("none", "") else \
        parse_int_list(args.calibration_batch_reads, key="--calibration-batch-reads")
    trace = load_trace(args.trace)
    train = ActivationTrace.load(args.train_trace) if args.train_trace else None
    pieces = {} if args.calibration_pieces is None else \
        {"calibration_pieces": args.calibration_pieces}
    result = validate(trace, names, qds, store=args.store, model_dir=args.model,
                      profile=args.device, calibrate=args.calibrate, reps=args.reps,
                      tokens=args.tokens, model_engine=args.model_engine,
                      with_fio=args.with_fio, train_trace=train, which=args.which,
                      calibration_bytes=args.calibration_size, calibrate_on=args.calibrate_on,
                      calibration_duration_s=args.calibration_duration, quick_fit=args.quick_fit,
                      reader_engine=args.reader_engine, calibration_batch_reads=batch_reads,
                      allow_page_cache=args.allow_page_cache, quiet=args.json, **pieces)
    for row in result.rows:
        row["meets_goal"] = meets_goal(row)
    cols = list(VALIDATE_COLUMNS)
    if args.with_fio:
        cols += [("fio_ms_per_token", "fio ms/tok", ".3f"),
                 ("predicted_stream_ms_per_token", "pred stream", ".3f")]
    if args.report:
        write_report(result, args.report)
    info = result.info
    head = (f"{info['tokens']} tokens of {info['model']}, {info['reps']} reps, "
            + ("profile calibrated in this run" if info["profile"]["calibrated"]
               else f"profile {args.device}")
            + ("" if info["o_direct"] else ", THROUGH THE PAGE CACHE"))
    emit(args, {"rows": result.rows, **info, "report": args.report},
         head + "\n" + table(result.rows, cols))
    return 0


def cmd_export_fio(args: argparse.Namespace) -> int:
    layout = make_layout_from_args(args)
    trace = load_trace(args.trace)
    plan = layout.plan(trace)
    store = WeightStore.open(args.store)
    store.check_plan(plan, model_sha256=trace.meta.get("model_sha256"))
    target = args.target or str(store.path.resolve())
    info = export_fio(plan, args.out, args.qd, target=target, ioengine=args.ioengine,
                      name="plan")
    emit(args, {**info, "layout": layout.name},
         f"wrote {info['job']} and {info['iolog']}: {info['reads']} reads "
         f"({format_size(info['bytes'])}) of {plan.n_tokens} tokens at iodepth {args.qd}; "
         f"run: cd {Path(info['job']).parent} && fio plan.fio")
    return 0
