"""CLI: `store build`, `generate` (inference from flash), `validate` (real reader vs simulator),
`export-fio` (the plan as a fio job + read_iolog)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cliutil import add_json_flag, emit, table
from ..errors import InputError
from ..units import format_size, parse_int_list, parse_size

DEFAULT_VALIDATE_LAYOUTS = "naive,sparse,windowed,bundled,windowed+bundled,coactivation"


def _layout_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--layout", default=default, help=f"layout name (default {default})")
    p.add_argument("--window", type=int, default=None, help="window k (windowed+ layouts)")
    p.add_argument("--train-trace", help="trace the co-activation layouts learn from "
                                         "(default: the bundled training trace)")
    p.add_argument("--block", type=lambda t: parse_size(t, key="--block"), default=None,
                   help="read alignment (default 4k)")


def register(subparsers: Any) -> None:
    """Add `store build`, `generate`, `validate` and `export-fio`."""
    s = subparsers.add_parser("store", help="weight stores: a model's FFN in a layout's file")
    ssub = s.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    b = ssub.add_parser("build", help="write a model's FFN weights as a layout places them")
    b.add_argument("--model", help="model folder (default: the bundled opt-mini)")
    _layout_args(b, "bundled")
    b.add_argument("--out", required=True, help="store file to write (+ FILE.json index)")
    add_json_flag(b)
    b.set_defaults(func=cmd_store_build)
    v = ssub.add_parser("verify", help="check a store's size and per-layer checksums")
    v.add_argument("store", help="store file")
    add_json_flag(v)
    v.set_defaults(func=cmd_store_verify)

    g = subparsers.add_parser("generate", help="sparse decode with FFN weights read from flash")
    g.add_argument("--model", help="model folder (default: the bundled opt-mini)")
    _layout_args(g, "windowed+bundled")
    g.add_argument("--store", required=True, help="store file built for the layout")
    g.add_argument("--qd", type=int, default=32, help="reads in flight (default 32)")
    g.add_argument("--prompt-file", required=True, help="text file with the prompt")
    g.add_argument("--tokens", type=int, default=32, help="tokens to generate (default 32)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument("--top-p", type=float, default=0.9, help="nucleus p (default 0.9; 0: greedy)")
    g.add_argument("--allow-page-cache", action="store_true",
                   help="read through the page cache where O_DIRECT is impossible")
    g.add_argument("--per-token", action="store_true", help="print the per-token table")
    add_json_flag(g)
    g.set_defaults(func=cmd_generate)

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
                          "repetition, dealt out apart (default: validate.CALIBRATION_PIECES, 4)")
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
    val.add_argument("--engine", choices=("fast", "des"), default="fast")
    val.add_argument("--set", dest="which", choices=("predicted", "active"), default="predicted")
    val.add_argument("--train-trace", help="trace the co-activation layouts learn from")
    val.add_argument("--report", help="write a figure (.png) or a page (.html)")
    val.add_argument("--allow-page-cache", action="store_true")
    add_json_flag(val)
    val.set_defaults(func=cmd_validate)

    e = subparsers.add_parser("export-fio", help="write a fio job + read_iolog of a plan")
    e.add_argument("--trace", help="activation trace (default: the bundled reference trace)")
    _layout_args(e, "windowed+bundled")
    e.add_argument("--store", required=True, help="the layout's store file (the reads' target)")
    e.add_argument("--out", required=True, help="folder for plan.fio and plan.iolog")
    e.add_argument("--qd", type=int, default=32, help="iodepth (default 32)")
    e.add_argument("--ioengine", default="libaio", choices=("libaio", "io_uring"))
    e.add_argument("--target", help="file name written into the iolog (default: the store's "
                                     "absolute path; set it for another machine)")
    add_json_flag(e)
    e.set_defaults(func=cmd_export_fio)


def _make_layout(args: argparse.Namespace):
    from ..layout.registry import make_layout
    from ..trace.format import ActivationTrace

    train = None
    if "coactivation" in args.layout and args.train_trace:
        train = ActivationTrace.load(args.train_trace)
    return make_layout(args.layout, train_trace=train, window=args.window,
                       block_bytes=args.block)


def _load_trace(path: str | None):
    from ..layout.registry import REFERENCE_TRACE, bundled_trace_path
    from ..trace.format import ActivationTrace

    return ActivationTrace.load(path or bundled_trace_path(REFERENCE_TRACE))


def cmd_store_build(args: argparse.Namespace) -> int:
    """Write the store and its index; print where and what."""
    from ..model.checkpoint import load_checkpoint
    from .store import build_store, index_path

    layout = _make_layout(args)
    ckpt = load_checkpoint(args.model)
    store = build_store(ckpt, layout, args.out)
    payload = {"store": str(store.path), "index": str(index_path(store.path)),
               "model": store.index["model"]["name"], "layout": layout.name,
               "placement": store.index["placement"], "file_bytes": store.file_bytes}
    emit(args, payload, f"wrote {store.path} ({format_size(store.file_bytes)}, layout "
                        f"{layout.name}, placement {store.digest}) and its index "
                        f"{index_path(store.path).name}")
    return 0


def cmd_store_verify(args: argparse.Namespace) -> int:
    from .store import WeightStore

    store = WeightStore.open(args.store)
    bad = store.verify()
    payload = {"store": str(store.path), "ok": not bad, "bad_layers": bad,
               "file_bytes": store.file_bytes, "placement": store.index["placement"]}
    emit(args, payload, f"{store.path}: " + ("intact" if not bad else f"checksum mismatch in "
                                                                       f"layers {bad}"))
    return 0 if not bad else 1


def cmd_generate(args: argparse.Namespace) -> int:
    from .runtime import generate_from_flash

    p = Path(args.prompt_file)
    if not p.is_file():
        raise InputError("prompt file does not exist", file=p, expected="a text file")
    layout = _make_layout(args)
    gen = generate_from_flash(args.store, layout, model_dir=args.model,
                              prompt_text=p.read_text(encoding="utf-8", errors="replace"),
                              n_tokens=args.tokens, queue_depth=args.qd, seed=args.seed,
                              top_p=None if args.top_p == 0 else args.top_p,
                              allow_page_cache=args.allow_page_cache)
    s = gen.summary
    payload = {"text": gen.text, "generated_ids": gen.generated_ids, **s,
               "tokens": gen.per_token}
    lines = [gen.text, "",
             f"{s['layout']} at QD {s['queue_depth']} from {s['store']}"
             + ("" if s["o_direct"] else " (through the page cache)"),
             table([s], [("io_ms_p50", "I/O ms p50", ".3f"), ("io_ms_p99", "p99", ".3f"),
                         ("mem_ms_p50", "mem ms", ".3f"), ("compute_ms_p50", "compute ms", ".3f"),
                         ("total_ms_p50", "total ms", ".3f"),
                         ("bytes_per_token", "bytes/token", ".0f"),
                         ("reads_per_token", "reads/token", ".1f")])]
    if args.per_token:
        lines.append(table(gen.per_token, [("position", "pos", "d"), ("reads", "reads", "d"),
                                           ("bytes_read", "bytes", "d"),
                                           ("io_ms", "I/O ms", ".3f"), ("mem_ms", "mem ms", ".3f"),
                                           ("compute_ms", "compute ms", ".3f")]))
    emit(args, payload, "\n".join(lines))
    return 0


_VALIDATE_COLS = [("layout", "layout", "s"), ("queue_depth", "QD", "d"),
                  ("reads_per_token", "reads/tok", ".0f"),
                  ("measured_io_ms_p50", "meas p50", ".3f"),
                  ("predicted_io_ms_p50", "pred p50", ".3f"),
                  ("measured_io_ms_p99", "meas p99", ".3f"),
                  ("predicted_io_ms_p99", "pred p99", ".3f"),
                  ("error_p50_pct", "err p50 %", ".1f"), ("error_p99_pct", "err p99 %", ".1f"),
                  ("bias_pct", "bias %", "+.1f"), ("noise_p50_pct", "noise %", ".1f")]


def cmd_validate(args: argparse.Namespace) -> int:
    from ..trace.format import ActivationTrace
    from .validate import CALIBRATION_PIECES, meets_goal, validate

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
    trace = _load_trace(args.trace)
    train = ActivationTrace.load(args.train_trace) if args.train_trace else None
    result = validate(trace, names, qds, store=args.store, model_dir=args.model,
                      profile=args.device, calibrate=args.calibrate, reps=args.reps,
                      tokens=args.tokens, engine=args.engine, with_fio=args.with_fio,
                      train_trace=train, which=args.which,
                      calibration_bytes=args.calibration_size, calibrate_on=args.calibrate_on,
                      calibration_duration_s=args.calibration_duration, quick_fit=args.quick_fit,
                      calibration_pieces=CALIBRATION_PIECES if args.calibration_pieces is None
                      else args.calibration_pieces,
                      reader_engine=args.reader_engine, calibration_batch_reads=batch_reads,
                      allow_page_cache=args.allow_page_cache, quiet=args.json)
    for row in result.rows:
        row["meets_goal"] = meets_goal(row)
    cols = list(_VALIDATE_COLS)
    if args.with_fio:
        cols += [("fio_ms_per_token", "fio ms/tok", ".3f"),
                 ("predicted_stream_ms_per_token", "pred stream", ".3f")]
    if args.report:
        from .report import write_report
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
    from .fio_export import export_fio
    from .store import WeightStore

    layout = _make_layout(args)
    trace = _load_trace(args.trace)
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
