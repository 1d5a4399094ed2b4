"""CLI: `store build` / `store verify` (weight stores) and `generate` (inference from flash)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table
from ..data import REFERENCE_TRACE
from ..errors import InputError
from ..units import format_size


def add_layout_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--layout", default=default, help=f"layout name (default {default})")
    p.add_argument("--window", type=cliargs.count("--window", maximum=1 << 20), default=None,
                   help="window k (windowed+ layouts)")
    p.add_argument("--train-trace", help="trace the co-activation layouts learn from "
                                         "(default: the bundled training trace)")
    p.add_argument("--block", type=cliargs.size("--block", maximum=64 << 20, power_of_two=True),
                   default=None,
                   help="read alignment (default 4k)")


def register(subparsers: Any) -> None:
    """Add `store build`, `store verify` and `generate`."""
    s = subparsers.add_parser("store", help="weight stores: a model's FFN in a layout's file")
    ssub = s.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    b = ssub.add_parser("build", help="write a model's FFN weights as a layout places them")
    b.add_argument("--model", help="model folder (default: the bundled opt-mini)")
    add_layout_args(b, "bundled")
    b.add_argument("--out", type=cliargs.out_file("--out"), required=True,
                   help="store file to write (+ FILE.json index)")
    add_json_flag(b)
    b.set_defaults(func=cmd_store_build)
    v = ssub.add_parser("verify", help="check a store's size and per-layer checksums")
    v.add_argument("store", help="store file")
    add_json_flag(v)
    v.set_defaults(func=cmd_store_verify)

    g = subparsers.add_parser("generate", help="sparse decode with FFN weights read from flash")
    g.add_argument("--model", help="model folder (default: the bundled opt-mini)")
    add_layout_args(g, "windowed+bundled")
    g.add_argument("--store", required=True, help="store file built for the layout")
    g.add_argument("--qd", type=cliargs.queue_depth("--qd"), default=32,
                   help="reads in flight (default 32)")
    g.add_argument("--prompt-file", required=True, help="text file with the prompt")
    g.add_argument("--tokens", type=cliargs.count("--tokens", maximum=1 << 20), default=32,
                   help="tokens to generate (default 32)")
    g.add_argument("--seed", type=cliargs.seed("--seed"), default=0,
                   help="sampling seed (default 0)")
    g.add_argument("--top-p", type=cliargs.probability("--top-p"), default=0.9,
                   help="nucleus p (default 0.9; 0: greedy)")
    g.add_argument("--allow-page-cache", action="store_true",
                   help="read through the page cache where O_DIRECT is impossible")
    g.add_argument("--per-token", action="store_true", help="print the per-token table")
    add_json_flag(g)
    g.set_defaults(func=cmd_generate)



def make_layout_from_args(args: argparse.Namespace):
    """The layout named by --layout/--window/--block (and --train-trace for co-activation)."""
    from ..layout.registry import make_layout
    from ..trace.format import ActivationTrace

    train = None
    if "coactivation" in args.layout and args.train_trace:
        train = ActivationTrace.load(args.train_trace)
    return make_layout(args.layout, train_trace=train, window=args.window,
                       block_bytes=args.block)


def load_trace(path: str | None):
    """The trace at `path`, or the bundled reference trace."""
    from ..trace.format import ActivationTrace

    return ActivationTrace.load(path or REFERENCE_TRACE)


def cmd_store_build(args: argparse.Namespace) -> int:
    """Write the store and its index; print where and what."""
    from ..model.checkpoint import load_checkpoint
    from .store import build_store, index_path

    layout = make_layout_from_args(args)
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
    layout = make_layout_from_args(args)
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
