"""Layouts on hand-made traces: exact reads and bytes, windowing, budget, memory management."""

import numpy as np
import pytest

from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.align import align_merge
from flashsim.layout.registry import make_layout
from flashsim.layout.window import run_window
from flashsim.trace.format import ActivationTrace

# fp16 rows of 2048 values are 4 KiB: one row = one block, so counts are exact
BLOCK_GEOM = ModelGeometry("hand-block", 1, 2048, 16, 2)
ROW = 4096


def hand_trace(sets_per_layer, geometry=BLOCK_GEOM, n_prompt=1):
    layers = [NeuronSets.from_lists(s) for s in sets_per_layer]
    n = len(sets_per_layer[0])
    return ActivationTrace(geometry, np.arange(n), n_prompt, layers, layers, {"name": "hand"})


def reads(plan, token, layer=0):
    off, length = plan.batch_reads(token, layer)
    return off.tolist(), length.tolist()


def test_sparse_reads_fc1_rows_and_fc2_columns_from_two_matrices():
    plan = make_layout("sparse").plan(hand_trace([[[0], [1, 5], [3]]]))
    fc2 = 16 * ROW  # the fc2 region starts after 16 fc1 rows
    assert reads(plan, 0) == ([1 * ROW, 5 * ROW, fc2 + 1 * ROW, fc2 + 5 * ROW], [ROW] * 4)
    assert reads(plan, 1) == ([3 * ROW, fc2 + 3 * ROW], [ROW] * 2)
    assert plan.bytes_per_token().tolist() == [4 * ROW, 2 * ROW]
    assert plan.neurons_loaded.ravel().tolist() == [2, 1]
    assert plan.read_amplification() == 1.0
    assert plan.token_index.tolist() == [1, 2]  # the prompt token is not planned


def test_bundling_halves_the_reads_of_sparse_for_the_same_neurons():
    trace = hand_trace([[[0], [1, 5, 9], [3, 12]]])
    sparse, bundled = make_layout("sparse").plan(trace), make_layout("bundled").plan(trace)
    assert sparse.reads_per_token().tolist() == [6, 4]
    assert bundled.reads_per_token().tolist() == [3, 2]
    assert np.array_equal(bundled.bytes_per_token(), sparse.bytes_per_token())
    assert reads(bundled, 0) == ([1 * 2 * ROW, 5 * 2 * ROW, 9 * 2 * ROW], [2 * ROW] * 3)


def test_adjacent_records_merge_into_one_read():
    plan = make_layout("bundled").plan(hand_trace([[[0], [4, 5, 6, 9]]]))
    assert reads(plan, 0) == ([4 * 2 * ROW, 9 * 2 * ROW], [3 * 2 * ROW, 2 * ROW])


def test_small_rows_are_widened_to_the_block():
    g = ModelGeometry("hand-small", 1, 256, 16, 2)  # 512-byte rows, 1 KiB records
    plan = make_layout("bundled").plan(hand_trace([[[0], [3], [3, 4], [0, 9]]], g))
    assert reads(plan, 0) == ([0], [4096])  # bytes 3072..4096 → block 0
    assert reads(plan, 1) == ([0], [8192])  # 3072..5120 → blocks 0 and 1, one read
    assert reads(plan, 2) == ([0, 8192], [4096, 4096])
    assert plan.read_amplification() == pytest.approx((4096 + 8192 + 8192) / (5 * 1024))


def test_naive_reads_whole_layers_in_chunks_and_hybrid_half():
    g = ModelGeometry("hand-2l", 2, 2048, 16, 2)
    trace = hand_trace([[[0], [1], [2]], [[0], [1], [2]]], g)
    naive = make_layout("naive", chunk_bytes=32768).plan(trace)
    layer_bytes = 2 * 16 * ROW
    assert naive.reads_per_batch().tolist() == [[4, 4], [4, 4]]
    off, length = naive.batch_reads(0, 1)
    assert off.tolist() == [layer_bytes + i * 32768 for i in range(4)]
    assert length.tolist() == [32768] * 4
    hybrid = make_layout("hybrid", chunk_bytes=32768).plan(trace)
    # neurons 8..15 of fc1 (bytes 32k..64k) and of fc2 (96k..128k)
    assert reads(hybrid, 0) == ([32768, 98304], [32768, 32768])
    assert hybrid.dram_resident_bytes[0, 0] == 8 * 2 * ROW
    assert naive.mem_moved_bytes.sum() == 0


def brute_window(sets, k, first):
    """Reference: W_{t-1} as Python sets, loads = S_t - W_{t-1}."""
    loads, resident = [], []
    for t in range(first, len(sets)):
        before = set().union(*sets[max(0, t - k):t]) if t else set()
        loads.append(sorted(set(sets[t]) - before))
        resident.append(len(set().union(*sets[max(0, t - k + 1):t + 1])))
    return loads, resident


def random_sets(seed, n_tokens=40, d=16):
    rng = np.random.default_rng(seed)
    hot = rng.random(d) ** 2
    return [sorted(np.flatnonzero(rng.random(d) < hot * 0.6).tolist()) for _ in range(n_tokens)]


@pytest.mark.parametrize("k", [1, 2, 5])
def test_windowing_reads_only_what_is_not_resident(k):
    sets = random_sets(k)
    w = run_window(NeuronSets.from_lists(sets), 16, 4, k)
    want_loads, want_resident = brute_window(sets, k, 4)
    assert [w.loads[i].tolist() for i in range(len(want_loads))] == want_loads
    assert w.resident_neurons.tolist() == want_resident


def test_window_longer_than_the_trace_reads_each_neuron_once():
    sets = random_sets(7)
    trace = hand_trace([sets], n_prompt=0)
    plan = make_layout("windowed+bundled", window=len(sets)).plan(trace)
    w = run_window(NeuronSets.from_lists(sets), 16, 0, len(sets))
    union = sorted(set().union(*sets))
    assert sorted(w.loads.ids.tolist()) == union  # each once
    assert plan.neurons_loaded.sum() == len(union)


def test_the_prompt_warms_the_window():
    trace = hand_trace([[[1, 2], [3], [1, 3, 4]]], n_prompt=2)
    plan = make_layout("windowed+bundled", window=2).plan(trace)
    assert plan.neurons_loaded.ravel().tolist() == [1]  # only neuron 4
    assert reads(plan, 0) == ([4 * 2 * ROW], [2 * ROW])


def test_dram_budget_shrinks_the_window_and_is_never_exceeded():
    sets = random_sets(3, n_tokens=60)
    record = 2 * ROW
    budget_rows = 9
    plan = make_layout("windowed", window=6, dram_budget_bytes=budget_rows * record).plan(
        hand_trace([sets], n_prompt=0))
    assert plan.dram_resident_bytes.max() <= budget_rows * record
    k = plan.meta["window_per_token"][:, 0]
    assert k.min() < 6 and k.max() > 1
    assert np.all(np.diff(k) <= 1)  # regrows one token at a time
    for t in range(len(sets)):  # resident = union of the last k_t sets
        assert plan.dram_resident_bytes[t, 0] == record * len(set().union(
            *sets[max(0, t - k[t] + 1):t + 1]))


def test_budget_smaller_than_one_token_is_an_input_error():
    with pytest.raises(InputError, match="dram_budget_bytes"):
        make_layout("windowed", dram_budget_bytes=2 * 2 * ROW).plan(
            hand_trace([[[0], [1, 2, 3]]]))


def brute_moves(sets, k):
    """The paper's matrix as a Python list: each deleted row below the new end is overwritten
    by a surviving row from above it (in row order), the tail is cut, new rows appended."""
    rows, moved = [], []
    for t in range(len(sets)):
        keep = set().union(*sets[max(0, t - k + 1):t + 1])
        end = sum(x in keep for x in rows)
        holes = [r for r in range(end) if rows[r] not in keep]
        movers = [x for x in rows[end:] if x in keep]
        for r, x in zip(holes, movers):
            rows[r] = x
        rows = rows[:end]
        new = [x for x in sets[t] if x not in rows]
        rows.extend(new)
        moved.append(len(holes) + len(new))
    return moved


def test_memory_management_counts_moves_and_inserts():
    w = run_window(NeuronSets.from_lists([[0, 1, 2, 3], [0, 3, 5]]), 16, 0, 1)
    assert w.moved_rows.tolist() == [4, 2]  # 4 inserted; then neuron 3 moved into 1's row + 5
    for k in (1, 3):
        sets = random_sets(10 + k)
        w = run_window(NeuronSets.from_lists(sets), 16, 0, k)
        assert w.moved_rows.tolist() == brute_moves(sets, k)


def test_sparse_memory_inserts_every_loaded_row():
    plan = make_layout("sparse").plan(hand_trace([[[0], [1, 5], [3]]]))
    assert plan.mem_moved_bytes.ravel().tolist() == [2 * 2 * ROW, 1 * 2 * ROW]


@pytest.mark.parametrize("name, kwargs", [
    ("nope", {}), ("windowed", {"window": 0}), ("windowed", {"window": -3}),
    ("sparse", {"window": 4}), ("bundled", {"block_bytes": 3000}),
    ("windowed", {"merge_gap_bytes": -1})])
def test_bad_layout_parameters_are_input_errors(name, kwargs):
    with pytest.raises(InputError):
        make_layout(name, **kwargs).plan(hand_trace([[[0], [1]]]))


def test_geometry_mismatch_is_an_input_error():
    trace = hand_trace([[[0], [1]]])
    other = ModelGeometry("other", 1, 1024, 16, 2)
    with pytest.raises(InputError, match="geometry"):
        make_layout("bundled").plan(trace, geometry=other)
    train = hand_trace([[[0], [1]]], other)
    with pytest.raises(InputError, match="geometry"):
        make_layout("coactivation", train_trace=train).plan(trace)


def test_align_merge_merges_overlaps_and_gaps_never_across_batches():
    batch = np.array([0, 0, 0, 1, 1])
    start = np.array([8192, 100, 4000, 0, 20480])
    end = start + np.array([10, 200, 200, 4096, 4096])
    ptr, off, length = align_merge(batch, start, end, n_batches=2, block_bytes=4096)
    assert ptr.tolist() == [0, 1, 3]  # 0..300 and 4000..4200 overlap, 8192.. touches them
    assert off.tolist() == [0, 0, 20480]
    assert length.tolist() == [12288, 4096, 4096]
    ptr, off, length = align_merge(batch, start, end, n_batches=2, block_bytes=4096,
                                   gap_bytes=16384)
    assert (off.tolist(), length.tolist()) == ([0, 0], [12288, 24576])
    ptr, off, length = align_merge(np.array([0]), np.array([0]), np.array([10000]),
                                   n_batches=1, block_bytes=4096, max_read_bytes=4096)
    assert (off.tolist(), length.tolist()) == ([0, 4096, 8192], [4096] * 3)


def test_dram_budget_is_shared_by_the_layers():
    g = ModelGeometry("hand-2l", 2, 2048, 16, 2)
    dense = [list(range(0, 10)), list(range(3, 12)), list(range(5, 14))] * 5  # ~10 rows/token
    sparse = random_sets(5, n_tokens=15)
    record = 2 * ROW
    budget_rows = 18  # layer 0 alone holds 10+: an even split (9 per layer) could not
    plan = make_layout("windowed+bundled", window=4, dram_budget_bytes=budget_rows * record).plan(
        hand_trace([dense, sparse], g, n_prompt=0))
    total = plan.dram_resident_bytes.sum(axis=1)
    assert total.max() <= budget_rows * record
    assert plan.dram_resident_bytes[:, 0].max() >= 10 * record
    assert plan.meta["window_per_token"].min() < 4


SPARSE_LAYOUTS = ["sparse", "bundled", "windowed", "windowed+bundled", "coactivation",
                  "coactivation-friend", "windowed+coactivation", "windowed+coactivation-friend"]
HAND_2L = ModelGeometry("hand-2l", 2, 2048, 16, 2)


def online_reads(layout, trace):
    """The runtime's path: the residency stepped (token, layer) by (token, layer) as the ids
    arrive, each batch's reads from `Layout.batch_reads`."""
    g, first = trace.geometry, trace.n_prompt_tokens
    placement, residency = layout.placement(g), layout.residency(g)
    out = {}
    for t in range(trace.n_tokens):
        for l in range(g.n_layers):
            step = residency.step(t, l, trace.predicted[l][t], budgeted=t >= first)
            if t >= first:
                out[(t - first, l)] = layout.batch_reads(l, step.new, placement)
    return out


@pytest.mark.parametrize("gap", [0, 65536], ids=["gap0", "gap64k"])
@pytest.mark.parametrize("name, kwargs", [(n, {}) for n in SPARSE_LAYOUTS]
                         + [("windowed+bundled", {"dram_budget_bytes": 14 * 2 * ROW})])
def test_one_batch_at_a_time_reads_what_the_plan_says(name, kwargs, gap):
    trace = hand_trace([random_sets(1, 30), random_sets(2, 30)], HAND_2L, n_prompt=3)
    train = hand_trace([random_sets(3, 40), random_sets(4, 40)], HAND_2L, n_prompt=0)
    layout = make_layout(name, train_trace=train, merge_gap_bytes=gap, **kwargs)
    plan = layout.plan(trace)
    online = online_reads(layout, trace)
    assert len(online) == plan.n_tokens * plan.n_layers
    for (t, l), (off, length) in online.items():
        p_off, p_len = plan.batch_reads(t, l)
        assert off.tolist() == p_off.tolist() and length.tolist() == p_len.tolist()
    if gap:  # 16 one-block rows: a 64 KiB gap merges reads the gap-0 plan keeps apart
        assert plan.n_reads < make_layout(name, train_trace=train, **kwargs).plan(trace).n_reads


@pytest.mark.parametrize("name", ["naive", "hybrid"])
def test_dense_layouts_read_their_flash_share_per_batch_and_keep_no_residency(name):
    layout = make_layout(name, chunk_bytes=32768)
    trace = hand_trace([[[0], [1], [2]], [[0], [1], [2]]], HAND_2L)
    plan = layout.plan(trace)
    placement = layout.placement(HAND_2L)
    for t in range(plan.n_tokens):
        for l in range(2):
            off, length = layout.batch_reads(l, np.array([3]), placement)  # ids do not matter
            p_off, p_len = plan.batch_reads(t, l)
            assert off.tolist() == p_off.tolist() and length.tolist() == p_len.tolist()
    assert layout.dense_ffn and not make_layout("bundled").dense_ffn
    with pytest.raises(InputError, match="residency"):
        layout.residency(HAND_2L)


@pytest.mark.parametrize("name", ["sparse", "bundled", "windowed+bundled", "coactivation"])
@pytest.mark.parametrize("kwargs", [{}, {"merge_gap_bytes": 8192, "max_read_bytes": 12288},
                                    {"block_bytes": 16384, "max_read_bytes": 32768}],
                         ids=["plain", "gap-and-cut", "wide-blocks"])
def test_the_plan_of_own_records_equals_the_plan_from_ranges(name, kwargs):
    """A layout that reads its loads' own records is planned straight from the loads (one
    token's ranges at a time); the same layout planned through its byte ranges (the path
    of every other layout) gives the same reads, read by read."""
    trace = hand_trace([random_sets(5, 40), random_sets(6, 40)], HAND_2L, n_prompt=2)
    train = hand_trace([random_sets(7, 40), random_sets(8, 40)], HAND_2L, n_prompt=0)
    layout = make_layout(name, train_trace=train, **kwargs)
    direct = layout.plan(trace)
    layout.reads_own_records = lambda placement: False  # through read_ranges instead
    ranged = layout.plan(trace)
    for key in ("batch_ptr", "offset_bytes", "length_bytes"):
        assert getattr(direct, key).tolist() == getattr(ranged, key).tolist()
    assert direct.n_reads > direct.n_tokens  # (not a trivial plan)
