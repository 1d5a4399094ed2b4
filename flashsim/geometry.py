"""The shapes that every layer shares: a model's FFN geometry and per-token neuron-id sets.

Both the model (which produces activations) and the trace (which stores them) use these, so
they live below both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelGeometry:
    """The shape of a model's FFN as flash sees it."""

    name: str
    n_layers: int
    d_model: int
    d_ffn: int
    dtype_bytes: int

    @property
    def row_bytes(self) -> int:
        """Bytes of one neuron's fc1 row (= one fc2 column)."""
        return self.d_model * self.dtype_bytes

    @property
    def layer_ffn_bytes(self) -> int:
        """Bytes of one layer's fc1 + fc2 weights (biases excluded)."""
        return 2 * self.d_ffn * self.row_bytes

    @property
    def ffn_bytes(self) -> int:
        """Bytes of all layers' fc1 + fc2 weights."""
        return self.n_layers * self.layer_ffn_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "n_layers": self.n_layers, "d_model": self.d_model,
                "d_ffn": self.d_ffn, "dtype_bytes": self.dtype_bytes}

    def mismatch(self, other: ModelGeometry) -> str | None:
        """A short description of how `other` differs (the name is not compared), or None."""
        diffs = [f"{k} {getattr(self, k)} vs {getattr(other, k)}"
                 for k in ("n_layers", "d_model", "d_ffn", "dtype_bytes")
                 if getattr(self, k) != getattr(other, k)]
        return ", ".join(diffs) or None


@dataclass
class NeuronSets:
    """One layer's neuron sets for every token: token t's sorted ids are ids[ptr[t]:ptr[t+1]]."""

    ptr: np.ndarray  # int64 [n_tokens + 1]
    ids: np.ndarray  # int32 [total], sorted within each token

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def __getitem__(self, token: int) -> np.ndarray:
        return self.ids[self.ptr[token]:self.ptr[token + 1]]

    def counts(self) -> np.ndarray:
        """Neurons per token."""
        return np.diff(self.ptr)

    def to_mask(self, d_ffn: int) -> np.ndarray:
        """Dense bool matrix [n_tokens, d_ffn]."""
        mask = np.zeros((len(self), d_ffn), dtype=bool)
        rows = np.repeat(np.arange(len(self)), self.counts())
        mask[rows, self.ids] = True
        return mask

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> NeuronSets:
        rows, cols = np.nonzero(mask)  # row-major: sorted by token, then id
        ptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=mask.shape[0]), out=ptr[1:])
        return cls(ptr, cols.astype(np.int32))

    @classmethod
    def from_lists(cls, sets: Iterable[Sequence[int] | np.ndarray]) -> NeuronSets:
        arrays = [np.unique(np.asarray(s, dtype=np.int32)) for s in sets]
        ptr = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=ptr[1:])
        ids = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
        return cls(ptr, ids.astype(np.int32))

    def slice_tokens(self, start: int, stop: int) -> NeuronSets:
        ptr = self.ptr[start:stop + 1]
        return NeuronSets(ptr - ptr[0], self.ids[ptr[0]:ptr[-1]].copy())
