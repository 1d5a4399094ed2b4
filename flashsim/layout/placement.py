"""Placement: where each neuron's fc1 row and fc2 column sit in the weight file of a layout.

The weight store writes exactly what a Placement says and the layouts' IOPlans read exactly
there, so the two agree by construction. Contract for the store: write fc1 row i of layer l
at `fc1_offset_bytes[l, i]` and fc2 column i (= row i of fc2.T) at `fc2_offset_bytes[l, i]`;
then, for closest-friend placements, also every duplicate copy listed by `copies()`; every
other byte of the `file_bytes`-byte file is zero. Layer regions start on `block_bytes`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..geometry import ModelGeometry

KINDS = ("split", "bundled", "friend")


def _align_up(n: int | np.ndarray, block: int) -> int | np.ndarray:
    return -(-n // block) * block


@dataclass(frozen=True)
class Placement:
    """Byte offsets of every neuron's weights in one layout's weight file.

    kind: "split" (separate fc1-row and fc2-column regions per layer), "bundled" (one record
    [fc1 row | fc2 col] per neuron, in `order`) or "friend" (record i = [fc1_i | fc2_i |
    fc1_f | fc2_f] with f = friend[l, i]: the primary copy of neuron i is the first half of
    record i; the second half duplicates its closest friend).
    `read_unit_bytes` is what one neuron's read covers: row_bytes for split (two reads per
    neuron), 2 × row_bytes for bundled, 4 × row_bytes for friend.
    """

    kind: str
    geometry: ModelGeometry
    block_bytes: int
    order: np.ndarray  # int64 [n_layers, d_ffn]: neuron stored in slot s of layer l
    fc1_offset_bytes: np.ndarray  # int64 [n_layers, d_ffn], primary copy
    fc2_offset_bytes: np.ndarray  # int64 [n_layers, d_ffn], primary copy
    layer_offset_bytes: np.ndarray  # int64 [n_layers + 1]: region of layer l, block aligned
    file_bytes: int
    read_unit_bytes: int
    friend: np.ndarray | None = None  # int64 [n_layers, d_ffn] (friend kind only)

    @property
    def row_bytes(self) -> int:
        return self.geometry.row_bytes

    def copies(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Duplicate copies the store must also write: (layer, neuron, fc1_offset, fc2_offset).

        Empty except for the friend kind, where record i of layer l carries a copy of
        neuron friend[l, i] right after neuron i's own fc1 row and fc2 column.
        """
        if self.friend is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        n_layers, d_ffn = self.friend.shape
        layer = np.repeat(np.arange(n_layers, dtype=np.int64), d_ffn)
        fc1 = (self.fc1_offset_bytes + 2 * self.row_bytes).ravel()
        return layer, self.friend.ravel().astype(np.int64), fc1, fc1 + self.row_bytes

    def digest(self) -> str:
        """A short hash of every offset: a store and a plan agree iff their digests do."""
        h = hashlib.sha256(f"{self.kind}:{self.block_bytes}:{self.file_bytes}".encode())
        for a in (self.fc1_offset_bytes, self.fc2_offset_bytes, *self.copies()[1:]):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """JSON-friendly description (no per-neuron arrays)."""
        return {"kind": self.kind, "block_bytes": self.block_bytes, "file_bytes": self.file_bytes,
                "read_unit_bytes": self.read_unit_bytes, "digest": self.digest()}


def _check_block(block_bytes: int) -> None:
    if block_bytes <= 0 or block_bytes & (block_bytes - 1):
        raise InputError(f"block size {block_bytes} is not a power of two", key="block_bytes",
                         expected="a power of two such as 512 or 4k")


def _check_order(order: np.ndarray, geometry: ModelGeometry) -> np.ndarray:
    order = np.asarray(order, dtype=np.int64)
    shape = (geometry.n_layers, geometry.d_ffn)
    if order.shape != shape or np.any(np.sort(order, axis=1) != np.arange(geometry.d_ffn)):
        raise InputError(f"neuron order must be a permutation per layer of shape {shape}",
                         key="order")
    return order


def split_placement(geometry: ModelGeometry, block_bytes: int = 4096) -> Placement:
    """Two matrices per layer, as a checkpoint stores them: fc1 rows, then fc2 columns."""
    _check_block(block_bytes)
    L, d, row = geometry.n_layers, geometry.d_ffn, geometry.row_bytes
    region = int(_align_up(d * row, block_bytes))
    layer_off = np.arange(L + 1, dtype=np.int64) * 2 * region
    slot = np.arange(d, dtype=np.int64) * row
    fc1 = layer_off[:-1, None] + slot[None, :]
    order = np.tile(np.arange(d, dtype=np.int64), (L, 1))
    return Placement("split", geometry, block_bytes, order, fc1, fc1 + region, layer_off,
                     int(layer_off[-1]), row)


def bundled_placement(geometry: ModelGeometry, block_bytes: int = 4096,
                      order: np.ndarray | None = None) -> Placement:
    """One [fc1 row | fc2 col] record per neuron, records in `order` (identity by default)."""
    _check_block(block_bytes)
    L, d, row = geometry.n_layers, geometry.d_ffn, geometry.row_bytes
    order = (np.tile(np.arange(d, dtype=np.int64), (L, 1)) if order is None
             else _check_order(order, geometry))
    region = int(_align_up(d * 2 * row, block_bytes))
    layer_off = np.arange(L + 1, dtype=np.int64) * region
    slot_of = np.argsort(order, axis=1)  # slot of neuron i
    fc1 = layer_off[:-1, None] + slot_of * 2 * row
    return Placement("bundled", geometry, block_bytes, order, fc1, fc1 + row, layer_off,
                     int(layer_off[-1]), 2 * row)


def friend_placement(geometry: ModelGeometry, friend: np.ndarray,
                     block_bytes: int = 4096) -> Placement:
    """Closest-friend bundling: record i = [fc1_i | fc2_i | fc1_friend | fc2_friend]."""
    _check_block(block_bytes)
    L, d, row = geometry.n_layers, geometry.d_ffn, geometry.row_bytes
    friend = np.asarray(friend, dtype=np.int64)
    if friend.shape != (L, d) or friend.min(initial=0) < 0 or friend.max(initial=0) >= d:
        raise InputError(f"friend table must have shape {(L, d)} with ids in [0, {d})",
                         key="friend")
    region = int(_align_up(d * 4 * row, block_bytes))
    layer_off = np.arange(L + 1, dtype=np.int64) * region
    fc1 = layer_off[:-1, None] + np.arange(d, dtype=np.int64)[None, :] * 4 * row
    order = np.tile(np.arange(d, dtype=np.int64), (L, 1))
    return Placement("friend", geometry, block_bytes, order, fc1, fc1 + row, layer_off,
                     int(layer_off[-1]), 4 * row, friend)
