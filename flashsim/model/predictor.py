"""Low-rank per-layer neuron predictors ("LLM in a flash", section 3.1).

Input: the layer's attention output in the residual stream — the hidden state after the
attention block's residual add (for post-LN models after its LayerNorm), i.e. exactly the
tensor the FFN's LayerNorm receives. The predictor first standardizes it per token
(parameter-free (x - mean) / std, as a LayerNorm without affine: the residual stream's scale
varies a lot between tokens), then applies two linear maps d_model → rank → d_ffn and a
sigmoid per neuron. Neuron i is predicted active when sigmoid(logit_i) >= threshold.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from ..atomic import atomic_write, atomic_write_text
from ..errors import InputError
from ..geometry import ModelGeometry

PREDICTOR_FORMAT = "flashsim-predictors"
PREDICTOR_FORMAT_VERSION = 1
INPUT_DESCRIPTION = ("residual stream after the attention block (the FFN LayerNorm's input), "
                     "standardized per token")


def standardize(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-row (x - mean) / sqrt(var + eps): the predictor's parameter-free input scaling."""
    centered = x - x.mean(axis=-1, keepdims=True)
    return centered / np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + eps)


@dataclass
class LayerPredictor:
    """logits = up_w @ (down_w @ standardize(x) + down_b) + up_b."""

    down_w: np.ndarray  # [rank, d_model]
    down_b: np.ndarray  # [rank]
    up_w: np.ndarray  # [d_ffn, rank]
    up_b: np.ndarray  # [d_ffn]

    @property
    def rank(self) -> int:
        return self.down_w.shape[0]

    def logits(self, resid: np.ndarray) -> np.ndarray:
        """Per-neuron logits [T, d_ffn] for residual-stream rows [T, d_model]."""
        z = standardize(np.asarray(resid, np.float32)) @ self.down_w.T + self.down_b
        return z @ self.up_w.T + self.up_b


@dataclass
class PredictorSet:
    """One predictor per layer, the default threshold, and provenance (`meta`)."""

    layers: list[LayerPredictor]
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ranks(self) -> list[int]:
        return [p.rank for p in self.layers]

    def predict_mask(self, layer: int, resid: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Bool [T, d_ffn]: neurons whose predicted probability is >= threshold (0 → all)."""
        t = self.threshold if threshold is None else threshold
        return self.layers[layer].logits(resid) >= logit(t)

    def check_geometry(self, geometry: ModelGeometry, *, file: str | os.PathLike | None = None) -> None:
        """InputError unless there is one predictor per layer with the model's d_model/d_ffn."""
        p0 = self.layers[0] if self.layers else None
        if (len(self.layers) != geometry.n_layers or p0 is None
                or p0.down_w.shape[1] != geometry.d_model or p0.up_w.shape[0] != geometry.d_ffn):
            got = (f"{len(self.layers)} layers, d_model {p0.down_w.shape[1]}, d_ffn {p0.up_w.shape[0]}"
                   if p0 is not None else "no layers")
            raise InputError(f"predictors do not fit the model ({got})", file=file,
                             key="geometry", expected=f"predictors trained for {geometry.name} "
                             f"({geometry.n_layers} layers, d_model {geometry.d_model}, "
                             f"d_ffn {geometry.d_ffn})")

    def save(self, path: str | os.PathLike, *, dtype: type = np.float16,
             report: dict[str, Any] | None = None) -> None:
        """Write weights as safetensors (fp16 by default) and `<stem>.json` (ranks, threshold,
        provenance, and `report`, e.g. training metrics); both atomically."""
        tensors = {}
        for i, p in enumerate(self.layers):
            for name in ("down_w", "down_b", "up_w", "up_b"):
                tensors[f"layers.{i}.{name}"] = np.ascontiguousarray(getattr(p, name), dtype)
        header = {"format": PREDICTOR_FORMAT, "version": str(PREDICTOR_FORMAT_VERSION),
                  "threshold": repr(float(self.threshold)), "meta": json.dumps(self.meta)}
        with atomic_write(path) as handle:
            handle.write(save(tensors, metadata=header))
        sidecar = {"format": PREDICTOR_FORMAT, "version": PREDICTOR_FORMAT_VERSION,
                   "threshold": self.threshold, "ranks": self.ranks, "input": INPUT_DESCRIPTION,
                   **self.meta, **(report or {})}
        atomic_write_text(Path(path).with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> PredictorSet:
        """Read a predictors.safetensors file; anything else is an InputError naming it."""
        p = Path(path)
        if not p.is_file():
            raise InputError("predictor file does not exist", file=p,
                             expected="predictors.safetensors (train with "
                             "experiments/train_predictors/train.py)")
        try:
            with safe_open(str(p), framework="numpy") as f:
                header = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"unreadable predictor file ({exc})", file=p) from None
        if header.get("format") != PREDICTOR_FORMAT:
            raise InputError("not a flashsim predictor file", file=p, key="format",
                             expected=PREDICTOR_FORMAT)
        if header.get("version") != str(PREDICTOR_FORMAT_VERSION):
            raise InputError(f"predictor format version {header.get('version')}", file=p,
                             key="version", expected=str(PREDICTOR_FORMAT_VERSION))
        layers = []
        i = 0
        while f"layers.{i}.down_w" in arrays:
            try:
                layers.append(LayerPredictor(*(arrays[f"layers.{i}.{n}"].astype(np.float32)
                                               for n in ("down_w", "down_b", "up_w", "up_b"))))
            except KeyError as exc:
                raise InputError("tensor is missing", file=p, key=str(exc.args[0])) from None
            i += 1
        if not layers:
            raise InputError("no predictor layers in the file", file=p, key="layers.0.down_w")
        return cls(layers, float(header.get("threshold", 0.5)), json.loads(header.get("meta", "{}")))


def logit(probability: float) -> float:
    """The logit of a threshold probability (0 → -inf: everything; 1 → inf: nothing)."""
    if not 0.0 <= probability <= 1.0 or math.isnan(probability):
        raise InputError(f"threshold {probability} is not a probability", key="threshold",
                         expected="a number in [0, 1]")
    if probability == 0.0:
        return -math.inf
    if probability == 1.0:
        return math.inf
    return math.log(probability / (1.0 - probability))
