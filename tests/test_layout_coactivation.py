"""Co-activation layouts on hand-made training and replay traces."""

import numpy as np
import pytest

from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.coactivation import (
    closest_friends,
    friend_read_units,
    path_order,
    seriate,
)
from flashsim.layout.placement import bundled_placement
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

G = ModelGeometry("hand-block", 1, 2048, 16, 2)  # 4 KiB rows: 8 KiB bundled records
REC = 8192


def trace(sets, n_prompt=0):
    layer = NeuronSets.from_lists(sets)
    return ActivationTrace(G, np.arange(len(sets)), n_prompt, [layer], [layer], {"name": "hand"})


def test_closest_friend_is_the_most_frequent_partner():
    sets = NeuronSets.from_lists([[0, 1], [0, 1], [0, 2], [3], [4, 5, 0]])
    friend = closest_friends(sets, 8)
    assert friend[0] == 1 and friend[1] == 0 and friend[2] == 0
    assert friend[3] == 3  # never with another neuron: itself
    assert friend[6] == 6  # never used


def test_friend_reads_skip_neurons_carried_by_another_record():
    friend = np.array([1, 0, 1, 1, 1, 4, 6, 7])  # neuron 1 is everyone's friend
    loads = NeuronSets.from_lists([[1, 2, 3], [0, 1], [2, 1, 4]])
    units = friend_read_units(loads, friend, 8)
    assert units[0].tolist() == [2, 3]  # 1 comes with 2's record
    assert units[1].tolist() == [0]  # mutual friends 0 ↔ 1: the smaller id's record
    assert units[2].tolist() == [2, 4]
    chain = np.array([1, 2, 2, 3, 4, 5, 6, 7])  # 0 → 1 → 2
    assert friend_read_units(NeuronSets.from_lists([[0, 1, 2]]), chain, 8)[0].tolist() == [0, 2]


def test_friend_layout_reads_four_rows_per_record_and_duplicates_the_friend():
    train = trace([[1, 2], [1, 3], [1, 2, 3], [5]])
    layout = make_layout("coactivation-friend", train_trace=train)
    placement = layout.placement(G)
    assert placement.friend[0, 2] == 1 and placement.friend[0, 1] == 2  # ties: lowest id
    layer, neuron, fc1, fc2 = placement.copies()
    assert fc1[2] == placement.fc1_offset_bytes[0, 2] + 2 * 4096 and neuron[2] == 1
    plan = layout.plan(trace([[0], [1, 3]], n_prompt=1))
    # 1's friend is 2 (tie with 3 broken to the lower id), 3's friend is 1: 3's record has both
    assert plan.batch_reads(0, 0)[0].tolist() == [3 * 4 * 4096]
    assert plan.batch_reads(0, 0)[1].tolist() == [4 * 4096]
    assert plan.useful_bytes[0, 0] == 2 * REC


@pytest.mark.parametrize("method", ["cluster", "spectral"])
def test_seriation_puts_hot_first_groups_together_dead_last(method):
    rng = np.random.default_rng(0)
    groups = [[2, 7, 11], [4, 9, 13, 14], [1, 5]]
    sets = []
    for _ in range(60):
        s = {0}  # neuron 0 is hot (every token)
        for g in groups:
            if rng.random() < 0.3:
                s |= set(g)
        sets.append(sorted(s))
    order = seriate(NeuronSets.from_lists(sets), 16, method=method, hot_threshold=0.5)
    assert sorted(order.tolist()) == list(range(16))
    assert order[0] == 0
    pos = np.argsort(order)
    for g in groups:
        p = np.sort(pos[g])
        assert p[-1] - p[0] == len(g) - 1, (g, order)
    never = [3, 6, 8, 10, 12, 15]
    assert sorted(pos[never].tolist()) == list(range(10, 16))


def test_ordered_layout_reads_a_co_activated_group_in_one_read():
    sets = [[[2, 7, 11], [4, 9], [5, 13]][t % 3] for t in range(30)]  # each used 1/3
    layout = make_layout("coactivation", train_trace=trace(sets))
    plan = layout.plan(trace([[0], [2, 7, 11], [4, 9]], n_prompt=1))
    bundled = make_layout("bundled").plan(trace([[0], [2, 7, 11], [4, 9]], n_prompt=1))
    assert plan.reads_per_token().tolist() == [1, 1]
    assert bundled.reads_per_token().tolist() == [3, 2]
    assert plan.length_bytes.tolist() == [3 * REC, 2 * REC]
    order = layout.placement(G).order[0]
    assert np.array_equal(layout.placement(G).fc1_offset_bytes[0, order],
                          np.arange(16) * REC)  # the file holds records in `order`


def test_placements_agree_with_their_digest_and_order():
    order = np.array([np.arange(16)[::-1]])
    a, b = bundled_placement(G, order=order), bundled_placement(G)
    assert a.digest() != b.digest()
    assert a.fc1_offset_bytes[0, 15] == 0 and a.fc2_offset_bytes[0, 15] == 4096
    assert a.file_bytes == 16 * REC


def paired_sets(seed=0, n_tokens=80):
    """Tokens built from pairs that always co-activate, each pair in ~30 % of the tokens."""
    rng = np.random.default_rng(seed)
    pairs = [(0, 7), (3, 12), (5, 9), (2, 14), (6, 11), (1, 13)]
    sets = []
    for _ in range(n_tokens):
        s = set()
        for a, b in pairs:
            if rng.random() < 0.3:
                s |= {a, b}
        sets.append(sorted(s) or [0, 7])
    return pairs, NeuronSets.from_lists(sets)


def test_path_puts_each_always_co_activated_pair_side_by_side():
    pairs, sets = paired_sets()
    order = seriate(sets, 16, method="path", hot_threshold=0.9)
    assert sorted(order.tolist()) == list(range(16))  # a permutation
    pos = np.argsort(order)
    for a, b in pairs:
        assert abs(pos[a] - pos[b]) == 1, (a, b, order)
    never = [4, 8, 10, 15]
    assert sorted(pos[never].tolist()) == list(range(12, 16))
    again = seriate(sets, 16, method="path", hot_threshold=0.9)
    assert np.array_equal(order, again)  # deterministic


def test_path_walk_starts_at_the_most_active_and_restarts_when_stuck():
    sets = NeuronSets.from_lists([[4, 5], [4, 5], [4, 5], [1, 2], [1, 2], [0]])
    order = path_order(sets, np.arange(6), 6)
    assert order[:2].tolist() in ([4, 5], [5, 4])  # 4 and 5 are the most active pair
    assert sorted(order.tolist()) == list(range(6))
    pos = np.argsort(order)
    assert abs(pos[1] - pos[2]) == 1


def test_path_layout_is_registered_and_reads_a_pair_in_one_read():
    pairs, sets = paired_sets(1)
    train = trace([sets[t].tolist() for t in range(len(sets))])
    layout = make_layout("coactivation-path", train_trace=train)
    assert layout.order_method == "path"
    plan = layout.plan(trace([[0], [3, 12], [5, 9, 2, 14]], n_prompt=1))
    assert plan.reads_per_token().tolist()[0] == 1
    assert make_layout("windowed+coactivation", order_method="path",
                       train_trace=train).order_method == "path"
    with pytest.raises(InputError):
        seriate(sets, 16, method="walk")
