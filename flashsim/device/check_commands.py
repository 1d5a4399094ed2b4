"""`flashsim device check`: a profile's model and interpolation baseline against measured
points (fio JSON, a profile's points, the profile's holdout points, or points held out of
its points here).

The CLI imports this module to build its parser; the handler imports `check` (scipy and
numba, 0.6-0.9 s) itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table
from ..errors import InputError
from ..units import parse_int_list, parse_size_list
from .profile import DeviceProfile


def register_check(sub: Any) -> None:
    """Add `device check` to the `device` sub-command group."""
    ck = sub.add_parser("check", help="a profile's model and interpolation baseline against "
                                      "measured points: per point and median/worst error")
    ck.add_argument("--profile", required=True, help="device profile YAML")
    ck.add_argument("--against", default=None,
                    help="fio --output-format=json output (.json) or a profile's points (.yaml)")
    ck.add_argument("--against-holdout", action="store_true",
                    help="instead of --against: the profile's own holdout points (measured "
                         "with its points, seen by no fit)")
    ck.add_argument("--hold-out-chunks", type=cliargs.sizes("--hold-out-chunks"), default=None,
                    help="instead of --against: hold the profile's points at these chunk "
                         "sizes out (e.g. 8k,32k,128k), refit the model and rebuild the "
                         "baseline without them, then predict them")
    ck.add_argument("--hold-out-qd", type=cliargs.queue_depths("--hold-out-qd"), default=None,
                    help="with or instead of --hold-out-chunks: queue depths to hold out")
    ck.add_argument("--quick-fit", action="store_true",
                    help="hold-out refit: the quick fit (about a minute, else several)")
    ck.add_argument("--allow-buffer-mismatch", action="store_true",
                    help="compare points read into other buffers than the profile's "
                         "(huge pages against 4 KiB pages)")
    add_json_flag(ck)
    ck.set_defaults(func=cmd_check)


_COLUMNS = [("chunk", "chunk", ""), ("queue_depth", "QD", "d"), ("batch_reads", "batch", "d"),
            ("measured_throughput_mb_s", "MB/s", ".1f"),
            ("model_throughput_mb_s", "model", ".1f"),
            ("model_throughput_error_pct", "err %", "+.1f"),
            ("baseline_throughput_mb_s", "baseline", ".1f"),
            ("baseline_throughput_error_pct", "err %", "+.1f"),
            ("measured_latency_us", "µs", ".1f"), ("model_latency_error_pct", "model err %", "+.1f"),
            ("baseline_latency_error_pct", "base err %", "+.1f")]


def cmd_check(args: argparse.Namespace) -> int:
    from . import check

    hold = args.hold_out_chunks is not None or args.hold_out_qd is not None
    if hold + (args.against is not None) + args.against_holdout != 1:
        raise InputError("give one of --against, --against-holdout or "
                         "--hold-out-chunks/--hold-out-qd", key="--against")
    profile = DeviceProfile.load(args.profile)
    if hold:
        payload = check.check_held_out(
            profile, quick_fit=args.quick_fit,
            chunks=parse_size_list(args.hold_out_chunks, key="--hold-out-chunks")
            if args.hold_out_chunks else (),
            qds=parse_int_list(args.hold_out_qd, key="--hold-out-qd") if args.hold_out_qd
            else ())
    else:
        points = (check.holdout_point_set(profile, args.profile) if args.against_holdout
                  else check.load_points(args.against))
        payload = check.check_against(profile, points,
                                      allow_buffer_mismatch=args.allow_buffer_mismatch,
                                      profile_file=args.profile)
    human = (f"{payload['profile']} against {payload['against']}\n"
             + table(payload["points"], _COLUMNS) + "\n" + check.summary_lines(payload))
    emit(args, {"profile_file": args.profile, **payload}, human)
    return 0
