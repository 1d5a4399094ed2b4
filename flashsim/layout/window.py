"""The windowed DRAM cache of one layer, with the paper's memory management, token by token.

Window semantics (paper §3.1): after token t, DRAM holds the neurons used by the last k_t
tokens, W_t = S_{t-k_t+1} ∪ … ∪ S_t; token t reads only S_t \\ W_{t-1}. Every position of
the trace goes through the window, the prompt included, but only generated tokens are
planned: the first generated token starts with the prompt's last k tokens resident, as in
the paper's runtime, which processes the prompt first.

With a DRAM budget the window shrinks (k_t < k) whenever |W_t| rows would not fit, and it
regrows by at most one token per step (a neuron that already left DRAM cannot come back
without a read).

Memory management (paper §3.3): a preallocated matrix per layer, one row per resident
neuron. Deleting neurons overwrites their rows with the last rows of the matrix (rows that
were themselves deleted are just cut off); new rows are appended. `moved_rows` counts the
rows copied by deletion plus the rows inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..trace.format import NeuronSets

_NEVER = np.int64(-(1 << 40))


@dataclass
class WindowResult:
    """Per planned token: what to read and how DRAM changed (one layer)."""

    loads: NeuronSets  # neurons read per planned token (S_t minus the resident ones)
    resident_neurons: np.ndarray  # int64 [n_planned]: |W_t| after the token
    moved_rows: np.ndarray  # int64 [n_planned]: rows moved by deletion + rows inserted
    window: np.ndarray  # int64 [n_planned]: k_t used


def run_window(sets: NeuronSets, d_ffn: int, first_token: int, window: int, *,
               budget_rows: int | None = None, layer: int = 0) -> WindowResult:
    """Replay `sets` (all trace positions) through a window of `window` tokens.

    Positions before `first_token` (the prompt) warm the cache and are not reported.
    `budget_rows`: most rows this layer may hold; InputError when one token alone needs more.
    """
    if window < 1:
        raise InputError(f"window {window} must be at least 1 token", key="window",
                         expected="an integer ≥ 1")
    n = len(sets)
    last_used = np.full(d_ffn, _NEVER, dtype=np.int64)
    slot = np.zeros(d_ffn, dtype=np.int64)  # neuron in matrix row r
    pos = np.full(d_ffn, -1, dtype=np.int64)  # matrix row of neuron i
    n_used = 0
    k_prev = window
    n_out = max(n - first_token, 0)
    load_counts = np.zeros(n_out, dtype=np.int64)
    loads: list[np.ndarray] = []
    resident = np.zeros(n_out, dtype=np.int64)
    moved = np.zeros(n_out, dtype=np.int64)
    k_used = np.zeros(n_out, dtype=np.int64)
    for t in range(n):
        ids = sets.ids[sets.ptr[t]:sets.ptr[t + 1]]
        was_resident = last_used >= t - k_prev  # W_{t-1}
        new = ids[~was_resident[ids]]
        last_used[ids] = t
        k = window
        if budget_rows is not None:
            k_max = min(window, k_prev + 1)
            age = t - last_used
            size = np.cumsum(np.bincount(age[age < k_max], minlength=k_max))  # |W_t| for k=1..
            k = int(np.count_nonzero(size <= budget_rows))
            if k == 0:
                raise InputError(f"DRAM budget of {budget_rows} rows per layer is smaller than "
                                 f"the {len(ids)} neurons token {t} needs in layer {layer}",
                                 key="dram_budget_bytes",
                                 expected="a budget that holds at least one token's neurons")
        is_resident = last_used >= t - k + 1  # W_t
        dropped = np.flatnonzero(was_resident & ~is_resident)
        # delete: fill the holes below the cut with the surviving rows above it
        cut = n_used - len(dropped)
        holes = np.sort(pos[dropped])
        holes = holes[holes < cut]
        tail = slot[cut:n_used]
        movers = tail[is_resident[tail]]
        slot[holes] = movers
        pos[movers] = holes
        pos[dropped] = -1
        # insert: append
        slot[cut:cut + len(new)] = new
        pos[new] = np.arange(cut, cut + len(new))
        n_used = cut + len(new)
        if t >= first_token:
            i = t - first_token
            loads.append(new)
            load_counts[i] = len(new)
            resident[i] = n_used
            moved[i] = len(holes) + len(new)
            k_used[i] = k
        k_prev = k
    ptr = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(load_counts, out=ptr[1:])
    ids_out = np.concatenate(loads).astype(np.int32) if loads else np.zeros(0, np.int32)
    return WindowResult(NeuronSets(ptr, ids_out), resident, moved, k_used)
