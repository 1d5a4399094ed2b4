"""The mmap baseline's page-cache replay: LRU hits and misses, read-around, eviction order,
and the plans of the dense and sparse patterns."""

import numpy as np
import pytest

from flashsim.data import REFERENCE_TRACE
from flashsim.errors import InputError
from flashsim.layout.mmap import read_shares, share_bounds, simulate_page_cache
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace
from flashsim.validation.mmap import batch_rows


def replay(batches, n_pages, capacity, ra, policy="lru", reclaim_pages=1):
    """Batches of single-page touches, in order (the two lists reclaiming one page at a
    time unless told otherwise, so small caches can be followed by hand)."""
    ptr = np.cumsum([0] + [len(b) for b in batches])
    pages = np.array([p for b in batches for p in b], np.int64)
    return simulate_page_cache(ptr, pages, pages + 1, n_pages, capacity, ra, policy,
                               reclaim_pages)


def reads(sim):
    return list(zip(sim["start_page"].tolist(), sim["n_pages"].tolist()))


def test_hits_and_misses_without_readahead():
    sim = replay([[0, 1, 0], [1, 2]], 8, 4, 0)
    assert sim["faults"].tolist() == [2, 1] and sim["hits"].tolist() == [1, 1]
    assert reads(sim) == [(0, 1), (1, 1), (2, 1)]
    assert sim["batch_ptr"].tolist() == [0, 2, 3]


def test_eviction_takes_the_least_recently_used():
    # capacity 2: 0, 1, then 0 again (1 is now the LRU), 2 evicts 1; then 0 hits and 1
    # misses, evicting 2 (0 was used since)
    sim = replay([[0, 1, 0, 2], [0, 1], [0, 2]], 8, 2, 0)
    assert sim["faults"].tolist() == [3, 1, 1]
    assert sim["hits"].tolist() == [1, 1, 1]


def test_two_lists_keep_a_page_young_at_two_scans_that_lru_evicts():
    # cache of 4: page 1 is young at the first scan (its fault) and again at the next (a
    # touch in between): the kernel activates it; four cold pages later LRU has evicted it
    seq = [[0, 1, 2, 3], [4], [1], [5], [6], [7], [8], [1]]
    assert replay(seq, 64, 4, 0)["faults"].tolist() == [4, 1, 0, 1, 1, 1, 1, 1]
    assert replay(seq, 64, 4, 0, "two-list")["faults"].tolist() == [4, 1, 0, 1, 1, 1, 1, 0]


def test_the_kernel_reclaims_whole_clusters_of_pages():
    # 65 cold pages into a cache of 64: LRU drops page 0 alone. The kernel scans clusters
    # of 32 at falling priority: rounds of 1, 2, 4, ... 32 pages give pages 0..62 their
    # second trip, then the first full round evicts 0..30 (63 goes round) and, 31 < 32,
    # scans one more whole cluster, 31..62: only 63 and 64 stay
    seq = [list(range(65)), [63, 64], [62]]
    assert replay(seq, 128, 64, 0)["faults"].tolist() == [65, 0, 0]
    two = replay(seq, 128, 64, 0, "two-list", reclaim_pages=32)
    assert two["faults"].tolist() == [65, 0, 1]


def test_a_page_used_again_after_deactivation_is_reactivated_at_its_next_scan():
    # cache of 4: 1, 2, 3 are activated, so the active list outgrows the inactive one and
    # sends 1 (then 2) back. 1 keeps its mark: touched once more, it is activated again at
    # its next scan instead of getting a second trip, and outlives four cold pages
    seq = [[0, 1, 2, 3], [4], [1, 2, 3], [5], [1], [6], [7], [8], [9], [1]]
    assert replay(seq, 64, 4, 0, "two-list")["faults"].tolist() == [4, 1, 0, 1, 0, 1, 1,
                                                                     1, 1, 0]
    assert replay(seq, 64, 4, 0)["faults"].tolist()[-1] == 1  # LRU: long gone


def test_a_loop_larger_than_the_cache_faults_on_every_page_in_both():
    # one touch per page per loop is never young at two scans: the kernel thrashes as LRU
    # does (a dense gather's measured fault counts match LRU's)
    loop = [list(range(8))] * 5
    for policy in ("lru", "two-list"):
        for reclaim in (1, 2):
            assert replay(loop, 8, 6, 0, policy, reclaim)["faults"].tolist() == [8] * 5


def test_two_lists_agree_with_lru_while_everything_fits():
    batches = [[3, 1, 4, 1, 5], [9, 2, 6, 5, 3], [5, 8, 9, 7, 9]]
    for ra in (0, 4):
        lru, two = replay(batches, 16, 16, ra), replay(batches, 16, 16, ra, "two-list")
        for key in ("faults", "hits", "pages_read", "start_page", "n_pages", "batch_ptr"):
            assert lru[key].tolist() == two[key].tolist()


def test_read_around_reads_the_missing_runs_of_the_window():
    sim = replay([[8], [10], [3]], 32, 32, 8)  # window 8 pages centred: [4, 12)
    assert reads(sim)[0] == (4, 8)
    assert sim["faults"].tolist() == [1, 0, 1]  # page 10 was read around page 8
    assert reads(sim)[1] == (0, 4)  # [0, 8) minus the cached [4, 8)
    assert sim["pages_read"].tolist() == [8, 0, 4]


def test_window_is_clipped_to_the_file_and_the_cache():
    assert reads(replay([[1]], 4, 4, 8)) == [(0, 4)]
    assert reads(replay([[10]], 32, 2, 8)) == [(9, 2)]  # cache of 2: [p - 1, p + 1)


def test_big_budget_misses_cold_pages_on_the_first_token_only():
    trace = ActivationTrace.load(REFERENCE_TRACE).head(8)
    plan = make_layout("mmap-sparse", readahead_bytes=0).plan(trace)
    faults = plan.meta["page_faults"].sum(axis=1)
    touched_first = plan.meta["page_faults"][0].sum()
    assert touched_first > 0 and plan.bytes_per_token()[0] == touched_first * 4096
    # later tokens fault only on pages no earlier token touched (cold misses)
    assert np.all(plan.meta["page_hits"][1:].sum() > 0) and faults.sum() <= 1024


def test_dense_reads_the_whole_file_every_token_when_the_cache_is_small():
    trace = ActivationTrace.load(REFERENCE_TRACE).head(6)
    lay = make_layout("mmap-dense", budget_bytes=1 << 20, page_cache="lru")
    plan = lay.plan(trace)
    file_bytes = lay.placement(trace.geometry).file_bytes
    assert np.all(plan.bytes_per_token() == file_bytes)
    # the kernel's reclaim also takes read-around pages not yet touched: a little more
    kernel = make_layout("mmap-dense", budget_bytes=1 << 20,
                         page_cache="two-list").plan(trace).bytes_per_token()
    assert np.all((kernel >= file_bytes) & (kernel < 1.05 * file_bytes))
    assert plan.dram_resident_bytes[0].sum() == 1 << 20
    whole = make_layout("mmap-dense").plan(trace)
    assert whole.bytes_per_token()[0] == file_bytes and whole.bytes_per_token()[1:].sum() == 0


def test_sparse_plan_reads_less_than_dense_and_copies_its_rows():
    trace = ActivationTrace.load(REFERENCE_TRACE).head(6)
    plan = make_layout("mmap-sparse", budget_bytes=1 << 20, readahead_bytes=0).plan(trace)
    assert plan.bytes_per_token().max() < plan.file_bytes
    assert np.array_equal(plan.mem_moved_bytes, plan.neurons_loaded * 2 * 512)
    plan.validate()


@pytest.mark.parametrize("bad", [{"budget_bytes": 0}, {"readahead_bytes": 1000},
                                 {"threads": 0}, {"window": 3}, {"page_cache": "fifo"},
                                 {"charged_bytes": -1}, {"charged_bytes": True}])
def test_bad_parameters_are_input_errors(bad):
    with pytest.raises(InputError):
        make_layout("mmap-sparse", **bad)


def test_the_page_cache_policy_is_a_layout_parameter():
    trace = ActivationTrace.load(REFERENCE_TRACE).head(16)
    plans = {p: make_layout("mmap-sparse", budget_bytes=1 << 20, readahead_bytes=0,
                            page_cache=p).plan(trace) for p in ("lru", "two-list")}
    assert plans["two-list"].params["page_cache"] == "two-list"
    touched = {p: (plan.meta["page_faults"] + plan.meta["page_hits"]).sum()
               for p, plan in plans.items()}
    assert touched["lru"] == touched["two-list"] > 0  # the same touches, other evictions


def test_the_kernels_own_charges_come_out_of_the_cache_not_out_of_the_budget():
    trace = ActivationTrace.load(REFERENCE_TRACE).head(4)
    placement = make_layout("mmap-sparse").placement(trace.geometry)
    lru = make_layout("mmap-sparse", budget_bytes=1 << 20, page_cache="lru")
    kernel = make_layout("mmap-sparse", budget_bytes=1 << 20, page_cache="two-list")
    bare = make_layout("mmap-sparse", budget_bytes=1 << 20, page_cache="two-list",
                       charged_bytes=0)
    assert lru.cache_pages(placement) == bare.cache_pages(placement) == 256
    assert kernel.cache_pages(placement) == 256 - 64  # 256 KiB of page tables and index
    assert {lay.dram_bytes(placement) for lay in (lru, kernel, bare)} == {1 << 20}
    assert make_layout("mmap-sparse", page_cache="two-list").cache_pages(placement) == (
        placement.file_bytes // 4096)  # no budget: the whole file, nothing charged


def test_reads_are_grouped_by_the_thread_whose_rows_they_fall_in():
    """Batch 0 cut at 100 and 300 (three threads), batch 1 has too few rows to cut (inf):
    each read goes to the share its offset falls in; the order keeps a share's reads in
    file order; a share's first read may start exactly at its cut."""
    ptr = np.array([0, 5, 7])
    offsets = np.array([0, 100, 50, 400, 300, 10, 20])
    cuts = np.array([[100.0, 300.0], [np.inf, np.inf]])
    order, shares = read_shares(ptr, offsets, cuts)
    assert offsets[order].tolist() == [0, 50, 100, 400, 300, 10, 20]
    assert shares.tolist() == [[0, 2, 3, 5], [5, 7, 7, 7]]


@pytest.mark.parametrize("pattern", ["mmap-sparse", "mmap-dense"])
def test_a_plan_of_several_threads_cuts_each_batch_among_them(pattern):
    """The plan cuts each batch where the real gather does (its sorted store rows cut into
    equal parts, validation/mmap.py), and every read lies in its thread's part (at or after
    the page of its first row, before the next thread's); one thread: no shares."""
    trace = ActivationTrace.load(REFERENCE_TRACE)
    layout = make_layout(pattern, threads=4, budget_bytes=2 << 20, readahead_bytes=0)
    plan = layout.plan(trace)
    shares = plan.meta["read_shares"]
    assert shares.shape == (len(plan.batch_ptr) - 1, 5)
    np.testing.assert_array_equal(shares[:, 0], plan.batch_ptr[:-1])
    np.testing.assert_array_equal(shares[:, -1], plan.batch_ptr[1:])
    placement = layout.placement(trace.geometry)
    start = int(plan.token_index[0])
    loads = [s.slice_tokens(start, start + plan.n_tokens)
             for s in (trace.active if pattern == "mmap-dense" else trace.predicted)]
    cuts = layout.share_cuts(loads, placement, plan.n_tokens)
    real_rows = batch_rows(layout, trace, "predicted", placement)  # what the gather takes
    assert len(real_rows) == len(cuts)
    row_bytes = trace.geometry.row_bytes
    for b, idx in enumerate(real_rows):
        if len(idx) < 4:  # one thread gathers it all
            assert np.all(np.isinf(cuts[b]))
        else:
            first_rows = idx[share_bounds(len(idx), 4)[1:-1]]
            np.testing.assert_array_equal(cuts[b], first_rows * row_bytes)
    pages = np.floor(cuts / 4096) * 4096
    bounds = np.column_stack([np.full(len(cuts), -np.inf), pages, np.full(len(cuts), np.inf)])
    for b in range(len(shares)):
        for w in range(4):
            off = plan.offset_bytes[shares[b, w]:shares[b, w + 1]]
            assert np.all(off >= bounds[b, w]) and np.all(off < bounds[b, w + 1])
    assert np.mean(np.count_nonzero(np.diff(shares, axis=1), axis=1) > 1) > 0.5
    one = make_layout(pattern, threads=1, budget_bytes=2 << 20, readahead_bytes=0).plan(trace)
    assert "read_shares" not in one.meta
    assert sorted(one.offset_bytes.tolist()) == sorted(plan.offset_bytes.tolist())
