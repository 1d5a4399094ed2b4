"""The windowed DRAM cache of one layer, with the paper's memory management, token by token.

Window semantics (paper §3.1): after token t, DRAM holds the neurons used by the last k_t
tokens, W_t = S_{t-k_t+1} ∪ … ∪ S_t; token t reads only S_t \\ W_{t-1}. Every position of
the trace goes through the window, the prompt included, but only generated tokens are
planned: the first generated token starts with the prompt's last k tokens resident, as in
the paper's runtime, which processes the prompt first.

With a DRAM budget (shared by all layers) the window of a layer shrinks (k_t < k) whenever
its |W_t| rows would not fit next to what the other layers hold, and it regrows by at most
one token per step (a neuron that already left DRAM cannot come back without a read).

Memory management (paper §3.3): a preallocated matrix per layer, one row per resident
neuron. Deleting neurons overwrites their rows with the last rows of the matrix (rows that
were themselves deleted are just cut off); new rows are appended. `moved_rows` counts the
rows copied by deletion plus the rows inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..geometry import NeuronSets

_NEVER = np.int64(-(1 << 40))


@dataclass
class WindowResult:
    """Per planned token: what to read and how DRAM changed (one layer)."""

    loads: NeuronSets  # neurons read per planned token (S_t minus the resident ones)
    resident_neurons: np.ndarray  # int64 [n_planned]: |W_t| after the token
    moved_rows: np.ndarray  # int64 [n_planned]: rows moved by deletion + rows inserted
    window: np.ndarray  # int64 [n_planned]: k_t used


class LayerWindow:
    """One layer's window cache and its preallocated matrix, stepped token by token."""

    def __init__(self, d_ffn: int, window: int) -> None:
        if isinstance(window, bool) or int(window) != window or window < 1:
            raise InputError(f"window {window} must be at least 1 token", key="window",
                             expected="an integer ≥ 1")
        self.window = int(window)
        self.last_used = np.full(d_ffn, _NEVER, dtype=np.int64)
        self.slot = np.zeros(d_ffn, dtype=np.int64)  # neuron in matrix row r
        self.pos = np.full(d_ffn, -1, dtype=np.int64)  # matrix row of neuron i
        self.n_used = 0
        self.k_prev = self.window
        self.last_t = -1

    def step(self, t: int, ids: np.ndarray, budget_rows: int | None = None,
             where: str = "") -> tuple[np.ndarray, int, int]:
        """Token t uses `ids`: returns (neurons read, rows moved + inserted, window k_t).

        With `budget_rows` the window shrinks so this layer keeps at most that many rows.
        """
        last_used, slot, pos = self.last_used, self.slot, self.pos
        was_resident = last_used >= t - self.k_prev  # W_{t-1}
        new = ids[~was_resident[ids]]
        last_used[ids] = t
        k = self.window
        if budget_rows is not None:
            k_max = min(self.window, self.k_prev + 1)
            age = t - last_used
            size = np.cumsum(np.bincount(age[age < k_max], minlength=k_max))  # |W_t| for k=1..
            k = int(np.count_nonzero(size <= budget_rows))
            if k == 0:
                raise InputError(f"DRAM budget leaves {max(budget_rows, 0)} rows for the "
                                 f"{len(ids)} neurons token {t} needs{where}",
                                 key="dram_budget_bytes",
                                 expected="a budget that holds at least one token's neurons")
        n_moved = self._evict(was_resident, last_used >= t - k + 1)
        # insert: append
        slot[self.n_used:self.n_used + len(new)] = new
        pos[new] = np.arange(self.n_used, self.n_used + len(new))
        self.n_used += len(new)
        self.k_prev = k
        self.last_t = t
        return new, n_moved + len(new), k

    def shrink(self) -> int:
        """Drop the oldest token of the window (k → k - 1) now; returns the rows moved."""
        t, k = self.last_t, self.k_prev - 1
        moved = self._evict(self.last_used >= t - self.k_prev + 1, self.last_used >= t - k + 1)
        self.k_prev = k
        return moved

    def _evict(self, was_resident: np.ndarray, is_resident: np.ndarray) -> int:
        """Delete rows leaving the window: holes below the new end get the last rows."""
        slot, pos = self.slot, self.pos
        dropped = np.flatnonzero(was_resident & ~is_resident)
        cut = self.n_used - len(dropped)
        holes = np.sort(pos[dropped])
        holes = holes[holes < cut]
        tail = slot[cut:self.n_used]
        movers = tail[is_resident[tail]]
        slot[holes] = movers
        pos[movers] = holes
        pos[dropped] = -1
        self.n_used = cut
        return len(holes)


def run_windows(sets: list[NeuronSets], d_ffn: int, first_token: int, window: int, *,
                budget_rows: int | None = None) -> list[WindowResult]:
    """Replay every layer's sets (all trace positions) through a window of `window` tokens.

    Positions before `first_token` (the prompt) warm the caches and are not reported.
    `budget_rows` is shared by all layers and holds for every generated token: when layer l
    of token t is processed, it may keep what the other layers do not hold at that moment
    (layers < l already at t, layers > l still at t - 1), so the total never exceeds the
    budget. When its own set does not fit, the other layers' biggest windows are shrunk
    first (their oldest token dropped, the moves counted for them); InputError when even
    windows of one token do not fit. The prompt is warmed
    without the budget (a token's first set, e.g. after BOS, can be far larger); the first
    generated token then shrinks the windows to fit.
    """
    caches = [LayerWindow(d_ffn, window) for _ in sets]
    n = len(sets[0]) if sets else 0
    n_out = max(n - first_token, 0)
    loads: list[list[np.ndarray]] = [[] for _ in sets]
    resident = np.zeros((len(sets), n_out), dtype=np.int64)
    moved = np.zeros((len(sets), n_out), dtype=np.int64)
    k_used = np.zeros((len(sets), n_out), dtype=np.int64)
    for t in range(n):
        for l, (s, cache) in enumerate(zip(sets, caches)):
            ids = s.ids[s.ptr[t]:s.ptr[t + 1]]
            budget = None
            if budget_rows is not None and t >= first_token:
                others = [j for j in range(len(caches)) if j != l]
                held = sum(caches[j].n_used for j in others)
                while budget_rows - held < len(ids):  # make room: shrink the biggest window
                    can = [j for j in others if caches[j].k_prev > 1]
                    if not can:
                        break
                    j = max(can, key=lambda j: caches[j].n_used)
                    moved[j, t - first_token] += caches[j].shrink()
                    held = sum(caches[j].n_used for j in others)
                budget = budget_rows - held
            new, n_moved, k = cache.step(t, ids, budget, f" in layer {l}")
            if t >= first_token:
                i = t - first_token
                loads[l].append(new)
                k_used[l, i] = k
                moved[l, i] += n_moved
        if t >= first_token:  # after the whole token (later layers may have shrunk earlier ones)
            resident[:, t - first_token] = [c.n_used for c in caches]
    out = []
    for l in range(len(sets)):
        counts = np.array([len(a) for a in loads[l]], dtype=np.int64)
        ptr = np.zeros(n_out + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        ids = np.concatenate(loads[l]).astype(np.int32) if loads[l] else np.zeros(0, np.int32)
        out.append(WindowResult(NeuronSets(ptr, ids), resident[l], moved[l], k_used[l]))
    return out


def run_window(sets: NeuronSets, d_ffn: int, first_token: int, window: int, *,
               budget_rows: int | None = None) -> WindowResult:
    """One layer through the window (see `run_windows`); `budget_rows` for this layer alone."""
    return run_windows([sets], d_ffn, first_token, window, budget_rows=budget_rows)[0]
