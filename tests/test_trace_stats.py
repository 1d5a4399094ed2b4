"""Trace statistics on hand-made traces whose values are worked out by hand in the comments."""

import numpy as np
import pytest

from flashsim.errors import InputError
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.trace.format import ActivationTrace
from flashsim.trace.stats import closest_friends, trace_stats, window_stats

GEOM = ModelGeometry("hand", n_layers=2, d_model=4, d_ffn=8, dtype_bytes=2)


def window_trace() -> ActivationTrace:
    """4 tokens, token 0 is the prompt. Layer 0 changes, layer 1 always uses neuron 5."""
    active = [NeuronSets.from_lists([[0, 1], [1, 2], [0, 2, 3], [3]]),
              NeuronSets.from_lists([[5], [5], [5], [5]])]
    predicted = [NeuronSets.from_lists([[0, 1, 4], [1, 2, 4], [0, 3, 4], [3, 4]]),
                 NeuronSets.from_lists([[5], [5], [5], [5]])]
    return ActivationTrace(GEOM, np.arange(4), 1, active, predicted, {})


def test_sparsity_and_per_token_counts():
    st = trace_stats(window_trace(), coactivation=False)
    # layer 0 generated tokens have 2, 3, 1 active of 8 -> mean 2 -> sparsity 0.75
    assert st["sparsity"] == pytest.approx([0.75, 0.875])
    assert st["active_per_token"] == pytest.approx([2.0, 1.0])
    # predicted: 3, 3, 2 -> 8/3 per token
    assert st["predicted_sparsity"] == pytest.approx([1 - 8 / 3 / 8, 0.875])
    assert st["mean_sparsity"] == pytest.approx(1 - 1.5 / 8)
    assert st["tokens"] == {"start": 1, "stop": 4, "n_measured": 3, "include_prompt": False}


def test_predictor_recall_and_false_positives():
    p = trace_stats(window_trace(), coactivation=False)["predictor"]
    # layer 0: 6 active entries, 8 predicted, 5 in both; 24 - 6 = 18 inactive (token, neuron)
    assert p["recall"] == pytest.approx([5 / 6, 1.0])
    assert p["false_negative_rate"] == pytest.approx([1 / 6, 0.0])
    assert p["false_positive_rate"] == pytest.approx([3 / 18, 0.0])
    assert p["extra_load_ratio"] == pytest.approx([0.5, 0.0])
    assert p["predicted_to_active"] == pytest.approx([8 / 6, 1.0])


def test_window_shares_increments_and_resident_by_hand():
    s = window_trace().active[0]
    w = window_stats(s, start=1, ks=[1, 2, 3])
    # k=1: t1 {1,2} vs {0,1}: 1 hit; t2 {0,2,3} vs {1,2}: 1; t3 {3} vs {0,2,3}: 1 -> 3 of 6
    # k=2: caches {0,1}, {0,1,2}, {0,1,2,3} -> 1 + 2 + 1 = 4 of 6; k=3 the same
    assert w.hits.tolist() == [3, 4, 4] and w.entries == 6
    assert w.hit_share == pytest.approx([0.5, 2 / 3, 2 / 3])
    assert w.incremental_neurons == pytest.approx([3 / 3, 2 / 3, 2 / 3])
    # resident after t = union of the last k tokens: k=1: 2,3,1; k=2: 3,4,3; k=3: 3,4,4
    assert w.resident_neurons == pytest.approx([2.0, 10 / 3, 11 / 3])
    # including the prompt token, which hits nothing: k=1 -> 3 hits of 8 entries
    w0 = window_stats(s, start=0, ks=[1])
    assert w0.hits.tolist() == [3] and w0.entries == 8
    assert w0.incremental_neurons == pytest.approx([5 / 4])


def test_window_keys_average_over_layers_and_cover_both_sets():
    st = trace_stats(window_trace(), coactivation=False, ks=[1, 2])
    assert st["which"] == "predicted" and st["window_k"] == [1, 2]
    by = st["window_by_set"]
    # active: layer 0 increments 1 and 2/3 neurons/token of 8, layer 1 none
    assert by["active"]["incremental_fraction"] == pytest.approx([1 / 16, 1 / 24])
    assert by["active"]["hit_share"] == pytest.approx([6 / 9, 7 / 9])
    # predicted layer 0, k=1: t1 {1,2,4} vs {0,1,4}: 2; t2 {0,3,4} vs {1,2,4}: 1; t3 {3,4}: 2
    assert by["predicted"]["hit_share_per_layer"][0][0] == pytest.approx(5 / 8)
    assert st["window_hit_share"] == pytest.approx(by["predicted"]["hit_share"])
    assert st["window_incremental_fraction_per_layer"][1] == pytest.approx([0.0, 0.0])
    assert st["window_resident_fraction_per_layer"][1] == pytest.approx([1 / 8, 1 / 8])
    active_only = trace_stats(window_trace(), "active", coactivation=False, ks=[1, 2])
    assert active_only["window_incremental_fraction"] == pytest.approx([1 / 16, 1 / 24])


def coactivation_trace() -> ActivationTrace:
    g = ModelGeometry("hand", n_layers=1, d_model=4, d_ffn=8, dtype_bytes=2)
    active = [NeuronSets.from_lists([[0, 1, 2], [0, 1, 3], [0, 2], [0, 4]])]
    return ActivationTrace(g, np.arange(4), 0, active, None, {})


def test_closest_friends_by_hand():
    f = closest_friends(coactivation_trace().active[0])
    # counts 0:4 1:2 2:2 3:1 4:1. Neuron 0 meets 1 and 2 twice (tie -> 1), 3 and 4 once.
    assert f.neurons.tolist() == [0, 1, 2, 3, 4]
    assert f.counts.tolist() == [4, 2, 2, 1, 1]
    assert f.friend.tolist() == [1, 0, 0, 0, 0]
    assert f.friend_rate == pytest.approx([0.5, 1, 1, 1, 1])
    # third closest: neuron 0 -> 1/4; neuron 1 (0:2, 2:1, 3:1) -> 1/2; others meet < 3 neurons
    assert f.third_rate == pytest.approx([0.25, 0.5, 0, 0, 0])


def test_coactivation_summary_hot_neurons_are_everyones_friend():
    co = trace_stats(coactivation_trace(), hot_fraction=0.1)["coactivation"]
    # round(0.1 * 8) = 1 hot neuron: neuron 0, the closest friend of 4 of the 5 neurons
    assert co["set"] == "active" and co["n_hot"] == [1] and co["n_ever_active"] == [5]
    assert co["hot_friend_share"] == pytest.approx([0.8])
    assert co["hot_friend_share_if_random"] == pytest.approx([0.2])
    assert co["top_friend_share"] == pytest.approx([0.8])
    assert co["friend_rate_mean"] == pytest.approx([0.9])
    assert co["friend_rate_ge_95_share"] == pytest.approx([0.8])
    assert co["third_friend_rate_median"] == pytest.approx([0.0])


def test_bad_requests_are_input_errors():
    t = coactivation_trace()
    with pytest.raises(InputError, match="no predicted"):
        trace_stats(t, "predicted")
    with pytest.raises(InputError, match="unknown neuron set"):
        trace_stats(t, "both")
    all_prompt = ActivationTrace(t.geometry, t.token_ids, 4, t.active, None, {})
    with pytest.raises(InputError, match="no generated tokens"):
        trace_stats(all_prompt)
    assert trace_stats(all_prompt, include_prompt=True)["tokens"]["n_measured"] == 4


def _brute_window(sets, start, k):
    hits = entries = resident = 0
    for t in range(start, len(sets)):
        cache = set().union(*[set(sets[u].tolist()) for u in range(max(0, t - k), t)])
        now = set(sets[t].tolist())
        hits += len(now & cache)
        entries += len(now)
        resident += len(set().union(*[set(sets[u].tolist())
                                      for u in range(max(0, t - k + 1), t + 1)]))
    n = len(sets) - start
    return hits, (entries - hits) / n, resident / n


def test_window_stats_match_a_set_based_reference_on_random_sets():
    rng = np.random.default_rng(3)
    s = NeuronSets.from_mask(rng.random((40, 30)) < rng.random(30) * 0.3)
    w = window_stats(s, start=7, ks=range(1, 9))
    for j, k in enumerate(range(1, 9)):
        hits, inc, res = _brute_window(s, 7, k)
        assert w.hits[j] == hits
        assert w.incremental_neurons[j] == pytest.approx(inc)
        assert w.resident_neurons[j] == pytest.approx(res)


def test_closest_friend_rates_match_a_reference_on_random_sets():
    rng = np.random.default_rng(4)
    mask = rng.random((25, 12)) < 0.3
    f = closest_friends(NeuronSets.from_mask(mask), start=5, block=4)
    m = mask[5:].astype(int)
    co = m.T @ m
    for i, rate in zip(f.neurons, f.friend_rate):
        others = np.delete(co[i], i)
        assert rate == pytest.approx(others.max() / co[i, i])


def test_frequent_friend_rate_ignores_rare_neurons():
    # neuron 0 fires on all 6 tokens, neuron 1 on the first 5 with 0, neuron 2 once with both
    s = NeuronSets.from_lists([[0, 1, 2], [0, 1], [0, 1], [0, 1], [0, 1], [0]])
    g = ModelGeometry("hand", 1, 4, 8, 2)
    co = trace_stats(ActivationTrace(g, np.arange(6), 0, [s], None, {}))["coactivation"]
    # frequent (>= 5 times): neuron 0 (friend 1: 5/6) and neuron 1 (friend 0: 5/5)
    assert co["n_frequent"] == [2] and co["friend_rate_median_frequent"] == pytest.approx([11 / 12])
    assert co["friend_rate_median"] == pytest.approx([1.0])


def test_window_increments_agree_with_the_layout_window_cache():
    window = pytest.importorskip("flashsim.layout.window")
    rng = np.random.default_rng(5)
    s = NeuronSets.from_mask(rng.random((30, 40)) < rng.random(40) * 0.4)
    w = window_stats(s, start=10, ks=[5])
    res = window.run_window(s, 40, 10, 5)
    assert res.loads.counts().mean() == pytest.approx(w.incremental_neurons[0])
    assert res.resident_neurons.mean() == pytest.approx(w.resident_neurons[0])


def test_bundled_reference_trace_stats_are_sane():
    from flashsim.data import REFERENCE_TRACE

    t = ActivationTrace.load(REFERENCE_TRACE)
    assert not t.is_synthetic and t.predicted is not None
    st = trace_stats(t)
    assert st["tokens"]["n_measured"] >= 256
    sp = np.array(st["sparsity"])
    assert np.all((sp >= 0) & (sp < 1))
    assert np.all(np.array(st["predicted_sparsity"]) < 1)
    for name in ("active", "predicted"):
        w = st["window_by_set"][name]
        # a longer window can only remember more: reuse and residency grow, loads shrink
        assert np.all(np.diff(w["hit_share"]) >= 0)
        assert np.all(np.diff(w["resident_fraction"]) >= 0)
        assert np.all(np.diff(w["incremental_fraction"]) <= 0)
        assert 0 < w["incremental_fraction"][0] < 1
    recall = np.array(st["predictor"]["recall"])
    assert np.all((recall > 0.5) & (recall <= 1))
    co = st["coactivation"]
    assert all(0 <= x <= 1 for x in co["hot_friend_share"])
