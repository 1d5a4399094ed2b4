"""What each layer holds in DRAM, with the paper's memory management, token by token.

Window semantics (paper §3.1): after token t, DRAM holds the neurons used by the last k_t
tokens, W_t = S_{t-k_t+1} ∪ … ∪ S_t; token t reads only S_t \\ W_{t-1}. Every position of
the trace goes through the window, the prompt included, but only generated tokens are
planned: the first generated token starts with the prompt's last k tokens resident, as in
the paper's runtime, which processes the prompt first. Without a window nothing is kept
between tokens: token t reads all of S_t and DRAM holds S_t while it computes.

With a DRAM budget (shared by all layers) the window of a layer shrinks (k_t < k) whenever
its |W_t| rows would not fit next to what the other layers hold, and it regrows by at most
one token per step (a neuron that already left DRAM cannot come back without a read).

Memory management (paper §3.3): a preallocated matrix per layer, one row per resident
neuron. Deleting neurons overwrites their rows with the last rows of the matrix (rows that
were themselves deleted are just cut off); new rows are appended. `moved_rows` counts the
rows copied by deletion plus the rows inserted.

`Residency` is the one implementation: the plan replays a whole trace through it
(`replay`), the flash runtime steps it (token, layer) by (token, layer) as the predictor's
ids arrive (`step`) and copies its matrix rows as each `WindowStep` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..errors import InputError
from ..geometry import NeuronSets

_NEVER = np.int32(-(1 << 30))  # last use of a neuron never used (token indices are int32)


@dataclass(slots=True)
class RowMoves:
    """Deletion by overwrite in one layer's matrix: row dst_rows[i] gets row src_rows[i]."""

    dst_rows: np.ndarray
    src_rows: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.dst_rows)


@dataclass(slots=True)
class WindowStep:
    """One (token, layer) step: the neurons to read and how the layer's matrix changes.

    A runtime replays it on its matrix: first `evict` (rows overwritten), then the rows of
    `new` written from `first_new_row` on. `shrunk` lists, in order, the rows moved in
    other layers whose windows a DRAM budget shrank to make room.
    """

    new: np.ndarray  # neurons read: S_t minus W_{t-1}, in the order of the ids given
    evict: RowMoves
    first_new_row: int
    window: int  # k_t (1 without a window: only S_t is held)
    shrunk: list[tuple[int, RowMoves]] = field(default_factory=list)

    @property
    def moved_rows(self) -> int:
        """Rows copied by deletion plus rows inserted."""
        return self.evict.n_rows + len(self.new)


@dataclass
class WindowResult:
    """Per planned token: what to read and how DRAM changed (one layer)."""

    loads: NeuronSets  # neurons read per planned token (S_t minus the resident ones)
    resident_neurons: np.ndarray  # int64 [n_planned]: |W_t| after the token
    moved_rows: np.ndarray  # int64 [n_planned]: rows moved by deletion + rows inserted
    window: np.ndarray  # int64 [n_planned]: k_t used


def check_window(window: int | None) -> int | None:
    """`window` as an int (None: no window); InputError unless it is at least 1 token."""
    if window is None:
        return None
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise InputError(f"window {window} must be at least 1 token", key="window",
                         expected="an integer ≥ 1")
    return int(window)


class LayerWindow:
    """One layer's DRAM cache and its preallocated matrix's rows, stepped token by token.

    `window` None keeps nothing between tokens (every token reads its whole set). The state
    (last use per neuron, neuron per row, row per neuron) lives in numpy arrays that one
    numba kernel call per step updates (`window_step_kernel`, which returns only counts: the
    step's arrays are allocated here and filled by the kernel).
    """

    def __init__(self, d_ffn: int, window: int | None) -> None:
        self.window = check_window(window)
        # the three below in one int32 array: half the cache lines a step touches
        self.table = np.empty((3, d_ffn), dtype=np.int32)
        self.last_used = self.table[0]
        self.slot = self.table[1]  # neuron in matrix row r
        self.pos = self.table[2]  # matrix row of neuron i
        self.last_used[:], self.slot[:], self.pos[:] = _NEVER, 0, -1
        self.n_used = 0
        self.k_prev = self.window or 1
        self.last_t = -1

    def step(self, t: int, ids: np.ndarray, budget_rows: int | None = None,
             layer: int | None = None) -> WindowStep:
        """Token t uses `ids`: what to read and how the matrix changes.

        With `budget_rows` the window shrinks so this layer keeps at most that many rows.
        """
        ids = np.asarray(ids, dtype=np.int64)
        new, dst, src = (np.empty(len(ids), np.int64), np.empty(self.n_used, np.int64),
                         np.empty(self.n_used, np.int64))
        n_new, n_moves, first, n_used, k = window_step_kernel(
            self.last_used, self.slot, self.pos, self.n_used, self.k_prev, t, ids,
            self.window or 0, budget_rows is not None, budget_rows or 0, new, dst, src)
        if k == 0:
            where = "" if layer is None else f" in layer {layer}"
            raise InputError(f"DRAM budget leaves {max(budget_rows or 0, 0)} rows for the "
                             f"{len(ids)} neurons token {t} needs{where}",
                             key="dram_budget_bytes",
                             expected="a budget that holds at least one token's neurons")
        self.n_used, self.k_prev, self.last_t = n_used, k, t
        return WindowStep(new[:n_new], RowMoves(dst[:n_moves], src[:n_moves]), first, k)

    def shrink(self) -> RowMoves:
        """Drop the oldest token of the window (k → k - 1) now; returns the rows moved."""
        k = self.k_prev - 1
        dst, src = np.empty(self.n_used, np.int64), np.empty(self.n_used, np.int64)
        n_moves, self.n_used = _evict_rows(self.last_used, self.slot, self.pos, self.n_used,
                                           self.last_t - k + 1, dst, src)
        self.k_prev = k
        return RowMoves(dst[:n_moves], src[:n_moves])


@njit(cache=True)
def _evict_rows(last_used, slot, pos, n_used, keep_from, dst, src):
    """Numba kernel: rows whose neuron was last used before `keep_from` leave the matrix.

    Deletion by overwrite: the holes below the new end (ascending) get the surviving rows
    of the tail (ascending), written to dst[:m] and src[:m]; holes in the tail are cut
    off. Returns (m, new n_used).
    """
    n_drop = 0
    for r in range(n_used):
        if last_used[slot[r]] < keep_from:
            n_drop += 1
    cut = n_used - n_drop
    m = 0
    for r in range(cut):
        if last_used[slot[r]] < keep_from:
            dst[m] = r
            m += 1
    j = 0
    for r in range(cut, n_used):
        i = slot[r]
        if last_used[i] < keep_from:
            pos[i] = -1
        else:
            src[j] = r
            j += 1
    for j in range(m):
        pos[slot[dst[j]]] = -1
        i = slot[src[j]]
        slot[dst[j]] = i
        pos[i] = dst[j]
    return m, cut


@njit(cache=True)
def _fit_window(last_used, t, k_max, budget_rows):
    """Numba kernel: the longest window (≤ k_max) whose |W_t| fits in `budget_rows` (0: none)."""
    size = np.zeros(k_max, np.int64)
    for i in range(len(last_used)):
        age = t - last_used[i]
        if age < k_max:
            size[age] += 1
    k, held = 0, 0
    for a in range(k_max):
        held += size[a]
        if held <= budget_rows:
            k += 1
    return k


@njit(cache=True)
def window_step_kernel(last_used, slot, pos, n_used, k_prev, t, ids, window, budgeted, budget_rows,
                 new, dst, src):
    """Numba kernel of one (token, layer) step (`LayerWindow.step`); window 0: none kept;
    `budget_rows` holds only where `budgeted`. Writes the new neurons (ids not in W_{t-1},
    in ids' order) to new[:n] and the row moves (`_evict_rows`) to dst[:m], src[:m]; the
    new neurons' rows are appended after the kept ones. Returns (n, m, first new row,
    n_used, k_t), k_t 0 when the budget does not hold the token's set.
    """
    n, m, k = 0, 0, 1
    if window == 0:  # every row leaves (none moves), the whole set is read
        for r in range(n_used):
            pos[slot[r]] = -1
        new[:len(ids)] = ids
        n, first = len(ids), 0
    else:
        for j in range(len(ids)):  # W_{t-1}: used at t - k_prev or later
            if last_used[ids[j]] < t - k_prev:
                new[n] = ids[j]
                n += 1
        for j in range(len(ids)):
            last_used[ids[j]] = t
        k = window
        if budgeted:
            k = _fit_window(last_used, t, min(window, k_prev + 1), budget_rows)
            if k == 0:
                return n, 0, n_used, n_used, 0
        m, first = _evict_rows(last_used, slot, pos, n_used, t - k + 1, dst, src)
    for j in range(n):
        slot[first + j] = new[j]
        pos[new[j]] = first + j
    return n, m, first, first + n, k


class Residency:
    """What every layer of the FFN holds in DRAM (a window per layer and a shared budget)."""

    def __init__(self, n_layers: int, d_ffn: int, window: int | None, *,
                 budget_rows: int | None = None) -> None:
        if budget_rows is not None and window is None:
            raise InputError("a DRAM budget needs a window", key="dram_budget_bytes",
                             expected="--window together with --dram-budget")
        self.window = check_window(window)
        self.budget_rows = budget_rows
        self.layers = [LayerWindow(d_ffn, window) for _ in range(n_layers)]

    def rows_of(self, layer: int, ids: np.ndarray) -> np.ndarray:
        """Matrix row of each of `ids` in `layer` (-1: not resident)."""
        return self.layers[layer].pos[ids]

    def step(self, t: int, layer: int, ids: np.ndarray, *, budgeted: bool = True
             ) -> WindowStep:
        """Layer `layer` of token t uses `ids` (the budget holds only where `budgeted`).

        With a budget, layer l may keep what the other layers do not hold at that moment
        (layers < l already at t, layers > l still at t - 1); when its own set does not fit,
        the other layers' biggest windows are shrunk first (their oldest token dropped).
        """
        if self.budget_rows is None or not budgeted:
            return self.layers[layer].step(t, ids)
        shrunk = []
        others = [j for j in range(len(self.layers)) if j != layer]
        held = sum(self.layers[j].n_used for j in others)
        while self.budget_rows - held < len(ids):  # make room: shrink the biggest window
            can = [j for j in others if self.layers[j].k_prev > 1]
            if not can:
                break
            j = max(can, key=lambda j: self.layers[j].n_used)
            shrunk.append((j, self.layers[j].shrink()))
            held = sum(self.layers[j].n_used for j in others)
        step = self.layers[layer].step(t, ids, self.budget_rows - held, layer)
        step.shrunk = shrunk
        return step

    def replay(self, sets: list[NeuronSets], first_token: int) -> list[WindowResult]:
        """Every layer's sets (all trace positions) through the residency, token by token.

        Positions before `first_token` (the prompt) warm the caches without the budget (a
        token's first set, e.g. after BOS, can be far larger) and are not reported.
        """
        n = len(sets[0]) if sets else 0
        n_out = max(n - first_token, 0)
        if self.window is None:  # nothing kept: each token reads its set, holds only it
            out = []
            for s in sets:
                n_set = s.counts()[first_token:].astype(np.int64)
                out.append(WindowResult(s.slice_tokens(first_token, n), n_set, n_set.copy(),
                                        np.ones(n_out, dtype=np.int64)))
            return out
        loads: list[list[np.ndarray]] = [[] for _ in sets]
        resident, moved, k_used = (np.zeros((len(sets), n_out), dtype=np.int64)
                                   for _ in range(3))
        for t in range(n):
            i = t - first_token
            for l, s in enumerate(sets):
                step = self.step(t, l, s.ids[s.ptr[t]:s.ptr[t + 1]], budgeted=i >= 0)
                if i >= 0:
                    loads[l].append(step.new)
                    k_used[l, i] = step.window
                    moved[l, i] += step.moved_rows
                    for j, moves in step.shrunk:
                        moved[j, i] += moves.n_rows
            if i >= 0:  # after the whole token (later layers may have shrunk earlier ones)
                resident[:, i] = [w.n_used for w in self.layers]
        return [WindowResult(_sets_of(loads[l], n_out), resident[l], moved[l], k_used[l])
                for l in range(len(sets))]


def _sets_of(arrays: list[np.ndarray], n_tokens: int) -> NeuronSets:
    """NeuronSets of one array of ids per token."""
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    ptr = np.zeros(n_tokens + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    ids = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
    return NeuronSets(ptr, ids)


def run_windows(sets: list[NeuronSets], d_ffn: int, first_token: int, window: int, *,
                budget_rows: int | None = None) -> list[WindowResult]:
    """Replay every layer's sets (all trace positions) through a window of `window` tokens.

    `budget_rows` is shared by all layers and holds for every generated token (see
    `Residency.step`); InputError when even windows of one token do not fit.
    """
    return Residency(len(sets), d_ffn, window, budget_rows=budget_rows).replay(sets, first_token)


def run_window(sets: NeuronSets, d_ffn: int, first_token: int, window: int, *,
               budget_rows: int | None = None) -> WindowResult:
    """One layer through the window (see `run_windows`); `budget_rows` for this layer alone."""
    return run_windows([sets], d_ffn, first_token, window, budget_rows=budget_rows)[0]
