"""`flashsim calibrate` and `flashsim device predict | fit | show | migrate`: thin handlers.

The CLI imports this module to build its parser, so the handlers import `fit` and
`calibrate` themselves: with scipy.optimize (0.4 s) and numba (0.15-0.3 s) they take
0.6-0.9 s to import, against 0.26 s for the device package (measured with -X importtime).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table
from ..errors import InputError
from ..units import format_size, parse_int_list, parse_size, parse_size_list
from .check_commands import register_check
from .fio import profile_from_fio
from .profile import DeviceProfile, ThrottleInfo, migrate_profile
from .span import STANDARD_SPANS
from .testbed_commands import register_testbed

MAX_PROFILE_QD = 4096
"""Deepest queue a profile point may hold (DevicePoint.queue_depth)."""


def register(subparsers: Any) -> None:
    """Add `calibrate` and the `device` group to the flashsim CLI."""
    _register_calibrate(subparsers)
    dev = subparsers.add_parser("device", help="use a device profile: predict, fit, show, "
                                               "migrate, check; real test devices: testbed")
    sub = dev.add_subparsers(dest="device_command", required=True, metavar="SUBCOMMAND",
                             parser_class=type(dev))
    pr = sub.add_parser("predict", help="predicted throughput and latency at a chunk × QD point")
    pr.add_argument("--profile", required=True, help="device profile YAML")
    pr.add_argument("--chunk", type=cliargs.size("--chunk", maximum=1 << 30), required=True,
                    help="read size, e.g. 32k")
    pr.add_argument("--qd", type=cliargs.queue_depths("--qd"), required=True,
                    help="queue depth (reads in flight)")
    pr.add_argument("--pattern", choices=("random", "sequential"), default="random")
    add_json_flag(pr)
    pr.set_defaults(func=cmd_predict)

    ft = sub.add_parser("fit", help="(re)fit a profile's model parameters to its points")
    ft.add_argument("--profile", required=True, help="device profile YAML")
    ft.add_argument("--out", type=cliargs.out_file("--out"), default=None,
                    help="where to write (default: in place)")
    _add_cv_flag(ft, 0)
    _add_correction_flag(ft)
    _add_throttle_flag(ft, "the profile's own (or none); 'none' removes it")
    add_json_flag(ft)
    ft.set_defaults(func=cmd_fit)

    sh = sub.add_parser("show", help="a profile's points, model predictions and errors")
    sh.add_argument("--profile", required=True, help="device profile YAML")
    add_json_flag(sh)
    sh.set_defaults(func=cmd_show)

    _register_migrate(sub)
    register_testbed(sub)
    register_check(sub)


def _register_calibrate(subparsers: Any) -> None:
    """`flashsim calibrate`: measure (or import) a device's points and fit its model."""
    cal = subparsers.add_parser(
        "calibrate", help="measure a disk's random-read curve (or import fio JSON) into a "
                          "device profile and fit the model")
    cal.add_argument("--file", help="data file to read (created with random data if missing)")
    cal.add_argument("--size", type=cliargs.size("--size", maximum=1 << 44), default="2GiB",
                     help="data file size (default 2GiB)")
    cal.add_argument("--out", type=cliargs.out_file("--out"), required=True,
                     help="profile YAML to write")
    cal.add_argument("--chunks", type=cliargs.sizes("--chunks"), default=None,
                     help="chunk sizes (default 4k,8k,16k,32k,64k,128k,256k,1m)")
    cal.add_argument("--qd", type=cliargs.queue_depths("--qd", maximum=MAX_PROFILE_QD),
                     default=None, help="queue depths (default 1,2,4,8,16,32,64)")
    cal.add_argument("--duration", type=cliargs.number("--duration", above=0.0, maximum=3600.0),
                     default=0.32, help="seconds per point (default 0.32)")
    cal.add_argument("--warmup", type=cliargs.number("--warmup", minimum=0.0, maximum=3600.0),
                     default=0.1,
                     help="warm-up seconds per point, excluded (default 0.1)")
    cal.add_argument("--repeats", type=cliargs.count("--repeats", maximum=1000), default=5,
                     help="rounds over the grid; each point is the median (default 5)")
    cal.add_argument("--allow-page-cache", action="store_true",
                     help="if O_DIRECT is unsupported, read through the page cache (recorded)")
    cal.add_argument("--engine", choices=("auto", "threads", "aio"), default="auto",
                     help="reader engine (auto: compiled native Linux AIO where available, "
                          "else the thread pool)")
    _add_batch_flags(cal)
    cal.add_argument("--from-fio", nargs="+", metavar="JSON", default=None,
                     help="build the profile from fio JSON outputs instead of measuring")
    _add_throttle_flag(cal, "none; with --from-fio only: a measuring calibration reads "
                            "the caps of the cgroup its reads run in")
    cal.add_argument("--name", default=None, help="profile name (default: --out file stem)")
    cal.add_argument("--description", default="", help="profile description")
    cal.add_argument("--no-fit", action="store_true", help="store the points only")
    cal.add_argument("--holdout", type=cliargs.chunk_qd_pairs("--holdout", max_qd=MAX_PROFILE_QD),
                     default=None, metavar="CHUNK/QD,...",
                     help="also measure these points off the grid (e.g. 12k/3,48k/12) in the "
                          "same rounds; the fit never sees them, their error is reported")
    _add_cv_flag(cal, 8)
    _add_correction_flag(cal)
    add_json_flag(cal)
    cal.set_defaults(func=cmd_calibrate)


def _add_batch_flags(cal: argparse.ArgumentParser) -> None:
    """The short-batch and span points of a calibration."""
    cal.add_argument("--batch-reads", default="4,16,64",
                     help="short-batch points beside the grid: batches of these many reads "
                          "(chunks up to 256 KiB; behind a blkio byte cap every chunk) at each "
                          "--batch-qds, median wall time of a "
                          "call "
                          "(default 4,16,64; 'none': the steady-state grid only)")
    cal.add_argument("--batch-qds", type=cliargs.queue_depths("--batch-qds"), default=None,
                     help="queue depths of the short batches (default 1,8,32)")
    cal.add_argument("--clustered-reads", default="16",
                     help="clustered short batches: this many reads to every other chunk from "
                          "a random start, at the --batch-qds above 1 (what tells a device's "
                          "striping apart; default 16; 'none': random batches only)")
    cal.add_argument("--spans", default=None,
                     help="span points: five of the short batches measured again with their "
                          "reads confined to the file's first SPAN bytes, for each span below "
                          "the file's size; the model's time for a plan is scaled by the "
                          "measured ratio at the plan's file size (default "
                          + ",".join(format_size(s) for s in STANDARD_SPANS)
                          + "; 'none': no span points)")


def _add_throttle_flag(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--throttle", type=parse_throttle, default=None,
                        metavar="IOPS,MB_S",
                        help="the blk-throttle read caps the points were measured behind, "
                             "e.g. 15000,300 (read IOPS, read MB/s; 'none' for either "
                             "uncapped): the device behind them is fitted (default: "
                             + default + ")")


NO_THROTTLE = "none"


def parse_throttle(text: str) -> ThrottleInfo | str:
    """--throttle IOPS,MB_S (either part 'none'), or 'none': no throttle."""
    text = str(text).strip().lower()
    if text == NO_THROTTLE:
        return NO_THROTTLE
    parts = [t.strip() for t in text.split(",")]
    expected = "IOPS,MB_S (e.g. 15000,300; 'none' for an uncapped part), or none"
    if len(parts) != 2:
        raise InputError(f"{text!r} is not two caps", key="--throttle", expected=expected)
    caps = [None if t == NO_THROTTLE else
            cliargs.number("--throttle", above=0.0, maximum=1e9)(t) for t in parts]
    if caps == [None, None]:
        raise InputError("no cap given", key="--throttle", expected=expected)
    return ThrottleInfo(read_iops=caps[0], read_mb_s=caps[1], source="given: --throttle")


def with_throttle(profile: DeviceProfile, throttle: ThrottleInfo | str | None
                  ) -> DeviceProfile:
    """The profile behind `throttle` (None: as it is; NO_THROTTLE: behind none)."""
    if throttle is None:
        return profile
    return profile.model_copy(update={"throttle": None if throttle == NO_THROTTLE
                                      else throttle})


def _register_migrate(sub: Any) -> None:
    mg = sub.add_parser("migrate", help="rewrite a profile of an older schema_version (flat "
                                        "params) in the current layout (params by stage)")
    mg.add_argument("profile", metavar="PROFILE", help="device profile YAML")
    mg.add_argument("--out", type=cliargs.out_file("--out"), default=None,
                    help="where to write (default: in place)")
    add_json_flag(mg)
    mg.set_defaults(func=cmd_migrate)


def _add_cv_flag(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--cv-folds", type=cliargs.count("--cv-folds", minimum=0, maximum=1000),
                        default=default, metavar="K",
                        help="k-fold cross-validation of the fit: each fold refitted without "
                             f"its points predicts them; 0 = none (default {default})")


def _add_correction_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--correction", choices=("auto", "measured-residual", "none"),
                        default="auto",
                        help="the measured residual on top of the layered model (the model × "
                             "measured/modelled at the points, interpolated between them): "
                             "auto keeps it when it lowers the cross-validated error (runs "
                             "the cross-validation); default auto")


_FIT_KEYS = ("median_abs_error_pct", "worst_abs_error_pct", "duration_s", "cv_folds",
             "cv_median_abs_error_pct", "cv_worst_abs_error_pct", "cv_duration_s",
             "holdout_median_abs_error_pct", "holdout_worst_abs_error_pct",
             "correction_method", "uncorrected_cv_median_abs_error_pct",
             "uncorrected_cv_worst_abs_error_pct", "uncorrected_holdout_median_abs_error_pct",
             "uncorrected_holdout_worst_abs_error_pct")


def _fit_summary(profile) -> dict[str, Any]:
    fit = profile.fit.model_dump() if profile.fit else {}
    return {"name": profile.name, "n_points": len(profile.points),
            "n_holdout_points": len(profile.holdout_points),
            "params": profile.params.model_dump() if profile.params else None,
            "correction": profile.correction,
            **{k: fit.get(k) for k in _FIT_KEYS}}


def _fit_lines(profile) -> str:
    """The fit's errors in words: in sample, cross-validated, at the holdout points."""
    f = profile.fit
    if f is None:
        return ""
    text = (f"fit (layered model): median |error| {f.median_abs_error_pct:.1f}%, worst "
            f"{f.worst_abs_error_pct:.1f}%")
    if f.correction_method:
        text += f"\ncorrection {f.correction_method}"
    if f.cv_folds:
        text += (f"\n{f.cv_folds}-fold cross-validated: median |error| "
                 f"{f.cv_median_abs_error_pct:.1f}%, worst {f.cv_worst_abs_error_pct:.1f}%")
    if f.holdout_median_abs_error_pct is not None:
        text += (f"\nholdout ({len(profile.holdout_points)} points, never fitted): median "
                 f"|error| {f.holdout_median_abs_error_pct:.1f}%, worst "
                 f"{f.holdout_worst_abs_error_pct:.1f}%")
        if f.uncorrected_holdout_median_abs_error_pct is not None:
            text += (f" (layered model alone: {f.uncorrected_holdout_median_abs_error_pct:.1f}%,"
                     f" worst {f.uncorrected_holdout_worst_abs_error_pct:.1f}%)")
    return text


def _check_cv_folds(args: argparse.Namespace) -> None:
    if args.cv_folds < 0 or args.cv_folds == 1:
        raise InputError(f"{args.cv_folds} folds", key="--cv-folds",
                         expected="0 (no cross-validation) or k ≥ 2")


def _calibration_profile(args: argparse.Namespace, name: str) -> DeviceProfile:
    """The points: imported from fio JSON, or measured (with the holdout points)."""
    if args.from_fio:
        if args.holdout:
            raise InputError("--holdout points are measured; fio outputs have none",
                             key="--holdout", expected="--holdout without --from-fio")
        return with_throttle(profile_from_fio(args.from_fio, name=name,
                                              description=args.description), args.throttle)
    if args.throttle is not None:
        raise InputError("a measuring calibration reads the caps of the cgroup its reads "
                         "run in", key="--throttle", expected="--throttle with --from-fio")
    from .calibrate import (
        DEFAULT_CHUNKS,
        DEFAULT_QDS,
        STANDARD_BATCH_QDS,
        calibrate,
        check_holdout,
        parse_holdout,
    )
    if not args.file:
        raise InputError("--file is required unless --from-fio is given", key="--file")
    chunks = parse_size_list(args.chunks, key="--chunks") if args.chunks else DEFAULT_CHUNKS
    qds = parse_int_list(args.qd, key="--qd") if args.qd else DEFAULT_QDS
    if len(set(chunks)) * len(set(qds)) < 4 and not args.no_fit:
        raise InputError("a grid of fewer than 4 points cannot be fitted", key="--chunks",
                         expected="more chunks or queue depths, or --no-fit")
    holdout = (check_holdout(parse_holdout(args.holdout), chunks, qds, key="--holdout")
               if args.holdout else [])
    return calibrate(args.file, size_bytes=parse_size(args.size, key="--size"),
                     chunks=chunks, qds=qds, duration_s=args.duration,
                     warmup_s=args.warmup, repeats=args.repeats,
                     allow_page_cache=args.allow_page_cache, name=name,
                     description=args.description, quiet=args.json, engine=args.engine,
                     batch_reads=_batch_reads(args.batch_reads),
                     clustered_reads=_batch_reads(args.clustered_reads, "--clustered-reads"),
                     batch_qds=args.batch_qds or STANDARD_BATCH_QDS, holdout=holdout,
                     spans=_spans(args.spans))


def _spans(text: str | None) -> tuple[int, ...]:
    """--spans: sizes, or 'none'; the standard spans when not given."""
    if text is None:
        return STANDARD_SPANS
    if str(text).strip().lower() == "none":
        return ()
    from .calibrate import check_spans
    return check_spans(parse_size_list(text, key="--spans"), key="--spans")


def _batch_reads(text: str, key: str = "--batch-reads") -> list[int]:
    """--batch-reads (--clustered-reads): reads a batch, or 'none' for no such batches."""
    if str(text).strip().lower() == "none":
        return []
    values = parse_int_list(text, key=key)
    if max(values) > 1 << 20:
        raise InputError(f"batches of {max(values)} reads", key=key,
                         expected="at most 1048576 reads a batch, or none")
    return values


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .fit import fit_profile

    out = Path(args.out)
    if not out.parent.exists():
        raise InputError("folder does not exist", file=out.parent, key="--out")
    _check_cv_folds(args)
    profile = _calibration_profile(args, args.name or out.stem)
    if not args.no_fit:
        profile = fit_profile(profile, cv_folds=args.cv_folds, quiet=args.json,
                              correction=args.correction)
    profile.save(out)
    payload = {"profile": str(out), "o_direct": profile.measured.o_direct,
               **_fit_summary(profile),
               "points": [p.model_dump(exclude_none=True) for p in profile.points],
               "holdout_points": [p.model_dump(exclude_none=True)
                                  for p in profile.holdout_points],
               "span_points": [p.model_dump(exclude_none=True) for p in profile.span_points]}
    payload["span"] = None if profile.span is None else profile.span.model_dump()
    payload["throttle"] = None if profile.throttle is None else profile.throttle.model_dump()
    rows = [{"chunk": format_size(p.chunk_bytes), "set": s, **p.model_dump()}
            for s, ps in (("fit", profile.points), ("holdout", profile.holdout_points))
            for p in ps]
    rows += [{"chunk": format_size(p.chunk_bytes), "set": f"span {format_size(p.span_bytes)}",
              **p.model_dump()} for p in profile.span_points]
    human = table(rows, [("chunk", "chunk", ""), ("queue_depth", "QD", "d"), ("set", "set", ""),
                         ("batch_reads", "batch", "d"), ("batch_makespan_us", "makespan µs", ".1f"),
                         ("throughput_mb_s", "MB/s", ".1f"), ("latency_mean_us", "mean µs", ".1f"),
                         ("latency_p99_us", "p99 µs", ".1f"),
                         ("throughput_spread_pct", "spread %", ".1f")])
    spans = None if profile.span is None else (
        "over a span, time / over the whole file (bandwidth factor): " + ", ".join(
            f"{format_size(f.span_bytes)} {f.time_ratio:.2f} ({f.bandwidth_factor:.2f})"
            for f in profile.span.spans))
    caps = throttle_line(profile)
    emit(args, payload, "\n".join(t for t in (human, _fit_lines(profile), spans, caps,
                                              f"wrote {out}") if t))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from . import make_device
    from .fit import predict_detail

    profile = DeviceProfile.load(args.profile)
    profile.require_params(args.profile)
    chunk = parse_size(args.chunk, key="--chunk")
    qd = parse_int_list(args.qd, key="--qd")
    if len(qd) != 1:
        raise InputError(f"{args.qd!r} is not one queue depth", key="--qd")
    d = predict_detail(make_device(profile), chunk, qd[0], args.pattern)
    measured = next((p for p in profile.points if p.chunk_bytes == chunk
                     and p.queue_depth == qd[0] and p.pattern == args.pattern
                     and p.batch_reads is None), None)
    payload = {"profile": args.profile, "chunk_bytes": chunk, "queue_depth": qd[0],
               "pattern": args.pattern, "throughput_mb_s": d["throughput_mb_s"],
               "latency_us": d["latency_mean_us"], "latency_p50_us": d["latency_p50_us"],
               "latency_p99_us": d["latency_p99_us"],
               "iops": d["throughput_mb_s"] * 1e6 / chunk,
               "measured_throughput_mb_s": measured.throughput_mb_s if measured else None,
               "measured_latency_us": measured.latency_mean_us if measured else None}
    human = (f"{profile.name}: {format_size(chunk)} {args.pattern} reads at QD {qd[0]}: "
             f"{d['throughput_mb_s']:.1f} MB/s, mean latency {d['latency_mean_us']:.1f} µs "
             f"(p99 {d['latency_p99_us']:.1f} µs)")
    if measured:
        human += f"; measured {measured.throughput_mb_s:.1f} MB/s"
        if measured.latency_mean_us:
            human += f", {measured.latency_mean_us:.1f} µs"
    emit(args, payload, human)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .fit import fit_profile

    _check_cv_folds(args)
    profile = fit_profile(with_throttle(DeviceProfile.load(args.profile), args.throttle),
                          cv_folds=args.cv_folds, correction=args.correction,
                          quiet=args.json)
    out = args.out or args.profile
    profile.save(out)
    emit(args, {"profile": str(out), **_fit_summary(profile)},
         f"{profile.name}: {_fit_lines(profile)}\nwrote {out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .crossval import layered_device
    from .fit import predict_batch_makespan_us, predict_detail

    profile = DeviceProfile.load(args.profile)
    # the layered model, behind the profile's throttle if it was measured behind one
    model = (None if profile.params is None
             else layered_device(profile.params, profile.throttle))
    rows = []
    for p in profile.points:
        row = {"chunk": format_size(p.chunk_bytes), "chunk_bytes": p.chunk_bytes,
               "queue_depth": p.queue_depth, "pattern": p.pattern, "source": p.source,
               "batch_reads": p.batch_reads, "batch_makespan_us": p.batch_makespan_us,
               "throughput_mb_s": p.throughput_mb_s, "latency_mean_us": p.latency_mean_us}
        if model is not None and p.batch_reads is not None:
            m = predict_batch_makespan_us(model, p.chunk_bytes, p.queue_depth,
                                          p.batch_reads, p.pattern)
            row["model_batch_makespan_us"] = m
            row["model_throughput_mb_s"] = p.batch_reads * p.chunk_bytes / m
        elif model is not None:
            d = predict_detail(model, p.chunk_bytes, p.queue_depth, p.pattern)
            row["model_throughput_mb_s"] = d["throughput_mb_s"]
            row["model_latency_us"] = d["latency_mean_us"]
        rows.append(row)
    human = table(rows, [("chunk", "chunk", ""), ("queue_depth", "QD", "d"),
                         ("batch_reads", "batch", "d"), ("source", "source", ""),
                         ("throughput_mb_s", "MB/s", ".1f"),
                         ("model_throughput_mb_s", "model MB/s", ".1f"),
                         ("latency_mean_us", "µs", ".1f"),
                         ("model_latency_us", "model µs", ".1f")])
    caps = throttle_line(profile)
    emit(args, {**_fit_summary(profile), "points": rows,
                "throttle": None if profile.throttle is None else profile.throttle.model_dump()},
         "\n".join(t for t in (human, caps) if t))
    return 0


def throttle_line(profile: DeviceProfile) -> str | None:
    """One line naming the blk-throttle a profile was measured behind (None: none)."""
    t = profile.throttle
    if t is None:
        return None
    return (f"read behind a blk-throttle ({t.source}): {t.read_iops or 'no'} IOPS, "
            f"{t.read_mb_s or 'no'} MB/s cap; the model runs behind it")


def cmd_migrate(args: argparse.Namespace) -> int:
    result = migrate_profile(args.profile, args.out)
    if result["written"]:
        human = (f"{result['profile']}: schema_version {result['from_version']} → "
                 f"{result['schema_version']}, wrote {result['out']}")
    else:
        human = (f"{result['profile']}: already schema_version {result['schema_version']}, "
                 "unchanged")
    emit(args, result, human)
    return 0
