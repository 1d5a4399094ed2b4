"""The OPT decoder in numpy (fp32): learned positions (offset 2), pre- or post-LN blocks,
multi-head attention with a KV cache, ReLU FFN, final LayerNorm, tied LM head.

The FFN is pluggable (`DenseFFN`, or `flashsim.model.sparse.SparseFFN` which computes only
the neurons a predictor picks), so the same forward pass serves both execution paths.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..geometry import ModelGeometry
from .checkpoint import Checkpoint, OPTSpec, load_checkpoint

POSITION_OFFSET = 2  # OPT's learned positional embedding is indexed by position + 2
LN_EPS = 1e-5


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis (biased variance, eps 1e-5, as torch.nn.LayerNorm)."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    return centered / np.sqrt(var + LN_EPS) * weight + bias


class PartTimer:
    """Seconds per named part of the decode, as gapless laps of `time.perf_counter`.

    `lap(part)` charges the time since the previous lap (or `start`) to `part`, so the parts
    of a step add up to the step. Only a calibration switches one on (`OPTModel.timer`).
    """

    enabled = True

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] += now - self._last
        self._last = now

    def take(self) -> dict[str, float]:
        """The seconds per part since the last `take`, and reset."""
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out


class _NoTimer:
    """The default: laps cost one no-op method call each (about 4 per layer)."""

    enabled = False

    def start(self) -> None:
        pass

    def lap(self, part: str) -> None:
        pass


NO_TIMER = _NoTimer()


class FFN(Protocol):
    """One layer's feed-forward block: `resid` is the residual stream after the attention
    block (what predictors see), `x` the FFN's input (after its LayerNorm in pre-LN models)."""

    def __call__(self, layer: int, resid: np.ndarray, x: np.ndarray) -> np.ndarray: ...


@dataclass
class LayerRecord:
    """What an FFN saw and did for the last call on one layer (rows = tokens of that call)."""

    resid: np.ndarray  # [T, d_model] residual stream after attention
    x: np.ndarray  # [T, d_model] FFN input
    mask: np.ndarray  # [T, d_ffn] bool: neurons active (dense) or computed (sparse)


class DenseFFN:
    """fc2(ReLU(fc1 x)) with all neurons; `record=True` keeps each layer's active mask."""

    def __init__(self, ckpt: Checkpoint, *, record: bool = False) -> None:
        self._layers = ckpt.layers
        self.record = record
        self.records: dict[int, LayerRecord] = {}

    def __call__(self, layer: int, resid: np.ndarray, x: np.ndarray) -> np.ndarray:
        w = self._layers[layer]
        h = x @ w.fc1_w.T
        h += w.fc1_b
        np.maximum(h, 0.0, out=h)
        if self.record:
            self.records[layer] = LayerRecord(resid, x, h > 0)
        return h @ w.fc2_t + w.fc2_b


class KVCache:
    """Keys and values of every layer for the tokens seen so far, [n_heads, capacity, head_dim]."""

    def __init__(self, spec: OPTSpec, capacity: int | None = None) -> None:
        self.capacity = capacity or spec.max_positions
        shape = (spec.n_heads, self.capacity, spec.head_dim)
        self.keys = [np.zeros(shape, np.float32) for _ in range(spec.n_layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(spec.n_layers)]
        self.length = 0


class OPTModel:
    """OPT forward in numpy over a loaded checkpoint."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt
        self.spec = ckpt.spec
        self.dense_ffn = DenseFFN(ckpt)
        self.timer: PartTimer | _NoTimer = NO_TIMER  # per-part laps (compute calibration)

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None) -> OPTModel:
        """Load a checkpoint folder (None: the bundled opt-mini)."""
        return cls(load_checkpoint(model_dir))

    @property
    def geometry(self) -> ModelGeometry:
        return self.ckpt.geometry

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """An empty KV cache for up to `capacity` tokens (default: the model's context)."""
        return KVCache(self.spec, capacity)

    def forward(self, token_ids: np.ndarray | list[int], cache: KVCache | None = None,
                ffn: FFN | None = None) -> np.ndarray:
        """Logits [T, vocab] for `token_ids` following the tokens already in `cache`.

        Without a cache the tokens are a fresh sequence. The cache is extended in place.
        """
        tm = self.timer
        tm.start()
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        spec, ck = self.spec, self.ckpt
        ffn = ffn or self.dense_ffn
        cache = cache or KVCache(spec, len(ids))
        start, n = cache.length, len(ids)
        if start + n > min(spec.max_positions, cache.capacity):
            raise InputError(f"sequence of {start + n} tokens is longer than the model's context",
                             key="max_position_embeddings",
                             expected=f"at most {min(spec.max_positions, cache.capacity)} tokens")
        if n and (ids.min() < 0 or ids.max() >= spec.vocab_size):
            raise InputError("token id outside the vocabulary", key="token_ids",
                             expected=f"ids in [0, {spec.vocab_size})")
        h = ck.embed_tokens[ids]
        if ck.project_in is not None:
            h = h @ ck.project_in.T
        h = h + ck.embed_positions[np.arange(start, start + n) + POSITION_OFFSET]
        tm.lap("embed")
        for i, w in enumerate(ck.layers):
            h = self._attention_block(i, w, h, cache, start)
            x = layer_norm(h, w.ffn_ln_w, w.ffn_ln_b) if spec.layer_norm_before else h
            tm.lap("ffn_ln")
            out = h + ffn(i, h, x)
            h = out if spec.layer_norm_before else layer_norm(out, w.ffn_ln_w, w.ffn_ln_b)
            tm.lap("ffn_out")
        cache.length = start + n
        if ck.final_ln_w is not None:
            h = layer_norm(h, ck.final_ln_w, ck.final_ln_b)
        if ck.project_out is not None:
            h = h @ ck.project_out.T
        tm.lap("final_ln")
        logits = h @ ck.lm_head.T
        tm.lap("lm_head")
        return logits

    def _attention_block(self, i: int, w, h: np.ndarray, cache: KVCache, start: int) -> np.ndarray:
        spec, tm = self.spec, self.timer
        n, n_heads, hd = h.shape[0], spec.n_heads, spec.head_dim
        x = layer_norm(h, w.attn_ln_w, w.attn_ln_b) if spec.layer_norm_before else h
        tm.lap("attn_ln")
        q = (x @ w.q_w.T + w.q_b) * np.float32(hd ** -0.5)
        k = x @ w.k_w.T + w.k_b
        v = x @ w.v_w.T + w.v_b
        cache.keys[i][:, start:start + n] = k.reshape(n, n_heads, hd).transpose(1, 0, 2)
        cache.values[i][:, start:start + n] = v.reshape(n, n_heads, hd).transpose(1, 0, 2)
        tm.lap("qkv")
        keys = cache.keys[i][:, :start + n]
        values = cache.values[i][:, :start + n]
        q = q.reshape(n, n_heads, hd).transpose(1, 0, 2)
        scores = q @ keys.transpose(0, 2, 1)  # [H, n, start + n]
        if n > 1:
            allowed = np.arange(start + n)[None, :] <= (start + np.arange(n))[:, None]
            scores = np.where(allowed, scores, np.float32(-np.inf))
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        attn = (scores @ values).transpose(1, 0, 2).reshape(n, spec.d_model)
        tm.lap("attention")  # grows with the context: scores and values over start + n keys
        out = h + (attn @ w.out_w.T + w.out_b)
        tm.lap("attn_out")
        return out if spec.layer_norm_before else layer_norm(out, w.attn_ln_w, w.attn_ln_b)
