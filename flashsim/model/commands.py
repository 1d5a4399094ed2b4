"""`flashsim model info`: what a checkpoint folder holds (geometry, weights sha, predictors)."""

from __future__ import annotations

import argparse
from typing import Any

from ..cliutil import add_json_flag, emit


def register(subparsers: Any) -> None:
    """Add `flashsim model info [--model DIR] [--json]`."""
    model = subparsers.add_parser("model", help="inspect OPT checkpoints")
    sub = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    info = sub.add_parser("info", help="geometry, weights checksum and predictors of a model")
    info.add_argument("--model", default=None, help="HF OPT folder (default: bundled opt-mini)")
    add_json_flag(info)
    info.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    """Load the checkpoint (validating every tensor) and describe it."""
    from ..data import default_predictors_path
    from .checkpoint import load_checkpoint
    from .predictor import PredictorSet

    ckpt = load_checkpoint(args.model)
    spec = ckpt.spec
    payload: dict[str, Any] = {
        "model": spec.name, "path": str(ckpt.path), "n_layers": spec.n_layers,
        "d_model": spec.d_model, "d_ffn": spec.d_ffn, "n_heads": spec.n_heads,
        "vocab_size": spec.vocab_size, "max_position_embeddings": spec.max_positions,
        "do_layer_norm_before": spec.layer_norm_before, "dtype_bytes": ckpt.stored_dtype_bytes,
        "ffn_bytes": ckpt.geometry.ffn_bytes, "weights_sha256": ckpt.weights_sha256,
        "predictors": None}
    pred_path = default_predictors_path(ckpt.path)
    if pred_path.is_file():
        preds = PredictorSet.load(pred_path)
        preds.check_geometry(ckpt.geometry, file=pred_path)
        payload["predictors"] = {"path": str(pred_path), "ranks": preds.ranks,
                                 "threshold": preds.threshold,
                                 "trained_for_these_weights":
                                     preds.meta.get("model_sha256") == ckpt.weights_sha256}
    human = (f"{spec.name}: {spec.n_layers} layers, d_model {spec.d_model}, d_ffn {spec.d_ffn}, "
             f"{spec.n_heads} heads, context {spec.max_positions}, "
             f"{'pre' if spec.layer_norm_before else 'post'}-LN, {ckpt.stored_dtype_bytes}-byte "
             f"weights, FFN {ckpt.geometry.ffn_bytes} bytes; predictors: "
             + (f"ranks {payload['predictors']['ranks']}" if payload["predictors"] else "none"))
    emit(args, payload, human)
    return 0
