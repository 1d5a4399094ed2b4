"""Next-token choice: greedy, or nucleus (top-p) sampling from a seeded numpy Generator."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def check_top_p(top_p: float | None) -> None:
    """InputError unless top_p is None (greedy) or in (0, 1]."""
    if top_p is not None and not (0.0 < float(top_p) <= 1.0):
        raise InputError(f"top_p {top_p} out of range", key="top_p",
                         expected="a number in (0, 1], or none for greedy decoding")


def greedy(logits: np.ndarray) -> int:
    """The most likely token (lowest id on ties)."""
    return int(np.argmax(logits))


def sample_top_p(logits: np.ndarray, top_p: float, rng: np.random.Generator) -> int:
    """Sample from the smallest set of most likely tokens whose probability reaches top_p."""
    z = np.asarray(logits, dtype=np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    keep = int(np.searchsorted(cumulative, top_p * cumulative[-1])) + 1
    kept = order[:keep]
    p = probs[kept] / probs[kept].sum()
    return int(kept[rng.choice(keep, p=p)])


def next_token(logits: np.ndarray, top_p: float | None, rng: np.random.Generator) -> int:
    """Greedy when top_p is None, else nucleus sampling."""
    return greedy(logits) if top_p is None else sample_top_p(logits, top_p, rng)
