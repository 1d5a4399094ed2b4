"""`flashsim device testbed up | down | run | status`: real block devices to test the model on.

The handlers import `testbed` themselves: it imports calibrate (scipy, numba through fit),
which `flashsim --help` should not pay for (see commands.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .. import cliargs
from ..cliutil import OneLineParser, add_json_flag, emit
from ..errors import InputError
from ..units import format_size, parse_size

KINDS = ("virtio", "throttled", "zram", "zram-ext4")  # testbed.KINDS, repeated to keep the parser light


def register_testbed(sub: Any) -> None:
    """Add `testbed` and its sub-commands under `flashsim device`."""
    tb = sub.add_parser("testbed", help="set up, use and remove a real test device: the VM "
                                        "disk, the disk behind a blkio throttle, or zram")
    tsub = tb.add_subparsers(dest="testbed_command", required=True, metavar="SUBCOMMAND",
                             parser_class=type(tb))
    up = tsub.add_parser("up", help="make a testbed and leave it up (state under /run)")
    _setup_options(up)
    up.set_defaults(func=cmd_up)
    down = tsub.add_parser("down", help="remove everything a testbed made")
    down.add_argument("name", metavar="NAME", choices=KINDS, help=", ".join(KINDS))
    down.add_argument("--state", default=None, help="state file (default /run/flashsim/...)")
    add_json_flag(down)
    down.set_defaults(func=cmd_down)
    run = tsub.add_parser(
        "run", help="run a command on a testbed ({path} in it is replaced by the device's "
                    "path; throttled: inside the cgroup); sets it up and down around the "
                    "command unless it is already up. With --json the summary follows the "
                    "command's own output")
    _setup_options(run, with_name=False)
    run.add_argument("rest", nargs=argparse.REMAINDER, metavar="NAME [OPTIONS] -- CMD ...",
                     help=f"NAME ({', '.join(KINDS)}), options as above, then the command")
    run.set_defaults(func=cmd_run)
    st = tsub.add_parser("status", help="testbeds that are up, and live cgroups / zram")
    add_json_flag(st)
    st.set_defaults(func=cmd_status)


def _setup_options(p: argparse.ArgumentParser, with_name: bool = True) -> None:
    if with_name:
        p.add_argument("name", metavar="NAME", choices=KINDS, help=", ".join(KINDS))
    p.add_argument("--dir", default=".", help="folder for the data file (virtio, throttled; "
                                              "default: the current folder)")
    p.add_argument("--size", type=cliargs.size("--size", maximum=1 << 44), default="1GiB",
                   help="data file / zram size (default 1GiB)")
    p.add_argument("--iops", type=cliargs.count("--iops", maximum=100_000_000), default=15_000,
                   help="throttled: read IOPS cap (default 15000, eMMC 5.1-like)")
    p.add_argument("--mb-s", type=cliargs.rate("--mb-s"), default=300.0,
                   help="throttled: read bandwidth cap in MB/s (default 300, eMMC 5.1-like)")
    p.add_argument("--comp-algorithm", default=None,
                   help="zram: compressor (default: the kernel's)")
    p.add_argument("--seed", type=cliargs.seed("--seed"), default=0, help="random data seed (default 0)")
    p.add_argument("--state", default=None, help="state file (default /run/flashsim/...)")
    add_json_flag(p)


def _new(args: argparse.Namespace, persistent: bool):
    from .testbed import Testbed
    return Testbed(args.name, dir=args.dir, size_bytes=parse_size(args.size, key="--size"),
                   iops=args.iops, mb_s=args.mb_s, comp_algorithm=args.comp_algorithm,
                   state_file=args.state, persistent=persistent, seed=args.seed)


def _human(d: dict[str, Any]) -> str:
    text = f"testbed {d['name']}: {d['path']} ({format_size(d['size_bytes'])})"
    if d.get("iops"):
        text += f", {d['disk']} {d['device']} capped at {d['iops']} IOPS, {d['bps'] / 1e6:g} MB/s"
    if d.get("cgroup"):
        text += f"; cgroup {d['cgroup']}"
    return text


def _exit_code_on_signal(handler):
    """128 + the signal's number when SIGTERM/SIGHUP stopped the command (the testbed is
    already removed then), as a shell reports a process killed by it."""
    def wrapped(args: argparse.Namespace) -> int:
        from .testbed import TestbedInterrupted
        try:
            return handler(args)
        except TestbedInterrupted as exc:
            sys.stderr.write(f"flashsim: interrupted by {exc}; testbed removed\n")
            return 128 + exc.signum
    return wrapped


@_exit_code_on_signal
def cmd_up(args: argparse.Namespace) -> int:
    bed = _new(args, persistent=True).up()
    d = bed.describe()
    emit(args, d, _human(d) + f"\nstate in {d['state_file']}; remove with: flashsim device "
                              f"testbed down {args.name}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from .testbed import Testbed
    bed = Testbed.attach(args.name, args.state)
    d = bed.describe()
    bed.down()
    emit(args, {"removed": d}, f"testbed {args.name} removed")
    return 0


def split_run_args(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    """`NAME [OPTIONS] -- CMD ...` (argparse cannot put options between two positionals, the
    second of them open-ended): the part before `--` parsed into `args`, the command after."""
    if "--" not in args.rest:
        raise InputError("no command", key="run", expected="NAME [OPTIONS] -- CMD ...")
    i = args.rest.index("--")
    head = OneLineParser(prog="flashsim device testbed run")
    _setup_options(head)
    # options given before NAME are already in `args`; parse_args keeps them unless repeated
    head.parse_args(args.rest[:i], namespace=args)
    return args, args.rest[i + 1:]


@_exit_code_on_signal
def cmd_run(args: argparse.Namespace) -> int:
    from .testbed import Testbed, TestbedState, default_state_file
    args, cmd = split_run_args(args)
    state_file = args.state or default_state_file(args.name)
    t0 = time.perf_counter()
    try:
        already_up = TestbedState.load(state_file).persistent
    except InputError:
        already_up = False
    if already_up:  # brought up by `up`: use it, leave it up
        bed = Testbed.attach(args.name, state_file)
        d = bed.describe()
        code = bed.run(cmd)
    else:
        with _new(args, persistent=False) as bed:
            d = bed.describe()
            code = bed.run(cmd)
    payload = {"testbed": d, "command": bed.command(cmd), "returncode": code,
               "left_up": already_up, "wall_s": time.perf_counter() - t0}
    if args.json:
        emit(args, payload, "")
    else:
        sys.stderr.write(_human(d) + f"; command exited {code}"
                         + ("" if already_up else "; testbed removed") + "\n")
    return code


def cmd_status(args: argparse.Namespace) -> int:
    from .testbed import status
    s = status()
    lines = [_human(d) for d in s["testbeds"]] or ["no testbed is up"]
    live = s["live"]
    lines.append(f"live: cgroups {live['cgroups'] or 'none'}, zram0 disksize "
                 f"{live['zram0_disksize_bytes']} bytes")
    emit(args, s, "\n".join(lines))
    return 0
