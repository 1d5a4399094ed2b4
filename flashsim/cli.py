"""`flashsim` command line: a thin shell that parses, calls the API and prints.

Each feature package registers its own sub-commands from its `commands.py`
(`register(subparsers)`); a command's handler returns an exit code. Building the parser
imports every `commands.py`, so they import their package's heavy modules inside the
handlers: pandas, scipy and numba alone take ~2 s to import, which `flashsim --help` and a
bad-argument error should not pay.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys

from . import __version__
from .cliutil import OneLineParser
from .errors import InputError
from .progress import progress_shown

COMMAND_MODULES = (
    "flashsim.device.commands",
    "flashsim.trace.commands",
    "flashsim.model.commands",
    "flashsim.cost.commands",
    "flashsim.loader.commands",
    "flashsim.validation.commands",
    "flashsim.sweep.commands",
    "flashsim.advise.commands",
    "flashsim.notebooks",
)


def build_parser() -> OneLineParser:
    """The full parser with every feature's sub-commands."""
    parser = OneLineParser(
        prog="flashsim",
        description="Flash-storage cost model for LLM inference with FFN weights on flash.")
    parser.add_argument("--version", action="version", version=f"flashsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 2 with one line on bad input (also from a value's parser), 1 with a
    short message on a bug, quietly on a closed pipe, else the handler's code."""
    try:
        args = build_parser().parse_args(argv)
        with progress_shown(not getattr(args, "json", False)):  # bars: never under --json
            return int(args.func(args) or 0)
    except InputError as exc:
        sys.stderr.write(f"flashsim: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("flashsim: interrupted\n")
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, not a traceback
        if os.environ.get("FLASHSIM_TRACEBACK"):
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        sys.stderr.write(f"flashsim: internal error: {text} (a bug: please report it with the "
                         "command line; FLASHSIM_TRACEBACK=1 shows the traceback)\n")
        return 1


def run_json(argv: list[str]) -> str:
    """Run `flashsim ARGV --json` in this process (for study scripts): its JSON output, or
    SystemExit with its exit code when it fails."""
    print("flashsim " + " ".join(argv), file=sys.stderr)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*argv, "--json"])
    if code:
        raise SystemExit(code)
    return buf.getvalue()


def _closed_pipe() -> int:
    """The reader of our output went away (`flashsim ... | head`): exit quietly, and keep
    Python from complaining again when it flushes stdout at exit."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
