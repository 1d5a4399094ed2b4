"""The Linux page cache's two lists for file pages: what evicts an mmap'ed file in a memory
cgroup at its limit (the classic active/inactive reclaim, not the multi-generational LRU).

A page that faults in joins the head of the inactive list. When a new page would exceed the
limit, reclaim frees `reclaim_pages` (the kernel's SWAP_CLUSTER_MAX, 32) in one go, scanning
the inactive tail in rounds of growing priority (size >> 12, >> 11, ...):
- a page touched since the last scan (its page-table entry "young") that was marked before
  (PG_referenced) is activated and stays marked; one young for the first time is marked and
  goes round again; an untouched one leaves, and its shadow remembers the eviction clock;
- the active list's tail moves back to the inactive head (young bit cleared, mark kept, so a
  page used again is re-activated at its next scan) while the inactive list is the shorter,
  or when pages were re-activated on refault since the last reclaim;
- a page that faults back within a refault distance (evictions and refault activations since
  its own eviction) no longer than the active list joins the active list directly.
A page-table access sets only the young bit, so a page is activated when it is young at two
scans, not by two touches between them. Pure LRU evicts by the last touch alone.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NONE, INACTIVE, ACTIVE = 0, 1, 2
HEAD, TAIL, SIZE = 0, 1, 2  # rows of `lists` (columns: NONE, INACTIVE, ACTIVE)
PREV, NEXT, WHERE, SHADOW = 0, 1, 2, 3  # rows of `pages`; SHADOW −1: never evicted
YOUNG, MARKED = 0, 1  # rows of `bits`: the page-table young bit, PG_referenced
AGE, REFAULTED = 0, 1  # `clock`: evictions + refault activations; refaults since reclaim
RECLAIM_PAGES = 32
"""Pages one charge over the limit reclaims (SWAP_CLUSTER_MAX)."""
TOP_PRIORITY = 12
"""Reclaim scans size >> priority pages per round, from this priority down to 0."""


@njit(cache=True, inline="always")
def _push(lists, pages, p, lst):
    """Page p joins the head of list `lst`."""
    pages[WHERE, p] = lst
    pages[PREV, p] = -1
    pages[NEXT, p] = lists[HEAD, lst]
    if lists[HEAD, lst] >= 0:
        pages[PREV, lists[HEAD, lst]] = p
    lists[HEAD, lst] = p
    if lists[TAIL, lst] < 0:
        lists[TAIL, lst] = p
    lists[SIZE, lst] += 1


@njit(cache=True, inline="always")
def _unlink(lists, pages, p):
    """Page p leaves its list."""
    lst = pages[WHERE, p]
    pv, nx = pages[PREV, p], pages[NEXT, p]
    if pv >= 0:
        pages[NEXT, pv] = nx
    else:
        lists[HEAD, lst] = nx
    if nx >= 0:
        pages[PREV, nx] = pv
    else:
        lists[TAIL, lst] = pv
    lists[SIZE, lst] -= 1
    pages[WHERE, p] = NONE


@njit(cache=True)
def _scan_inactive(n, lists, pages, bits, clock):
    """Scan up to n pages off the inactive tail; returns how many were evicted."""
    evicted = 0
    for _ in range(n):
        t = lists[TAIL, INACTIVE]
        if t < 0:
            break
        _unlink(lists, pages, t)
        if bits[YOUNG, t]:
            bits[YOUNG, t] = False
            was_marked = bits[MARKED, t]
            bits[MARKED, t] = True
            _push(lists, pages, t, ACTIVE if was_marked else INACTIVE)
        else:
            bits[MARKED, t] = False
            pages[SHADOW, t] = clock[AGE]
            clock[AGE] += 1
            evicted += 1
    return evicted


@njit(cache=True)
def _deactivate(n, lists, pages, bits):
    """Move up to n pages off the active tail to the inactive head (young bit cleared)."""
    for _ in range(n):
        t = lists[TAIL, ACTIVE]
        if t < 0:
            break
        _unlink(lists, pages, t)
        bits[YOUNG, t] = False
        _push(lists, pages, t, INACTIVE)


@njit(cache=True)
def _reclaim(lists, pages, bits, clock, want):
    """One reclaim: rounds of falling priority, each scanning batches of `want` pages, until
    `want` pages are evicted (a batch is scanned whole, as the kernel isolates it)."""
    shrink_active = clock[REFAULTED] > 0 or lists[SIZE, INACTIVE] < lists[SIZE, ACTIVE]
    clock[REFAULTED] = 0
    evicted = 0
    for priority in range(TOP_PRIORITY, -1, -1):
        n_inactive = lists[SIZE, INACTIVE] >> priority
        n_active = lists[SIZE, ACTIVE] >> priority if shrink_active else 0
        while n_inactive > 0 or n_active > 0:
            k = min(n_inactive, want)
            evicted += _scan_inactive(k, lists, pages, bits, clock)
            n_inactive -= k
            k = min(n_active, want)
            _deactivate(k, lists, pages, bits)
            n_active -= k
            if evicted >= want:
                return


@njit(cache=True)
def _insert(lists, pages, bits, clock, q, capacity, want):
    """Page q enters the cache (reclaiming first if it would not fit): on the active list
    if it refaults within the active list's size, else on the inactive one."""
    while lists[SIZE, INACTIVE] + lists[SIZE, ACTIVE] >= capacity:
        _reclaim(lists, pages, bits, clock, min(want, capacity))
    lst = INACTIVE
    if pages[SHADOW, q] >= 0 and clock[AGE] - pages[SHADOW, q] <= lists[SIZE, ACTIVE]:
        lst = ACTIVE
        clock[AGE] += 1
        clock[REFAULTED] += 1
    _push(lists, pages, q, lst)


@njit(cache=True)
def two_list_replay(batch_ptr, page_lo, page_hi, n_pages, capacity, ra_pages,
                    reclaim_pages=RECLAIM_PAGES):
    """`mmap.simulate_page_cache`'s replay with the two lists instead of one LRU: the same
    read-around faults, the same outputs (reads per batch; faults, hits, pages read)."""
    n_batches = len(batch_ptr) - 1
    lists = np.full((3, 3), -1, np.int64)
    lists[SIZE] = 0
    pages = np.full((4, n_pages), -1, np.int64)
    pages[WHERE] = NONE
    bits = np.zeros((2, n_pages), np.bool_)
    clock = np.zeros(2, np.int64)
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
                if pages[WHERE, p] != NONE:
                    hits[b] += 1
                    bits[YOUNG, p] = True
                    continue
                faults[b] += 1
                lo = max(0, p - ra_pages // 2, p - window + 1)  # read-around: centred on p
                hi = min(n_pages, lo + window)
                q = lo
                while q < hi:
                    if pages[WHERE, q] != NONE:
                        q += 1
                        continue
                    s = q
                    while q < hi and pages[WHERE, q] == NONE:
                        _insert(lists, pages, bits, clock, q, capacity, reclaim_pages)
                        if q == p:  # the faulting access maps it as soon as it is read
                            bits[YOUNG, p] = True
                        q += 1
                    if n_out == len(out_start):
                        out_start = np.concatenate((out_start, np.zeros(n_out, np.int64)))
                        out_len = np.concatenate((out_len, np.zeros(n_out, np.int64)))
                    out_start[n_out] = s
                    out_len[n_out] = q - s
                    n_out += 1
                    pages_read[b] += q - s
        out_ptr[b + 1] = n_out
    return out_ptr, out_start[:n_out], out_len[:n_out], faults, hits, pages_read
