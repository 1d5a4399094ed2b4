"""Capture an ActivationTrace by really running the sparse OPT decode.

Every prompt token is fed one at a time (as a decoding runtime would), then `n_tokens`
sampled tokens. For each (token, layer) the trace records the neurons the predictor chose
(the ones the sparse path computed) and the truly active ones, ReLU(fc1 x + b) > 0, which
are computed densely on the same input purely for measurement.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..data import bundled_model_dir, default_predictors_path
from ..errors import InputError
from ..geometry import NeuronSets
from ..model.checkpoint import file_sha256, load_checkpoint
from ..model.opt import OPTModel
from ..model.predictor import PredictorSet, logit
from ..model.sampling import check_top_p, next_token
from ..model.sparse import SparseFFN
from ..model.tokenizer import check_request, load_tokenizer, prompt_ids
from ..model.weights import DRAMWeightSource
from ..progress import progress
from .format import ActivationTrace


def capture_trace(model_dir: str | os.PathLike | None = None, prompt_text: str = "",
                  n_tokens: int = 256, *, top_p: float | None = 0.9, seed: int = 0,
                  threshold: float | None = None, prompt_tokens: int | None = None,
                  quiet: bool | None = None, predictors: str | os.PathLike | None = None,
                  prompt_source: str | None = None) -> ActivationTrace:
    """Run the sparse decode on `prompt_text` (BOS + its first tokens, `prompt_tokens` in all
    counting the BOS, or the whole text) and
    `n_tokens` generated tokens (nucleus top_p, or greedy when None), recording neuron sets.

    `predictors` defaults to `<model_dir>/predictors.safetensors`; `threshold` to theirs.
    `quiet`: False shows a bar on a terminal; None (default) only inside the CLI.
    """
    check_request(prompt_text, n_tokens)
    if prompt_tokens is not None and (isinstance(prompt_tokens, bool) or prompt_tokens <= 0):
        raise InputError(f"prompt_tokens {prompt_tokens!r}", key="prompt_tokens",
                         expected="a positive number of prompt tokens")
    check_top_p(top_p)
    if threshold is not None:
        logit(threshold)  # validates
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir()
    ckpt = load_checkpoint(folder)
    spec = ckpt.spec
    ids = prompt_ids(load_tokenizer(folder), spec, prompt_text, n_tokens, prompt_tokens)

    pred_path = Path(predictors) if predictors is not None else default_predictors_path(folder)
    preds = PredictorSet.load(pred_path)
    preds.check_geometry(ckpt.geometry, file=pred_path)
    used_threshold = preds.threshold if threshold is None else float(threshold)

    model = OPTModel(ckpt)
    ffn = SparseFFN(preds, DRAMWeightSource.from_checkpoint(ckpt), threshold=used_threshold,
                    record=True)
    cache = model.new_cache(len(ids) + n_tokens)
    rng = np.random.default_rng(seed)
    n_steps = len(ids) + n_tokens
    fed: list[int] = []
    active_ids: list[list[np.ndarray]] = [[] for _ in range(spec.n_layers)]
    predicted_ids: list[list[np.ndarray]] = [[] for _ in range(spec.n_layers)]
    token = ids[0]
    for step in progress(range(n_steps), total=n_steps, desc="capture", quiet=quiet):
        fed.append(token)
        logits = model.forward([token], cache, ffn)[-1]
        for layer, w in enumerate(ckpt.layers):
            rec = ffn.records[layer]
            pre = rec.x[0] @ w.fc1_w.T + w.fc1_b
            active_ids[layer].append(np.flatnonzero(pre > 0).astype(np.int32))
            predicted_ids[layer].append(np.flatnonzero(rec.mask[0]).astype(np.int32))
        token = ids[step + 1] if step + 1 < len(ids) else next_token(logits, top_p, rng)

    meta = {
        "synthetic": False,
        "source": "flashsim.trace.capture (sparse numpy OPT decode)",
        "model": spec.name,
        "model_sha256": ckpt.weights_sha256,
        "predictors_sha256": file_sha256(pred_path),
        "predictor_ranks": preds.ranks,
        "threshold": used_threshold,
        "sampling": "greedy" if top_p is None else "nucleus",
        "top_p": top_p,
        "seed": int(seed),
        "prompt_source": prompt_source,
        "prompt_sha256": hashlib.sha256(prompt_text.encode()).hexdigest(),
        "prompt_tokens": len(ids),
        "generated_tokens": int(n_tokens),
        "prefill": "token by token",
    }
    return ActivationTrace(ckpt.geometry, np.asarray(fed, np.int32), len(ids),
                           [_csr(a) for a in active_ids], [_csr(p) for p in predicted_ids], meta)


def _csr(sets: list[np.ndarray]) -> NeuronSets:
    ptr = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=ptr[1:])
    ids = np.concatenate(sets) if sets else np.zeros(0, np.int32)
    return NeuronSets(ptr, ids.astype(np.int32))
