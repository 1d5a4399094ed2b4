"""`flashsim` command line: a thin shell that parses, calls the API and prints.

Each feature package registers its own sub-commands from its `commands.py`
(`register(subparsers)`); a command's handler returns an exit code. Building the parser
imports every `commands.py`, so they import their package's heavy modules inside the
handlers: pandas, scipy and numba alone take ~2 s to import, which `flashsim --help` and a
bad-argument error should not pay.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from .cliutil import OneLineParser
from .errors import InputError

COMMAND_MODULES = (
    "flashsim.device.commands",
    "flashsim.trace.commands",
    "flashsim.model.commands",
    "flashsim.cost.commands",
    "flashsim.loader.commands",
    "flashsim.validation.commands",
    "flashsim.sweep.commands",
)


def build_parser() -> OneLineParser:
    """The full parser with every feature's sub-commands."""
    parser = OneLineParser(
        prog="flashsim",
        description="Flash-storage cost model for LLM inference with FFN weights on flash.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 2 with one line on bad input, the handler's code otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except InputError as exc:
        sys.stderr.write(f"flashsim: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("flashsim: interrupted\n")
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
