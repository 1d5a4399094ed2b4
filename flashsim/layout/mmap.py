"""The mmap baseline: the FFN file read through the OS page cache, as llama.cpp does.

The page cache holds at most `budget_bytes` of the file (`block_bytes` pages, 4 KiB by
default). A touched page that is not cached faults, and the kernel's read-around reads
`readahead_bytes` centred on it (Linux `filemap_fault`: start = page − window/2), skipping
pages already cached, so one fault costs one read per missing run of the window. With
readahead 0 (`MADV_RANDOM`) a fault reads its page alone. Which pages leave when the budget
is exceeded: the least recently used (`page_cache="lru"`), or as the kernel's inactive and
active lists decide (`"two-list"`, two_list.py).

Two access patterns, both gathering rows in file order per (token, layer):
- dense: every row of every layer every token (llama.cpp's dense FFN);
- sparse: only the predicted (or active) neurons' records.

The plan's reads are the faults' reads (each missing run one read, in fault order), timed by
the device model at the queue depth of the `threads` faulting threads. Memory is the rows
copied out of the page cache into the working matrix (`mem_moved_bytes`, costed over the
memcpy bandwidth); DRAM is the budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ..errors import InputError
from ..geometry import ModelGeometry, NeuronSets
from ..trace.format import ActivationTrace
from .base import Layout, check_trace, unit_ranges
from .placement import Placement, bundled_placement, split_placement
from .plan import IOPlan
from .two_list import RECLAIM_PAGES, two_list_replay

DEFAULT_READAHEAD_BYTES = 128 << 10
"""Linux's default `read_ahead_kb` (128 KiB): the mmap read-around window where the device is
not at hand (simulated profiles such as the M1 Max); the real runs read the disk's own."""
PATTERNS = ("dense", "sparse")
POLICIES = ("lru", "two-list")
KERNEL_CHARGED_BYTES = 256 << 10
"""Kernel memory a memory cgroup charges beside the page cache while a mapped file faults
(page tables of the mapping, the cache's index and shadow entries, the faulting threads'
stacks). The budget minus what the cache held at the end of real one-thread runs on this
machine's kernel was 84–380 KiB (opt-mini's 4 MiB store, 1–3 MiB budgets); 256 KiB fits
the measured faults best (2 MiB: 4.1 k predicted, 4.1–4.9 k measured; 128 KiB gives
3.4 k, 384 KiB 5.1 k). The two-list model, being the kernel's, leaves it out of the cache
by default; LRU, the textbook model, not."""


class MmapLayout(Layout):
    """The store file mmap'ed; faults served by read-around through the page cache (one LRU
    list by default, or the kernel's two lists)."""

    memcpy_memory = True  # memory = rows copied out of the page cache, over memcpy bandwidth

    def __init__(self, *, pattern: str = "sparse", budget_bytes: int | None = None,
                 readahead_bytes: int = DEFAULT_READAHEAD_BYTES, threads: int = 1,
                 bundled: bool = True, name: str | None = None,
                 page_cache: str = "lru", charged_bytes: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if pattern not in PATTERNS:
            raise InputError(f"unknown access pattern {pattern!r}", key="pattern",
                             expected="'dense' or 'sparse'")
        if budget_bytes is not None and (isinstance(budget_bytes, bool) or budget_bytes <= 0):
            raise InputError(f"page-cache budget {budget_bytes} must be positive",
                             key="budget_bytes", expected="bytes > 0 (none: the whole file)")
        if readahead_bytes < 0 or readahead_bytes % self.block_bytes:
            raise InputError(f"readahead {readahead_bytes} is not a multiple of the "
                             f"{self.block_bytes}-byte page", key="readahead_bytes",
                             expected="0 (MADV_RANDOM) or whole pages such as 128k")
        if isinstance(threads, bool) or int(threads) != threads or threads < 1:
            raise InputError(f"{threads} faulting threads", key="threads",
                             expected="an integer ≥ 1")
        if page_cache not in POLICIES:
            raise InputError(f"unknown page-cache policy {page_cache!r}", key="page_cache",
                             expected=" or ".join(POLICIES))
        if charged_bytes is None:
            charged_bytes = KERNEL_CHARGED_BYTES if page_cache == "two-list" else 0
        if isinstance(charged_bytes, bool) or charged_bytes < 0:
            raise InputError(f"charged bytes {charged_bytes}", key="charged_bytes",
                             expected="bytes ≥ 0 charged to the budget beside the cache")
        self.page_cache = page_cache
        self.charged_bytes = int(charged_bytes)
        self.pattern = pattern
        self.dense_ffn = pattern == "dense"
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self.readahead_bytes = int(readahead_bytes)
        self.threads = int(threads)
        self.bundled = bool(bundled)
        self.name = name or f"mmap-{pattern}"

    def params(self) -> dict[str, Any]:
        return {"block_bytes": self.block_bytes, "pattern": self.pattern,
                "budget_bytes": self.budget_bytes, "readahead_bytes": self.readahead_bytes,
                "threads": self.threads, "bundled": self.bundled,
                "page_cache": self.page_cache, "charged_bytes": self.charged_bytes}

    def placement(self, geometry: ModelGeometry) -> Placement:
        if self.bundled:
            return bundled_placement(geometry, self.block_bytes)
        return split_placement(geometry, self.block_bytes)

    def cache_pages(self, placement: Placement) -> int:
        """Pages the budget holds beside the kernel's own charges (the whole file without a
        budget; at least one)."""
        n_pages = placement.file_bytes // self.block_bytes
        if self.budget_bytes is None:
            return n_pages
        cache_bytes = self.budget_bytes - self.charged_bytes
        return max(1, min(n_pages, cache_bytes // self.block_bytes))

    def dram_bytes(self, placement: Placement) -> int:
        """DRAM the page cache may take with the kernel's charges beside it: the budget (or
        the whole file, if smaller)."""
        charged = 0 if self.budget_bytes is None else self.charged_bytes
        return self.cache_pages(placement) * self.block_bytes + charged

    def read_ranges(self, layer: int, loads: NeuronSets, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The byte ranges a (token, layer) touches: its rows (sparse) or the layer (dense)."""
        if self.pattern == "sparse":
            return unit_ranges(layer, loads, placement)
        lo, hi = placement.layer_offset_bytes[layer], placement.layer_offset_bytes[layer + 1]
        n = len(loads)
        return (np.arange(n, dtype=np.int64), np.full(n, lo, np.int64),
                np.full(n, hi, np.int64))

    def batch_reads(self, layer: int, loads: np.ndarray, placement: Placement
                    ) -> tuple[np.ndarray, np.ndarray]:
        raise InputError(f"layout {self.name!r} reads through the page cache: its reads depend "
                         "on the cache's history (use its plan)", key="layout")

    def plan(self, trace: ActivationTrace, *, which: str = "predicted",
             geometry: ModelGeometry | None = None) -> IOPlan:
        """The faults' reads of the generated tokens, the cache starting cold."""
        sets, tokens = check_trace(trace, "active" if self.pattern == "dense" else which,
                                   geometry)
        g = trace.geometry
        T, L = len(tokens), g.n_layers
        placement = self.placement(g)
        start = int(tokens[0])
        loads = [s.slice_tokens(start, start + T) for s in sets]
        if self.pattern == "dense":
            full = np.full((T, L), g.d_ffn, np.int64)
        else:
            full = np.stack([ld.counts() for ld in loads], axis=1).astype(np.int64)
        ptr, page_lo, page_hi = self.touched_pages(loads, placement, T)
        sim = simulate_page_cache(ptr, page_lo, page_hi, placement.file_bytes // self.block_bytes,
                                  self.cache_pages(placement), self.readahead_bytes
                                  // self.block_bytes, self.page_cache)
        offset_bytes = sim["start_page"] * self.block_bytes
        length_bytes = sim["n_pages"] * self.block_bytes
        shares = None
        if self.threads > 1:  # each thread faults its own share of a batch's rows
            # a thread's first page is the page its first row starts in
            cuts = np.floor(self.share_cuts(loads, placement, T) / self.block_bytes
                            ) * self.block_bytes
            order, shares = read_shares(sim["batch_ptr"], offset_bytes, cuts)
            offset_bytes, length_bytes = offset_bytes[order], length_bytes[order]
        record = 2 * g.row_bytes
        per = lambda a: a.reshape(T, L)  # noqa: E731
        meta = {"set": "dense" if self.pattern == "dense" else which,
                "placement": placement.summary(), "trace_synthetic": trace.is_synthetic,
                "queue_depth": self.threads, "cache_pages": self.cache_pages(placement),
                "page_faults": per(sim["faults"]), "page_hits": per(sim["hits"]),
                "pages_read": per(sim["pages_read"])}
        if shares is not None:
            meta["read_shares"] = shares
        plan = IOPlan(layout=self.name, params=self.params(), geometry=g,
                      block_bytes=self.block_bytes, file_bytes=placement.file_bytes,
                      token_index=tokens, batch_ptr=sim["batch_ptr"],
                      offset_bytes=offset_bytes, length_bytes=length_bytes,
                      useful_bytes=full * record,
                      dram_resident_bytes=np.full((T, L), self.dram_bytes(placement), np.int64)
                      // L, mem_moved_bytes=full * record, neurons_loaded=full, meta=meta,
                      computed_neurons=full.copy())
        plan.validate()
        return plan

    def share_cuts(self, loads: list[NeuronSets], placement: Placement, n_tokens: int
                   ) -> np.ndarray:
        """Where each (token, layer) batch's rows are cut among the threads, as the real
        gather cuts its sorted rows (`share_bounds`; one thread for fewer rows than
        threads): n_batches × threads - 1 byte offsets, float (inf: no cut)."""
        L, T, row = len(loads), self.threads, placement.row_bytes
        cuts = np.full((n_tokens * L, T - 1), np.inf)
        for layer, ld in enumerate(loads):
            tok, start, end = self.read_ranges(layer, ld, placement)
            order = np.lexsort((start, tok))
            tok, start = tok[order], start[order]
            rows = (end[order] - start) // row  # a range holds whole rows, in file order
            if len(rows) == 0:
                continue
            ends = np.cumsum(rows)  # rows up to the end of each range, over all tokens
            per_token = np.bincount(tok, weights=rows, minlength=n_tokens).astype(np.int64)
            before = np.cumsum(per_token) - per_token
            target = before[:, None] + share_bounds(per_token, T)[:, 1:-1]
            j = np.minimum(np.searchsorted(ends, target, "right"), len(rows) - 1)
            cut = start[j] + (target - (ends[j] - rows[j])) * row
            cuts[np.arange(n_tokens) * L + layer] = np.where(per_token[:, None] >= T, cut,
                                                             np.inf)
        return cuts

    def touched_pages(self, loads: list[NeuronSets], placement: Placement, n_tokens: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(batch_ptr, first_page, end_page): per (token, layer) batch, the page runs its rows
        cover, merged and in file order (the order the gather touches them)."""
        L, P = len(loads), self.block_bytes
        batches, lows, highs = [], [], []
        for layer, ld in enumerate(loads):
            tok, start, end = self.read_ranges(layer, ld, placement)
            batches.append(tok * L + layer)
            lows.append(start // P)
            highs.append(-(-end // P))
        batch, lo, hi = (np.concatenate(a) for a in (batches, lows, highs))
        n_batches = n_tokens * L
        ptr = np.zeros(n_batches + 1, np.int64)
        if len(batch) == 0:
            return ptr, lo, hi
        order = np.lexsort((lo, batch))
        batch, lo, hi = batch[order], lo[order], hi[order]
        run_max = _running_max_per_batch(batch, hi)
        new = np.ones(len(lo), bool)
        new[1:] = (batch[1:] != batch[:-1]) | (lo[1:] > run_max[:-1])
        first = np.flatnonzero(new)
        last = np.append(first[1:], len(lo)) - 1
        np.cumsum(np.bincount(batch[first], minlength=n_batches), out=ptr[1:])
        return ptr, lo[first], run_max[last]


def share_bounds(n_rows: Any, threads: int) -> np.ndarray:
    """Row k * n // threads, k = 0 … threads: where `threads` threads' contiguous equal
    shares of n sorted rows begin (the real gather's cut and the plan's)."""
    return np.asarray(n_rows)[..., None] * np.arange(threads + 1) // threads


def read_shares(batch_ptr: np.ndarray, offset_bytes: np.ndarray, cuts: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The reads of each batch grouped by the thread whose share of the rows they fall in
    (thread w: offsets from cuts[b, w - 1] up to cuts[b, w]): (the order that groups them,
    kept stable within a share; the shares, n_batches × threads + 1 read indices, as the
    device models' `shares` take them)."""
    n_batches, threads = len(batch_ptr) - 1, cuts.shape[1] + 1
    batch = np.repeat(np.arange(n_batches), np.diff(batch_ptr))
    span = int(max(offset_bytes.max(initial=0), cuts[np.isfinite(cuts)].max(initial=0))) + 1
    keys = (np.arange(n_batches)[:, None] * span + np.minimum(cuts, span - 1)).ravel()
    share = np.searchsorted(keys, batch * span + offset_bytes, "right") - batch * (threads - 1)
    order = np.lexsort((share, batch))
    counts = np.bincount(batch * threads + share, minlength=n_batches * threads)
    shares = np.zeros((n_batches, threads + 1), np.int64)
    shares[:, 0] = batch_ptr[:-1]
    shares[:, 1:] = batch_ptr[:-1, None] + np.cumsum(counts.reshape(n_batches, threads), axis=1)
    return order, shares


def _running_max_per_batch(batch: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Running maximum of `hi` that restarts at every new batch (batch sorted)."""
    span = int(hi.max()) + 1
    return np.maximum.accumulate(batch * span + hi) - batch * span


def simulate_page_cache(batch_ptr: np.ndarray, page_lo: np.ndarray, page_hi: np.ndarray,
                        n_pages: int, capacity_pages: int, readahead_pages: int,
                        policy: str = "lru", reclaim_pages: int = RECLAIM_PAGES
                        ) -> dict[str, np.ndarray]:
    """Replay page touches through a cache of `capacity_pages` with read-around faults:
    one LRU list, or (`two-list`) the kernel's inactive and active lists (two_list.py).

    Batch b touches pages page_lo[r]..page_hi[r] for r in batch_ptr[b]..batch_ptr[b + 1], in
    order. Returns the reads (batch_ptr, start_page, n_pages: one per missing run of a
    fault's window, in fault order) and per batch the faults, hits and pages read.
    """
    args = (np.ascontiguousarray(batch_ptr, np.int64), np.ascontiguousarray(page_lo, np.int64),
            np.ascontiguousarray(page_hi, np.int64), int(n_pages), int(capacity_pages),
            int(readahead_pages))
    if policy == "two-list":
        ptr, start, length, faults, hits, pages = two_list_replay(*args, int(reclaim_pages))
    else:
        ptr, start, length, faults, hits, pages = _lru(*args)
    return {"batch_ptr": ptr, "start_page": start, "n_pages": length, "faults": faults,
            "hits": hits, "pages_read": pages}


HEAD, TAIL, SIZE = 0, 1, 2  # the LRU list's state: st[HEAD] = most recently used page


@njit(cache=True, inline="always")
def _push(st, prev, nxt, cached, p):
    """Page p enters the cache as the most recently used."""
    cached[p] = True
    prev[p] = -1
    nxt[p] = st[HEAD]
    if st[HEAD] >= 0:
        prev[st[HEAD]] = p
    st[HEAD] = p
    if st[TAIL] < 0:
        st[TAIL] = p
    st[SIZE] += 1


@njit(cache=True, inline="always")
def _touch(st, prev, nxt, p):
    """A hit: cached page p becomes the most recently used."""
    if st[HEAD] == p:
        return
    nx, pv = nxt[p], prev[p]
    nxt[pv] = nx
    if nx >= 0:
        prev[nx] = pv
    else:
        st[TAIL] = pv
    prev[p] = -1
    nxt[p] = st[HEAD]
    prev[st[HEAD]] = p
    st[HEAD] = p


@njit(cache=True, inline="always")
def _evict(st, prev, nxt, cached, capacity):
    """Drop least recently used pages until the cache fits its capacity (≥ 1 page)."""
    while st[SIZE] > capacity:
        t = st[TAIL]
        st[TAIL] = prev[t]
        nxt[st[TAIL]] = -1
        prev[t] = -1
        cached[t] = False
        st[SIZE] -= 1


@njit(cache=True, inline="always")
def _fault(st, prev, nxt, cached, p, lo, hi, out_start, out_len, n_out):
    """Read the missing runs of window [lo, hi) around faulting page p (one read per run,
    appended at n_out); the window's pages enter in file order, p last. Returns (n_out,
    pages read)."""
    read = 0
    q = lo
    while q < hi:
        if cached[q]:
            q += 1
            continue
        s = q
        while q < hi and not cached[q]:
            q += 1
        out_start[n_out] = s
        out_len[n_out] = q - s
        n_out += 1
        read += q - s
        for k in range(s, q):
            if k != p:
                _push(st, prev, nxt, cached, k)
    _push(st, prev, nxt, cached, p)
    return n_out, read


@njit(cache=True)
def _grow(a, n):
    out = np.zeros(max(2 * len(a), n), np.int64)
    out[:len(a)] = a
    return out


@njit(cache=True)
def _lru(batch_ptr, page_lo, page_hi, n_pages, capacity, ra_pages):
    """The page-cache replay (see `simulate_page_cache`): a doubly linked LRU list over
    pages."""
    n_batches = len(batch_ptr) - 1
    prev = np.full(n_pages, -1, np.int64)
    nxt = np.full(n_pages, -1, np.int64)
    cached = np.zeros(n_pages, np.bool_)
    st = np.array([-1, -1, 0], np.int64)
    out_ptr = np.zeros(n_batches + 1, np.int64)
    out_start = np.zeros(1024, np.int64)
    out_len = np.zeros(1024, np.int64)
    n_out = 0
    faults = np.zeros(n_batches, np.int64)
    hits = np.zeros(n_batches, np.int64)
    pages_read = np.zeros(n_batches, np.int64)
    window = min(max(ra_pages, 1), capacity)  # a window never outgrows the cache
    for b in range(n_batches):
        for r in range(batch_ptr[b], batch_ptr[b + 1]):
            for p in range(page_lo[r], page_hi[r]):
                if cached[p]:
                    hits[b] += 1
                    _touch(st, prev, nxt, p)
                    continue
                faults[b] += 1
                lo = max(0, p - ra_pages // 2, p - window + 1)  # read-around: centred on p
                hi = min(n_pages, lo + window)
                if n_out + window + 1 > len(out_start):
                    out_start = _grow(out_start, n_out + window + 1)
                    out_len = _grow(out_len, n_out + window + 1)
                n_out, read = _fault(st, prev, nxt, cached, p, lo, hi, out_start, out_len,
                                     n_out)
                pages_read[b] += read
                _evict(st, prev, nxt, cached, capacity)
        out_ptr[b + 1] = n_out
    return out_ptr, out_start[:n_out], out_len[:n_out], faults, hits, pages_read
