"""The Linux page cache's two lists for file pages, simplified: what evicts an mmap'ed file.

A page that faults in joins the head of the inactive list. Reclaim scans the inactive
list from its tail: a page touched since the last scan (its page-table entry "young") that
was touched before too (PG_referenced) moves to the active list; one touched once gets a
second trip (referenced, back to the head); an untouched one leaves. The active list is
kept no longer than the inactive one: its tail moves back to the inactive head, untouched.
A page-table access sets only a "young" bit, so a page is activated when it is young at
two scans in a row, not by two touches between them. Pure LRU evicts by the last touch
alone; the two lists protect what stays in use across scans. (The kernel's refault-
distance activation of recently evicted pages is left out.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE, INACTIVE, ACTIVE = 0, 1, 2


@njit(cache=True, inline="always")
def _push(heads, tails, sizes, prev, nxt, where, p, lst):
    """Page p joins the head of list `lst`."""
    where[p] = lst
    prev[p] = -1
    nxt[p] = heads[lst]
    if heads[lst] >= 0:
        prev[heads[lst]] = p
    heads[lst] = p
    if tails[lst] < 0:
        tails[lst] = p
    sizes[lst] += 1


@njit(cache=True, inline="always")
def _unlink(heads, tails, sizes, prev, nxt, where, p):
    """Page p leaves its list."""
    lst = where[p]
    pv, nx = prev[p], nxt[p]
    if pv >= 0:
        nxt[pv] = nx
    else:
        heads[lst] = nx
    if nx >= 0:
        prev[nx] = pv
    else:
        tails[lst] = pv
    sizes[lst] -= 1
    where[p] = NONE


@njit(cache=True)
def _reclaim(heads, tails, sizes, prev, nxt, where, young, referenced, capacity):
    """Shrink to `capacity` pages: balance the lists, then scan the inactive tail."""
    while sizes[INACTIVE] + sizes[ACTIVE] > capacity:
        while sizes[ACTIVE] > sizes[INACTIVE]:  # deactivate: back to inactive, untouched
            t = tails[ACTIVE]
            _unlink(heads, tails, sizes, prev, nxt, where, t)
            young[t] = False
            referenced[t] = False
            _push(heads, tails, sizes, prev, nxt, where, t, INACTIVE)
        t = tails[INACTIVE]
        _unlink(heads, tails, sizes, prev, nxt, where, t)
        if young[t]:
            young[t] = False
            if referenced[t]:
                referenced[t] = False
                _push(heads, tails, sizes, prev, nxt, where, t, ACTIVE)
            else:
                referenced[t] = True
                _push(heads, tails, sizes, prev, nxt, where, t, INACTIVE)
        else:
            referenced[t] = False  # evicted


@njit(cache=True)
def two_list_replay(batch_ptr, page_lo, page_hi, n_pages, capacity, ra_pages):
    """`mmap.simulate_page_cache`'s replay with the two lists instead of one LRU: the same
    read-around faults, the same outputs (reads per batch; faults, hits, pages read)."""
    n_batches = len(batch_ptr) - 1
    heads = np.full(3, -1, np.int64)
    tails = np.full(3, -1, np.int64)
    sizes = np.zeros(3, np.int64)
    prev = np.full(n_pages, -1, np.int64)
    nxt = np.full(n_pages, -1, np.int64)
    where = np.zeros(n_pages, np.int64)
    young = np.zeros(n_pages, np.bool_)
    referenced = np.zeros(n_pages, np.bool_)
    out_ptr = np.zeros(n_batches + 1, np.int64)
    out_start = np.zeros(max(16, len(page_lo)), np.int64)
    out_len = np.zeros(max(16, len(page_lo)), np.int64)
    n_out = 0
    faults = np.zeros(n_batches, np.int64)
    hits = np.zeros(n_batches, np.int64)
    pages_read = np.zeros(n_batches, np.int64)
    window = min(max(ra_pages, 1), capacity)
    for b in range(n_batches):
        for r in range(batch_ptr[b], batch_ptr[b + 1]):
            for p in range(page_lo[r], page_hi[r]):
                if where[p] != NONE:
                    hits[b] += 1
                    young[p] = True
                    continue
                faults[b] += 1
                lo = max(0, p - ra_pages // 2, p - window + 1)  # read-around: centred on p
                hi = min(n_pages, lo + window)
                q = lo
                while q < hi:
                    if where[q] != NONE:
                        q += 1
                        continue
                    s = q
                    while q < hi and where[q] == NONE:
                        _push(heads, tails, sizes, prev, nxt, where, q, INACTIVE)
                        q += 1
                    if n_out == len(out_start):
                        out_start = np.concatenate((out_start, np.zeros(n_out, np.int64)))
                        out_len = np.concatenate((out_len, np.zeros(n_out, np.int64)))
                    out_start[n_out] = s
                    out_len[n_out] = q - s
                    n_out += 1
                    pages_read[b] += q - s
                young[p] = True  # the faulting access maps it
                _reclaim(heads, tails, sizes, prev, nxt, where, young, referenced, capacity)
        out_ptr[b + 1] = n_out
    return out_ptr, out_start[:n_out], out_len[:n_out], faults, hits, pages_read
