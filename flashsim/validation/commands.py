"""CLI: `validate` (the real reader vs the simulator on the same plans) and `export-fio`
(a plan as a fio job + read_iolog)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table
from ..data import resolve_device
from ..device.profile import DecodeWaitInfo, DeviceProfile
from ..errors import InputError
from ..figures import figure_format
from ..loader.commands import add_layout_args, load_trace, make_layout_from_args
from ..loader.store import WeightStore
from ..trace.format import ActivationTrace
from ..units import format_size, parse_int_list
from .e2e_spec import DEFAULT_E2E_LAYOUTS, DEFAULT_E2E_TOKENS
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
                          "layout's store is (built there with --build-stores; --end-to-end: "
                          "a folder)")
    val.add_argument("--build-stores", action="store_true",
                     help="build the layouts' stores that --store lacks (default: a missing "
                          "store is an error)")
    val.add_argument("--model", help="model folder for building stores (default: bundled)")
    val.add_argument("--device", help="device profile YAML (not needed with --calibrate)")
    val.add_argument("--layouts", default=None,
                     help=f"comma-separated layouts (default {DEFAULT_VALIDATE_LAYOUTS}; "
                          f"with --end-to-end {','.join(DEFAULT_E2E_LAYOUTS)})")
    val.add_argument("--qd", type=cliargs.queue_depths("--qd"), default="1,8,32",
                     help="queue depths (default 1,8,32)")
    val.add_argument("--reps", type=cliargs.count("--reps", maximum=1000), default=3,
                     help="repetitions (default 3)")
    val.add_argument("--tokens", type=cliargs.count("--tokens", maximum=1 << 20), default=None,
                     help="first N generated tokens only (with --end-to-end: tokens generated "
                          f"per decode, default {DEFAULT_E2E_TOKENS})")
    val.add_argument("--calibrate", action="store_true",
                     help="measure a quick profile now (chunks/QDs matched to the plans)")
    val.add_argument("--calibration-size",
                     type=cliargs.size("--calibration-size", maximum=1 << 44), default=1 << 30,
                     help="calibration data file size (default 1GiB)")
    val.add_argument("--calibrate-on", choices=("file", "store"), default="file",
                     help="calibrate on a fresh random-data file (default) or over the "
                          "largest store (the extent the plans read)")
    val.add_argument("--calibration-duration",
                     type=cliargs.number("--calibration-duration", above=0.0, maximum=3600.0),
                     default=0.5,
                     help="seconds per calibration point and repetition (default 0.5)")
    val.add_argument("--calibration-pieces",
                     type=cliargs.count("--calibration-pieces", maximum=1000), default=None,
                     help="measure each calibration point in this many shorter pieces per "
                          "repetition, dealt out apart (default: spec.CALIBRATION_PIECES, 4)")
    val.add_argument("--calibration-batch-reads", default="1,4,16,64",
                     help="short-batch calibration points: batches of these many reads at "
                          "the plans' QDs, read like a plan's batch (default 1,4,16,64; "
                          "'none': steady-state points only)")
    val.add_argument("--drift-probe", action="store_const", const=True, default=None,
                     help="re-measure the --device profile's own 4-64 KiB points between "
                          "the row blocks (or the decodes) and scale its model by how much "
                          "slower or faster they are now (rows keep undrifted_* errors; "
                          "default: off)")
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
    val.add_argument("--report", type=cliargs.out_file("--report"),
                     help="write a figure (.png) or a page (.html)")
    val.add_argument("--allow-page-cache", action="store_true")
    val.add_argument("--batch-gap-us",
                     type=cliargs.number("--batch-gap-us", minimum=0.0, maximum=1e7),
                     default=None,
                     help="leave the device idle this long before every (token, layer) batch "
                          "(busy wait), as the decode's compute does (default: none)")
    add_end_to_end_args(val)
    add_mmap_args(val)
    add_json_flag(val)
    val.set_defaults(func=cmd_validate)
    register_export_fio(subparsers)


def add_mmap_args(val: Any) -> None:
    """The options of the mmap rows."""
    mm = val.add_argument_group("mmap rows (--layouts mmap-sparse,mmap-dense)")
    mm.add_argument("--budgets", default=None,
                    help="page-cache budgets of the mmap rows, e.g. 1m,2m,none (default none)")
    mm.add_argument("--mmap-advice", choices=("normal", "random"), default="normal",
                    help="madvise of the mapping: normal (the disk's read-around) or random")
    mm.add_argument("--fault-probe", action="store_true",
                    help="time page faults of the store before and after each row block "
                         "at its thread count against the profile's model of the same reads "
                         "and scale the block's I/O by that ratio (rows keep unprobed_error; "
                         "default: off)")
    mm.add_argument("--page-cache", default="two-list",
                    help="the simulated page cache: two-list (the kernel's inactive and "
                         "active lists), lru (one LRU list), or both, comma-separated, "
                         "predicting the same runs (default two-list)")


def register_export_fio(subparsers: Any) -> None:
    """Add `export-fio`."""
    e = subparsers.add_parser("export-fio", help="write a fio job + read_iolog of a plan")
    e.add_argument("--trace", help="activation trace (default: the bundled reference trace)")
    add_layout_args(e, "windowed+bundled")
    e.add_argument("--store", required=True, help="the layout's store file (the reads' target)")
    e.add_argument("--out", type=cliargs.out_dir("--out"), required=True,
                   help="folder for plan.fio and plan.iolog")
    e.add_argument("--qd", type=cliargs.queue_depth("--qd"), default=32,
                   help="iodepth (default 32)")
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
                  ("error_mean_pct", "err mean %", ".1f"), ("bias_pct", "bias %", "+.1f"),
                  ("noise_p50_pct", "noise %", ".1f"),
                  ("baseline_error_p50_pct", "base err %", ".1f")]


def add_end_to_end_args(val: argparse.ArgumentParser) -> None:
    """The options of `validate --end-to-end` (the real decode from flash vs the simulator)."""
    e2e = val.add_argument_group("end-to-end (--end-to-end)")
    e2e.add_argument("--end-to-end", action="store_true",
                     help="run the real sparse decode from flash and compare its per-token "
                          "I/O, memory, compute and total with the simulator")
    e2e.add_argument("--prompt-file", help="text file with the prompt (--end-to-end)")
    e2e.add_argument("--prompt-tokens", type=cliargs.count("--prompt-tokens", maximum=1 << 20),
                     default=None,
                     help="cut the prompt to its first N tokens (default: the whole file)")
    e2e.add_argument("--seed", type=cliargs.seed("--seed"), default=None,
                     help="sampling seed (default 0)")
    e2e.add_argument("--top-p", type=cliargs.probability("--top-p"), default=None,
                     help="nucleus p (default 0.9; 0: greedy)")
    e2e.add_argument("--merge-gap", default=None,
                     help="merge reads at most this far apart: auto (default: the device's "
                          "break-even gap at each QD, as simulate) or a size such as 0 or 8k")
    e2e.add_argument("--block", type=cliargs.size("--block", maximum=64 << 20, power_of_two=True),
                     default=None,
                     help="read alignment (default 4k)")
    e2e.add_argument("--memcpy-gb-s", type=cliargs.rate("--memcpy-gb-s"), default=None,
                     help="memory model: fix the memcpy bandwidth (default: measured)")
    e2e.add_argument("--no-wait-calibration", action="store_const", const=True, default=None,
                     help="do not calibrate the decode's compute after its waits on reads "
                          "(default: from decodes of the calibration text at sparse QD 1 and "
                          "windowed+bundled QD 32; without: the profile's decode_wait, if any)")
    e2e.add_argument("--save-profile", type=cliargs.out_file("--save-profile",
                                                             suffixes=(".yaml", ".yml")),
                     default=None,
                     help="write the --device profile with the calibrated decode_wait section "
                          "here, for simulate, compare and advise")


E2E_ONLY = ("prompt_file", "prompt_tokens", "seed", "top_p", "merge_gap", "block",
            "memcpy_gb_s", "no_wait_calibration", "save_profile")
"""Options of --end-to-end alone (None unless given)."""


def check_mode(args: argparse.Namespace) -> None:
    """InputError for an option of the other mode (replay vs --end-to-end)."""
    if args.end_to_end:
        other = [("--trace", args.trace is not None), ("--with-fio", args.with_fio),
                 ("--set", args.which != "predicted"),
                 ("--reader-engine", args.reader_engine != "auto"),
                 ("--batch-gap-us", args.batch_gap_us is not None),
                 ("--fault-probe", args.fault_probe)]
        expected = "options of the decode: the run makes its own trace and reader"
    else:
        other = [("--" + k.replace("_", "-"), getattr(args, k) is not None) for k in E2E_ONLY]
        expected = "--end-to-end to run the decode"
    for flag, given in other:
        if given:
            raise InputError(f"{flag} does not apply here", key=flag, expected=expected)


def cmd_validate(args: argparse.Namespace) -> int:
    check_mode(args)
    if args.end_to_end:
        return cmd_end_to_end(args)
    if args.batch_gap_us is not None and args.batch_gap_us < 0:
        raise InputError(f"{args.batch_gap_us} µs", key="--batch-gap-us",
                         expected="a gap ≥ 0 µs")
    # validate pulls in the device fit (scipy.optimize) and numba: ~2.3 s measured with
    # -X importtime, which every other command's start-up would pay at the top
    from .validate import validate

    names = [n.strip() for n in (args.layouts or DEFAULT_VALIDATE_LAYOUTS).split(",")
             if n.strip()]
    qds = parse_int_list(args.qd, key="--qd")
    if any(n.startswith("mmap-") for n in names):
        from .mmap import cmd_validate_mmap
        return cmd_validate_mmap(args, names, qds)
    if args.fault_probe:
        raise InputError("--fault-probe times page faults: it applies to mmap rows",
                         key="--fault-probe", expected="--layouts mmap-sparse,mmap-dense")
    if args.device is None and not args.calibrate:
        raise InputError("no device profile", key="--device",
                         expected="--device PROFILE.yaml or --calibrate")
    if args.device is not None and not resolve_device(args.device).is_file() \
            and not args.calibrate:
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
    if args.batch_gap_us:
        pieces["batch_gap_s"] = args.batch_gap_us * 1e-6
    result = validate(trace, names, qds, store=args.store, build_stores=args.build_stores,
                      model_dir=args.model,
                      profile=args.device, calibrate=args.calibrate, reps=args.reps,
                      tokens=args.tokens, model_engine=args.model_engine,
                      with_fio=args.with_fio, train_trace=train, which=args.which,
                      calibration_bytes=args.calibration_size, calibrate_on=args.calibrate_on,
                      calibration_duration_s=args.calibration_duration, quick_fit=args.quick_fit,
                      reader_engine=args.reader_engine, calibration_batch_reads=batch_reads,
                      allow_page_cache=args.allow_page_cache, quiet=args.json,
                      drift_probe=bool(args.drift_probe), **pieces)
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
    throttle = info["profile"].get("throttle") or {"agree": True}
    if not throttle["agree"]:
        head += ("\nTHE MODEL'S THROTTLE DIFFERS FROM THIS RUN'S: model "
                 f"{_caps(throttle['model'])}, this run {_caps(throttle['this_run'])}")
    emit(args, {"rows": result.rows, **info, "report": args.report},
         head + "\n" + table(result.rows, cols))
    return 0


def _caps(throttle: dict[str, Any] | None) -> str:
    if throttle is None:
        return "none"
    return f"{throttle['read_iops'] or 'no'} IOPS, {throttle['read_mb_s'] or 'no'} MB/s"


END_TO_END_COLUMNS = [("layout", "layout", "s"), ("queue_depth", "QD", "d"),
                      ("merge_gap_bytes", "gap B", "d"),
                      ("measured_io_ms_p50", "io real", ".3f"),
                      ("predicted_io_ms_p50", "io sim", ".3f"),
                      ("measured_mem_ms_p50", "mem real", ".3f"),
                      ("predicted_mem_ms_p50", "mem sim", ".3f"),
                      ("measured_compute_ms_p50", "cmp real", ".3f"),
                      ("predicted_compute_ms_p50", "cmp sim", ".3f"),
                      ("measured_total_ms_p50", "tot real", ".3f"),
                      ("predicted_total_ms_p50", "tot sim", ".3f"),
                      ("total_error_p50_pct", "tot err p50 %", ".1f"),
                      ("total_error_p99_pct", "tot err p99 %", ".1f"),
                      ("total_bias_pct", "tot bias %", "+.1f"),
                      ("total_noise_p50_pct", "tot noise %", ".1f"),
                      ("io_error_p50_pct", "io err %", ".1f"),
                      ("batch_gap_us_p50", "gap µs", ".0f")]
"""The human table of --end-to-end: p50 ms per part, real vs simulated, the total's errors."""


def end_to_end_options(args: argparse.Namespace) -> dict:
    """`validate_end_to_end`'s keyword arguments from the command line (its own defaults
    for whatever was not given)."""
    given = {"layouts": None if args.layouts is None else
             [n.strip() for n in args.layouts.split(",") if n.strip()],
             "tokens": args.tokens, "prompt_tokens": args.prompt_tokens, "seed": args.seed,
             "merge_gap": args.merge_gap, "block_bytes": args.block,
             "calibration_pieces": args.calibration_pieces}
    opts = {k: v for k, v in given.items() if v is not None}
    if args.top_p is not None:
        opts["top_p"] = None if args.top_p == 0 else args.top_p
    if args.no_wait_calibration:
        opts["wait_calibration"] = False
    if args.drift_probe:
        opts["drift_probe"] = True
    if args.memcpy_gb_s is not None:
        if args.memcpy_gb_s <= 0:
            raise InputError(f"{args.memcpy_gb_s} GB/s", key="--memcpy-gb-s",
                             expected="a bandwidth > 0")
        opts["simulate_options"] = {"memcpy_bytes_per_s": args.memcpy_gb_s * 1e9}
    batch_reads = () if args.calibration_batch_reads.strip().lower() in ("none", "") else \
        parse_int_list(args.calibration_batch_reads, key="--calibration-batch-reads")
    return {**opts, "qds": parse_int_list(args.qd, key="--qd"), "store": args.store,
            "build_stores": args.build_stores,
            "model_dir": args.model, "profile": args.device, "calibrate": args.calibrate,
            "reps": args.reps, "model_engine": args.model_engine,
            "calibration_bytes": args.calibration_size, "calibrate_on": args.calibrate_on,
            "calibration_duration_s": args.calibration_duration, "quick_fit": args.quick_fit,
            "calibration_batch_reads": batch_reads, "allow_page_cache": args.allow_page_cache,
            "quiet": args.json}


def save_with_wait(device: str, wait: dict, out: str) -> None:
    """The profile `device` with the run's decode_wait section, written atomically to `out`."""
    profile = DeviceProfile.load(device)
    profile.model_copy(update={"decode_wait": DecodeWaitInfo(**wait)}).save(out)


def cmd_end_to_end(args: argparse.Namespace) -> int:
    """`validate --end-to-end`: the real decode from flash vs the simulator, per part."""
    from .e2e_report import write_figure  # matplotlib only when drawing
    from .end_to_end import validate_end_to_end  # numba, scipy: see cmd_validate

    if args.prompt_file is None:
        raise InputError("no prompt", key="--prompt-file", expected="--prompt-file FILE")
    if args.device is not None and not resolve_device(args.device).is_file():
        raise InputError("device profile does not exist", file=args.device)
    if args.report:
        figure_format(args.report, key="--report")
    if args.save_profile and (args.device is None or args.no_wait_calibration):
        raise InputError("nothing to save", key="--save-profile",
                         expected="--device PROFILE and the wait calibration (no "
                                  "--no-wait-calibration)")
    train = ActivationTrace.load(args.train_trace) if args.train_trace else None
    result = validate_end_to_end(prompt_file=args.prompt_file, train_trace=train,
                                 **end_to_end_options(args))
    if args.report:
        write_figure(result.rows, result.info, args.report)
    if args.save_profile:
        save_with_wait(args.device, result.info["wait_cost"], args.save_profile)
    info = result.info
    head = (f"{info['tokens']} tokens after {info['prompt_tokens']} prompt tokens of "
            f"{info['model']}, {info['reps']} reps, "
            + ("profile calibrated in this run" if info["profile"]["calibrated"]
               else f"profile {args.device}")
            + f"; batch gap {info['batch_gap']['median_us']:.0f} µs ({info['batch_gap']['method']})"
            + ("" if info["o_direct"] else ", THROUGH THE PAGE CACHE"))
    emit(args, {"rows": result.rows, **info, "report": args.report},
         head + "\n" + table(result.rows, END_TO_END_COLUMNS))
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
