"""`flashsim trace capture | stats | info | synth`: thin handlers over the trace library."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .. import cliargs
from ..cliutil import add_json_flag, emit, table
from ..errors import InputError


def register(subparsers: Any) -> None:
    """Add the `trace` command group to the flashsim CLI."""
    trace = subparsers.add_parser("trace", help="capture, inspect and synthesize activation traces")
    sub = trace.add_subparsers(dest="trace_command", required=True, metavar="SUBCOMMAND",
                               parser_class=type(trace))

    cap = sub.add_parser("capture", help="run the sparse OPT on a prompt and record a trace")
    cap.add_argument("--model", default=None, help="HF OPT folder (default: bundled opt-mini)")
    cap.add_argument("--prompt-file", required=True, help="text file whose start is the prompt")
    cap.add_argument("--prompt-tokens", type=cliargs.count("--prompt-tokens", maximum=1 << 20),
                     default=128,
                     help="prompt length in tokens taken from the file (default 128)")
    cap.add_argument("--tokens", type=cliargs.count("--tokens", maximum=1 << 20), required=True,
                     help="tokens to generate")
    cap.add_argument("--out", type=cliargs.out_file("--out"), required=True,
                     help="trace file to write")
    cap.add_argument("--top-p", type=cliargs.probability("--top-p"), default=0.9,
                     help="nucleus sampling p (default 0.9)")
    cap.add_argument("--seed", type=cliargs.seed("--seed"), default=0,
                     help="sampling seed (default 0)")
    cap.add_argument("--threshold", type=cliargs.probability("--threshold"), default=None,
                     help="predictor threshold (default: the model's, 0.5)")
    add_json_flag(cap)
    cap.set_defaults(func=cmd_capture)

    st = sub.add_parser("stats", help="sparsity, predictor, windowing and co-activation statistics")
    st.add_argument("trace", help="trace file")
    st.add_argument("--which", choices=("predicted", "active"), default=None,
                    help="set for the window/co-activation headline (default: predicted if present)")
    st.add_argument("--include-prompt", action="store_true",
                    help="count prompt tokens too (default: generated tokens only)")
    st.add_argument("--no-coactivation", action="store_true", help="skip the closest-friend analysis")
    st.add_argument("--hot-fraction", type=cliargs.number("--hot-fraction", above=0.0,
                                                          maximum=1.0), default=0.01,
                    help="share of neurons counted as hottest (default 0.01)")
    add_json_flag(st)
    st.set_defaults(func=cmd_stats)

    info = sub.add_parser("info", help="geometry, token counts and provenance of a trace")
    info.add_argument("trace", help="trace file")
    add_json_flag(info)
    info.set_defaults(func=cmd_info)

    syn = sub.add_parser("synth", help="generate a SYNTHETIC trace at another geometry, fitted "
                                       "to a real trace and target rates (for scale studies)")
    syn.add_argument("--fit", default=None,
                     help="real trace to fit the structure to (default: bundled opt-mini-train)")
    syn.add_argument("--geometry", default="opt-6.7b", help="'opt-6.7b' or "
                     "N_LAYERS,D_MODEL,D_FFN,DTYPE_BYTES (default opt-6.7b)")
    syn.add_argument("--tokens", type=cliargs.count("--tokens", maximum=1 << 20), default=384,
                     help="tokens to generate (default 384)")
    syn.add_argument("--prompt-tokens",
                     type=cliargs.count("--prompt-tokens", minimum=0, maximum=1 << 20),
                     default=128,
                     help="leading tokens marked as prompt (default 128)")
    syn.add_argument("--seed", type=cliargs.seed("--seed"), default=0)
    syn.add_argument("--out", type=cliargs.out_file("--out"), required=True,
                     help="trace file to write (name it *synthetic*)")
    add_json_flag(syn)
    syn.set_defaults(func=cmd_synth)


def _check_out(path: str, flag: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise InputError("output path is a directory", file=out, key=flag, expected="a file path")
    if not out.parent.exists() and str(out.parent) != "":
        raise InputError("output folder does not exist", file=out.parent, key=flag)
    return out


def cmd_capture(args: argparse.Namespace) -> int:
    """Capture a trace from the sparse OPT and save it atomically."""
    prompt = Path(args.prompt_file)
    if not prompt.is_file():
        raise InputError("prompt file does not exist", file=prompt, key="--prompt-file")
    if args.tokens < 1:
        raise InputError(f"--tokens {args.tokens}", key="--tokens", expected="at least 1 token")
    if args.prompt_tokens < 1:
        raise InputError(f"--prompt-tokens {args.prompt_tokens}", key="--prompt-tokens",
                         expected="at least 1 token")
    if not 0 < args.top_p <= 1:
        raise InputError(f"--top-p {args.top_p}", key="--top-p", expected="a value in (0, 1]")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise InputError(f"--threshold {args.threshold}", key="--threshold",
                         expected="a probability in (0, 1)")
    out = _check_out(args.out, "--out")
    try:
        text = prompt.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read prompt ({exc.__class__.__name__})", file=prompt,
                         key="--prompt-file", expected="a UTF-8 text file") from None
    if not text.strip():
        raise InputError("prompt file is empty", file=prompt, key="--prompt-file")
    from .capture import capture_trace  # lazy: pulls in the model

    trace = capture_trace(args.model, prompt_text=text, n_tokens=args.tokens, top_p=args.top_p,
                          seed=args.seed, threshold=args.threshold,
                          prompt_tokens=args.prompt_tokens, quiet=args.json,
                          prompt_source=prompt.name)
    trace.save(out)
    from .stats import trace_stats

    st = trace_stats(trace, coactivation=False, ks=[5])
    payload = {"out": str(out), "bytes": os.path.getsize(out), "model": trace.geometry.name,
               "n_tokens": trace.n_tokens, "n_prompt_tokens": trace.n_prompt_tokens,
               "n_generated": trace.n_tokens - trace.n_prompt_tokens,
               "mean_sparsity": st["mean_sparsity"],
               "mean_predicted_sparsity": st["mean_predicted_sparsity"]}
    human = (f"wrote {out} ({payload['bytes']} bytes): {trace.geometry.name}, "
             f"{payload['n_prompt_tokens']} prompt + {payload['n_generated']} generated tokens, "
             f"mean sparsity {payload['mean_sparsity']:.3f}")
    emit(args, payload, human)
    return 0


def _pct(x: Any) -> Any:
    return None if x is None else 100 * x


def stats_table(st: dict[str, Any]) -> str:
    """The short human summary of `trace_stats` output: one row per layer, then per window."""
    ks = st["window_k"]
    k5 = ks.index(5) if 5 in ks else len(ks) - 1
    pred = st["predictor"]
    co = st["coactivation"]
    rows = []
    for l, sp in enumerate(st["sparsity"]):
        rows.append({
            "layer": l, "sparsity": _pct(sp),
            "pred_sparsity": _pct(st["predicted_sparsity"][l]) if pred else None,
            "active": st["active_per_token"][l],
            "recall": _pct(pred["recall"][l]) if pred else None,
            "extra": pred["extra_load_ratio"][l] if pred else None,
            "share_k": _pct(st["window_hit_share_per_layer"][l][k5]),
            "inc_k": _pct(st["window_incremental_fraction_per_layer"][l][k5]),
            "res_k": _pct(st["window_resident_fraction_per_layer"][l][k5]),
            "hot_friend": _pct(co["hot_friend_share"][l]) if co else None,
        })
    k = ks[k5]
    cols = [("layer", "layer", "d"), ("sparsity", "sparsity%", ".2f"),
            ("pred_sparsity", "pred sparsity%", ".2f"), ("active", "active/tok", ".1f"),
            ("recall", "recall%", ".1f"), ("extra", "extra/active", ".2f"),
            ("share_k", f"reuse k={k} %", ".1f"), ("inc_k", f"load k={k} %", ".2f"),
            ("res_k", f"resident k={k} %", ".1f"), ("hot_friend", "hot-friend%", ".1f")]
    t = st["trace"]
    head = (f"{t['name']}: {t['n_layers']} layers x {t['d_ffn']} neurons, "
            f"{st['tokens']['n_measured']} tokens measured"
            f"{' (SYNTHETIC)' if t['synthetic'] else ''}; windowing over the {st['which']} set")
    per_k = [{"k": kk, "share": _pct(st["window_hit_share"][i]),
              "inc": _pct(st["window_incremental_fraction"][i]),
              "res": _pct(st["window_resident_fraction"][i])} for i, kk in enumerate(ks)]
    kcols = [("k", "window k", "d"), ("share", "reused %", ".1f"), ("inc", "loaded/token %", ".2f"),
             ("res", "resident %", ".1f")]
    return "\n".join([head, table(rows, cols), "", table(per_k, kcols)])


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a trace's statistics."""
    from .format import ActivationTrace
    from .stats import trace_stats

    trace = ActivationTrace.load(args.trace)
    st = trace_stats(trace, args.which, include_prompt=args.include_prompt,
                     coactivation=not args.no_coactivation, hot_fraction=args.hot_fraction)
    emit(args, st, stats_table(st))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print a trace's geometry, size and provenance."""
    from .format import ActivationTrace

    trace = ActivationTrace.load(args.trace)
    payload = {"file": args.trace, "geometry": trace.geometry.to_dict(),
               "n_tokens": trace.n_tokens, "n_prompt_tokens": trace.n_prompt_tokens,
               "has_predicted": trace.predicted is not None, "synthetic": trace.is_synthetic,
               "meta": trace.meta}
    g = trace.geometry
    human = (f"{args.trace}: {g.name} ({g.n_layers} layers, d_model {g.d_model}, d_ffn {g.d_ffn}, "
             f"{g.dtype_bytes}-byte weights); {trace.n_tokens} tokens ({trace.n_prompt_tokens} "
             f"prompt); predicted sets: {'yes' if trace.predicted is not None else 'no'}"
             f"{'; SYNTHETIC' if trace.is_synthetic else ''}")
    emit(args, payload, human)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic trace fitted to a real one and the paper's rates."""
    from .format import ActivationTrace
    from .synthetic import (
        default_fit_trace_path,
        paper_opt_6_7b_rates,
        parse_geometry,
        synthetic_trace,
    )

    geometry = parse_geometry(args.geometry)
    if args.tokens < 2:
        raise InputError(f"--tokens {args.tokens}", key="--tokens", expected="at least 2 tokens")
    if not 0 <= args.prompt_tokens < args.tokens:
        raise InputError(f"--prompt-tokens {args.prompt_tokens}", key="--prompt-tokens",
                         expected=f"0 .. {args.tokens - 1}")
    out = _check_out(args.out, "--out")
    fit = ActivationTrace.load(args.fit or default_fit_trace_path())
    trace = synthetic_trace(geometry, args.tokens, fitted_to=fit,
                            rates=paper_opt_6_7b_rates(geometry.n_layers), seed=args.seed,
                            n_prompt_tokens=args.prompt_tokens, quiet=args.json)
    trace.save(out)
    achieved = trace.meta["achieved"]
    targets = trace.meta["targets"]
    payload = {"out": str(out), "bytes": os.path.getsize(out), "synthetic": True,
               "geometry": geometry.to_dict(), "n_tokens": trace.n_tokens,
               "n_prompt_tokens": trace.n_prompt_tokens, "targets": targets,
               "achieved": achieved, "fit": trace.meta["fit"]}
    rows = [{"stat": k, "target": targets.get(k), "achieved": achieved.get(k)}
            for k in achieved if isinstance(achieved.get(k), float)]
    human = (f"wrote SYNTHETIC trace {out} ({geometry.name}, {trace.n_tokens} tokens)\n"
             + table(rows, [("stat", "statistic", "s"), ("target", "target", ".4f"),
                            ("achieved", "achieved", ".4f")]))
    emit(args, payload, human)
    return 0
