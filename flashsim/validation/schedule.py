"""The order of a validation run: every repetition reads each row (layout × QD) in blocks of
tokens, interleaved with the other rows' blocks, and one calibration part before each block."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOKEN_BLOCKS = 8
"""A repetition measures every row in this many blocks of tokens, interleaved (block 1 of
every row, then block 2, ...), so each row samples the disk's drift over the whole
repetition rather than over its own few seconds."""

RowKey = tuple[int, int]
"""A row: (index of its layout, queue depth)."""


@dataclass(frozen=True)
class Slot:
    """One step of the run: read `tokens` of row `key` in repetition `rep`, after part
    `calibration_part` = (j, k) of that repetition's calibration round."""

    rep: int
    tokens: range
    key: RowKey
    calibration_part: tuple[int, int]


def token_blocks(n_tokens: int) -> list[range]:
    """`n_tokens` split into TOKEN_BLOCKS consecutive blocks (fewer for a shorter plan)."""
    split = np.array_split(np.arange(n_tokens), min(TOKEN_BLOCKS, n_tokens))
    return [range(int(a[0]), int(a[-1]) + 1) for a in split]


def schedule(keys: list[RowKey], n_tokens: int, reps: int) -> list[Slot]:
    """Every block of every row in every repetition, rows rotating with block and repetition
    so the disk's drift hits every row alike; each repetition's calibration round is dealt
    out in as many parts as the repetition has slots."""
    blocks = token_blocks(n_tokens)
    per_rep = len(blocks) * len(keys)
    order = [(r, b, j) for r in range(reps) for b in range(len(blocks)) for j in range(len(keys))]
    return [Slot(r, blocks[b], keys[(j + r + b) % len(keys)], (n % per_rep, per_rep))
            for n, (r, b, j) in enumerate(order)]
