"""Statistics of an activation trace: sparsity, predictor quality, windowing reuse, co-activation.

Everything is computed on the CSR neuron sets with numpy (no loops over neurons or tokens).
Statistics cover generated tokens (positions >= n_prompt_tokens) unless the prompt is included;
windows may still look back into the prompt, as a real runtime's cache would.

Windowing with window k (the paper's s_agg): before token t the cache holds the union of the
sets of tokens t-k .. t-1; token t loads the neurons not in it (the increment); afterwards the
cache holds the union of tokens t-k+1 .. t (the resident set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from ..errors import InputError
from ..geometry import NeuronSets
from .format import ActivationTrace

DEFAULT_WINDOWS = tuple(range(1, 9))


def measured_tokens(trace: ActivationTrace, include_prompt: bool = False) -> tuple[int, int]:
    """The token range [start, stop) the statistics cover; InputError when it is empty."""
    start = 0 if include_prompt else trace.n_prompt_tokens
    if start >= trace.n_tokens:
        raise InputError(f"trace has no generated tokens ({trace.n_tokens} tokens, all prompt)",
                         key="n_prompt_tokens", expected="generated tokens, or include the prompt")
    return start, trace.n_tokens


def _entry_tokens(s: NeuronSets) -> np.ndarray:
    """Token index of every CSR entry."""
    return np.repeat(np.arange(len(s), dtype=np.int64), s.counts())


@dataclass
class WindowStats:
    """One layer's windowing statistics for windows ks (arrays of len(ks))."""

    ks: np.ndarray
    hits: np.ndarray  # entries of measured tokens already in the window cache
    entries: int  # total neurons over measured tokens
    incremental_neurons: np.ndarray  # mean neurons loaded per measured token
    resident_neurons: np.ndarray  # mean cache size after a measured token

    @property
    def hit_share(self) -> np.ndarray:
        """Share of a token's neurons already loaded in the last k tokens (pooled over tokens)."""
        return self.hits / self.entries if self.entries else np.full(len(self.ks), np.nan)


def window_stats(s: NeuronSets, start: int, stop: int | None = None,
                 ks: Sequence[int] = DEFAULT_WINDOWS) -> WindowStats:
    """Windowing reuse of one layer's sets over tokens [start, stop), for every k in ks.

    Uses each entry's gap to the same neuron's previous use: entry (t, j) is a cache hit for
    window k iff j was used within the k tokens before t.
    """
    stop = len(s) if stop is None else stop
    ks_arr = np.asarray(list(ks), dtype=np.int64)
    if len(ks_arr) == 0 or ks_arr.min() < 1:
        raise InputError("window sizes must be >= 1", key="ks", expected="integers >= 1")
    end = int(s.ptr[stop])
    rows = _entry_tokens(s)[:end]
    ids = s.ids[:end]
    order = np.argsort(ids, kind="stable")  # by neuron, then token (entries are token-ordered)
    r, i = rows[order], ids[order]
    same = i[1:] == i[:-1]
    big = np.int64(1) << 40
    prev_gap = np.full(len(r), big, dtype=np.int64)
    prev_gap[1:][same] = r[1:][same] - r[:-1][same]
    next_use = np.full(len(r), stop, dtype=np.int64)
    next_use[:-1][same] = r[1:][same]

    measured = r >= start
    n_measured = stop - start
    gaps = prev_gap[measured]
    hits = (gaps[None, :] <= ks_arr[:, None]).sum(axis=1)
    entries = int(measured.sum())
    incremental = (entries - hits) / n_measured
    # each entry keeps its neuron resident on [t0, min(next use, t0 + k)); count measured tokens
    lo = np.maximum(r, start)
    hi = np.minimum(np.minimum(next_use[None, :], r[None, :] + ks_arr[:, None]), stop)
    resident = np.clip(hi - lo[None, :], 0, None).sum(axis=1) / n_measured
    return WindowStats(ks_arr, hits.astype(np.int64), entries, incremental, resident)


@dataclass
class Friends:
    """Closest friends of one layer's ever-active neurons (co-activation by P(j | i))."""

    neurons: np.ndarray  # ids of neurons active at least once in the range
    counts: np.ndarray  # how many tokens each was active
    friend: np.ndarray  # id of the neuron most often active when it is (-1: never co-active)
    friend_rate: np.ndarray  # P(friend | neuron)
    third_rate: np.ndarray  # P(3rd closest | neuron) (nan when < 4 neurons)


def closest_friends(s: NeuronSets, start: int = 0, stop: int | None = None,
                    block: int = 2048) -> Friends:
    """Each ever-active neuron's closest friend argmax_j P(j | i), j != i (ties: lowest id).

    Co-occurrence counts: sparse (neuron x token) times dense (token x neuron), in row blocks;
    the cost grows with the number of activations times the number of ever-active neurons.
    """
    stop = len(s) if stop is None else stop
    lo, hi = int(s.ptr[start]), int(s.ptr[stop])
    rows = _entry_tokens(s)[lo:hi] - start
    neurons, cols = np.unique(s.ids[lo:hi], return_inverse=True)
    n = len(neurons)
    mask = np.zeros((stop - start, n), dtype=np.float32)
    mask[rows, cols] = 1.0
    counts = mask.sum(axis=0).astype(np.int64)
    # neuron-major sparse copy: row i lists the tokens where neuron i fired
    by_neuron = csr_matrix((np.ones(len(rows), dtype=np.float32), (cols, rows)),
                           shape=(n, stop - start))
    friend = np.full(n, -1, dtype=np.int64)
    friend_rate = np.zeros(n)
    third_rate = np.full(n, np.nan)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        co = np.asarray(by_neuron[b0:b1] @ mask)  # [b, n] co-occurrence counts (exact)
        co[np.arange(b1 - b0), np.arange(b0, b1)] = -1.0
        best = np.argmax(co, axis=1)
        best_count = co[np.arange(b1 - b0), best]
        ok = best_count > 0
        friend[b0:b1][ok] = neurons[best[ok]]
        friend_rate[b0:b1] = np.maximum(best_count, 0) / counts[b0:b1]
        if n >= 4:
            third = -np.partition(-co, 2, axis=1)[:, 2]
            third_rate[b0:b1] = np.maximum(third, 0) / counts[b0:b1]
    return Friends(neurons, counts, friend, friend_rate, third_rate)


FREQUENT_MIN_COUNT = 5


def coactivation_summary(friends: Friends, d_ffn: int, hot_fraction: float = 0.01) -> dict[str, Any]:
    """How close friends are, and how often the hottest neurons are someone's closest friend.

    Hot = the round(hot_fraction * d_ffn) most often active neurons (at least 1; ties: lowest
    id). `hot_friend_share_if_random` is what the share would be with friends drawn uniformly.
    `*_frequent` keys cover neurons active at least 5 times (a neuron seen once has rate 1).
    """
    n = len(friends.neurons)
    if n == 0:
        return {"n_ever_active": 0, "friend_rate_mean": None, "friend_rate_median": None,
                "n_frequent": 0, "friend_rate_median_frequent": None,
                "third_friend_rate_median": None, "friend_rate_ge_95_share": None,
                "n_hot": 0, "hot_friend_share": None, "hot_friend_share_if_random": None,
                "top_friend_share": None}
    n_hot = min(n, max(1, int(round(hot_fraction * d_ffn))))
    hot_ids = friends.neurons[np.argsort(-friends.counts, kind="stable")[:n_hot]]
    has = friends.friend >= 0
    hot_friend = np.isin(friends.friend, hot_ids) & has
    popular = np.bincount(friends.friend[has], minlength=d_ffn).max() if has.any() else 0
    third = friends.third_rate[np.isfinite(friends.third_rate)]
    frequent = friends.friend_rate[friends.counts >= FREQUENT_MIN_COUNT]
    return {
        "n_ever_active": int(n),
        "friend_rate_mean": float(friends.friend_rate.mean()),
        "friend_rate_median": float(np.median(friends.friend_rate)),
        "n_frequent": int(len(frequent)),
        "friend_rate_median_frequent": float(np.median(frequent)) if len(frequent) else None,
        "third_friend_rate_median": float(np.median(third)) if len(third) else None,
        "friend_rate_ge_95_share": float((friends.friend_rate >= 0.95).mean()),
        "n_hot": int(n_hot),
        "hot_friend_share": float(hot_friend.mean()),
        "hot_friend_share_if_random": float(n_hot / n) if n > 1 else None,
        "top_friend_share": float(popular / n),
    }


def predictor_stats(active: NeuronSets, predicted: NeuronSets, d_ffn: int, start: int,
                    stop: int) -> dict[str, float]:
    """Recall, false-negative/positive rates and extra load of one layer's predictor.

    false_positive_rate = wrongly predicted / truly inactive (the paper's ~7%);
    extra_load_ratio = wrongly predicted / truly active; predicted_to_active = |P| / |A|.
    """
    def keys(s: NeuronSets) -> np.ndarray:
        lo, hi = int(s.ptr[start]), int(s.ptr[stop])
        return _entry_tokens(s)[lo:hi] * d_ffn + s.ids[lo:hi]

    ka, kp = keys(active), keys(predicted)
    both = len(np.intersect1d(ka, kp, assume_unique=True))
    n_a, n_p = len(ka), len(kp)
    negatives = (stop - start) * d_ffn - n_a
    fp = n_p - both
    nan = float("nan")
    return {
        "recall": both / n_a if n_a else nan,
        "false_negative_rate": 1 - both / n_a if n_a else nan,
        "false_positive_rate": fp / negatives if negatives else nan,
        "extra_load_ratio": fp / n_a if n_a else nan,
        "predicted_to_active": n_p / n_a if n_a else nan,
    }


def _window_block(layers: list[WindowStats], d_ffn: int) -> dict[str, Any]:
    hits = np.array([w.hits for w in layers], dtype=float)
    entries = np.array([w.entries for w in layers], dtype=float)
    inc = np.array([w.incremental_neurons for w in layers])
    res = np.array([w.resident_neurons for w in layers])
    with np.errstate(invalid="ignore", divide="ignore"):
        per_layer_share = hits / entries[:, None]
        pooled_share = hits.sum(axis=0) / entries.sum() if entries.sum() else np.full(hits.shape[1], np.nan)
    return {
        "hit_share": pooled_share,
        "hit_share_per_layer": per_layer_share,
        "incremental_fraction": (inc / d_ffn).mean(axis=0),
        "incremental_fraction_per_layer": inc / d_ffn,
        "incremental_neurons_per_layer": inc,
        "resident_fraction": (res / d_ffn).mean(axis=0),
        "resident_fraction_per_layer": res / d_ffn,
    }


def trace_stats(trace: ActivationTrace, which: str | None = None, *, include_prompt: bool = False,
                ks: Sequence[int] = DEFAULT_WINDOWS, coactivation: bool = True,
                hot_fraction: float = 0.01) -> dict[str, Any]:
    """All statistics of a trace as a JSON-ready dict (lists per layer, per k).

    `which` picks the set the headline window_* and co-activation keys describe: 'predicted'
    (default when the trace has one: what a sparse runtime loads) or 'active'. Window
    statistics of both sets are under `window_by_set`. Fractions are of one layer's d_ffn;
    over-layer averages weight layers equally (they all have d_ffn neurons).
    """
    if which is None:
        which = "predicted" if trace.predicted is not None else "active"
    chosen = trace.sets(which)  # InputError for an unknown set or a missing predictor
    if not 0 < hot_fraction <= 1:
        raise InputError(f"hot_fraction {hot_fraction} out of range", key="hot_fraction",
                         expected="a fraction in (0, 1]")
    start, stop = measured_tokens(trace, include_prompt)
    g = trace.geometry
    d = g.d_ffn
    n_meas = stop - start
    ks = list(ks)

    def per_token(sets: list[NeuronSets]) -> np.ndarray:
        return np.array([s.counts()[start:stop].mean() for s in sets])

    active_pt = per_token(trace.active)
    out: dict[str, Any] = {
        "trace": {"name": g.name, "n_layers": g.n_layers, "d_model": g.d_model, "d_ffn": d,
                  "dtype_bytes": g.dtype_bytes, "n_tokens": trace.n_tokens,
                  "n_prompt_tokens": trace.n_prompt_tokens,
                  "synthetic": trace.is_synthetic},
        "tokens": {"start": start, "stop": stop, "n_measured": n_meas,
                   "include_prompt": include_prompt},
        "which": which,
        "window_k": ks,
        "sparsity": 1 - active_pt / d,
        "mean_sparsity": float(1 - active_pt.mean() / d),
        "active_per_token": active_pt,
        "predicted_sparsity": None, "mean_predicted_sparsity": None,
        "predicted_per_token": None, "predictor": None,
    }
    if trace.predicted is not None:
        pred_pt = per_token(trace.predicted)
        out["predicted_sparsity"] = 1 - pred_pt / d
        out["mean_predicted_sparsity"] = float(1 - pred_pt.mean() / d)
        out["predicted_per_token"] = pred_pt
        layers = [predictor_stats(a, p, d, start, stop)
                  for a, p in zip(trace.active, trace.predicted)]
        pred = {key: [row[key] for row in layers] for key in layers[0]}
        pred["mean"] = {key: float(np.nanmean(vals)) for key, vals in pred.items()}
        out["predictor"] = pred

    by_set: dict[str, Any] = {}
    for name, sets in (("active", trace.active), ("predicted", trace.predicted)):
        if sets is not None:
            by_set[name] = _window_block([window_stats(s, start, stop, ks) for s in sets], d)
    for key, value in by_set[which].items():
        out[f"window_{key}"] = value
    out["window_by_set"] = by_set

    out["coactivation"] = None
    if coactivation:
        rows = [coactivation_summary(closest_friends(s, start, stop), d, hot_fraction)
                for s in chosen]
        co = {key: [row[key] for row in rows] for key in rows[0]}
        out["coactivation"] = {"set": which, "hot_fraction": hot_fraction, **co}
    return out
