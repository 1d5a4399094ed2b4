"""IOPlan: the reads each token needs, per layer — one object drives simulator, loader and fio.

Reads are grouped in batches, one per (token, layer): the predictor of layer l needs layer l's
attention output, so a sparse runtime cannot issue layer l's reads before finishing layer
l - 1. A batch's reads are (offset, length) pairs into the weight file of the layout, already
aligned to `block_bytes` and merged where contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from ..errors import InputError
from ..geometry import ModelGeometry


@dataclass
class IOPlan:
    """Per-(token, layer) reads plus the DRAM bookkeeping that goes with them.

    Batch b = i * n_layers + l holds the reads of planned token i, layer l:
    offset_bytes[batch_ptr[b]:batch_ptr[b + 1]] (same for length_bytes).
    Per-token-and-layer arrays have shape [n_tokens, n_layers].
    """

    layout: str
    params: dict[str, Any]
    geometry: ModelGeometry
    block_bytes: int
    file_bytes: int  # size of the weight file the offsets refer to
    token_index: np.ndarray  # int64 [n_tokens]: trace positions planned
    batch_ptr: np.ndarray  # int64 [n_tokens * n_layers + 1]
    offset_bytes: np.ndarray  # int64 [n_reads]
    length_bytes: np.ndarray  # int64 [n_reads]
    useful_bytes: np.ndarray  # int64 [n_tokens, n_layers]: bytes of the neurons actually needed
    dram_resident_bytes: np.ndarray  # int64 [n_tokens, n_layers]: FFN bytes held in DRAM after the token
    mem_moved_bytes: np.ndarray  # int64 [n_tokens, n_layers]: bytes copied by memory management
    neurons_loaded: np.ndarray  # int64 [n_tokens, n_layers]
    meta: dict[str, Any] = field(default_factory=dict)
    # int64 [n_tokens, n_layers]: FFN neurons the token's compute multiplies (None: unknown).
    # The paper's runtime multiplies every resident row, so a windowed plan computes |W_t|.
    computed_neurons: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.token_index)

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def n_reads(self) -> int:
        return len(self.offset_bytes)

    def batch_reads(self, token: int, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, lengths) of planned token `token` (0-based in the plan), layer `layer`."""
        b = token * self.n_layers + layer
        lo, hi = self.batch_ptr[b], self.batch_ptr[b + 1]
        return self.offset_bytes[lo:hi], self.length_bytes[lo:hi]

    def token_reads(self, token: int) -> tuple[np.ndarray, np.ndarray]:
        """All (offsets, lengths) of planned token `token`, layer by layer."""
        lo = self.batch_ptr[token * self.n_layers]
        hi = self.batch_ptr[(token + 1) * self.n_layers]
        return self.offset_bytes[lo:hi], self.length_bytes[lo:hi]

    def reads_per_batch(self) -> np.ndarray:
        """Reads per (token, layer), shape [n_tokens, n_layers]."""
        return np.diff(self.batch_ptr).reshape(self.n_tokens, self.n_layers)

    def bytes_per_batch(self) -> np.ndarray:
        """Bytes read per (token, layer), shape [n_tokens, n_layers]."""
        csum = np.concatenate([[0], np.cumsum(self.length_bytes)])
        return np.diff(csum[self.batch_ptr]).reshape(self.n_tokens, self.n_layers)

    def bytes_per_token(self) -> np.ndarray:
        return self.bytes_per_batch().sum(axis=1)

    def reads_per_token(self) -> np.ndarray:
        return self.reads_per_batch().sum(axis=1)

    def read_amplification(self) -> float:
        """Bytes requested / bytes useful over the whole plan (1.0 = nothing extra read)."""
        useful = int(self.useful_bytes.sum())
        return float(self.length_bytes.sum()) / useful if useful else float("nan")

    def head(self, n_tokens: int) -> IOPlan:
        """The plan of its first `n_tokens` planned tokens (e.g. a quick check on a few)."""
        n = max(0, min(int(n_tokens), self.n_tokens))
        ptr = self.batch_ptr[:n * self.n_layers + 1]
        hi = int(ptr[-1])
        per = lambda a: None if a is None else a[:n]  # noqa: E731
        return IOPlan(self.layout, dict(self.params), self.geometry, self.block_bytes,
                      self.file_bytes, self.token_index[:n], ptr.copy(), self.offset_bytes[:hi],
                      self.length_bytes[:hi], per(self.useful_bytes),
                      per(self.dram_resident_bytes), per(self.mem_moved_bytes),
                      per(self.neurons_loaded), dict(self.meta), per(self.computed_neurons))

    def validate(self) -> None:
        """InputError when any read is unaligned, empty or outside the file."""
        if len(self.batch_ptr) != self.n_tokens * self.n_layers + 1:
            raise InputError("plan batch index does not match tokens × layers", key="batch_ptr")
        off, length = self.offset_bytes, self.length_bytes
        i, misaligned = _first_bad_read(off, length, self.block_bytes, self.file_bytes)
        if i >= 0 and misaligned:
            raise InputError(f"read {i} (offset {off[i]}, length {length[i]}) is not aligned to "
                             f"{self.block_bytes} bytes", key="reads")
        if i >= 0:
            raise InputError(f"read {i} (offset {off[i]}, length {length[i]}) is outside the "
                             f"{self.file_bytes}-byte file", key="reads")


@njit(cache=True)
def _first_bad_read(off, length, block, file_bytes):
    """(first unaligned or empty read, True), else (first read outside the file, False), else
    (-1, False): one pass, no temporaries the size of the plan."""
    outside = -1
    low = block - 1 if block > 0 and block & (block - 1) == 0 else -1  # a power of two: a mask
    for i in range(len(off)):
        if low >= 0:
            misaligned = (off[i] & low) != 0 or (length[i] & low) != 0
        else:
            misaligned = off[i] % block != 0 or length[i] % block != 0
        if misaligned or length[i] <= 0:
            return i, True
        if outside < 0 and (off[i] < 0 or off[i] + length[i] > file_bytes):
            outside = i
    return outside, False
