"""The compute model: robust fits recover known parameters from SYNTHETIC timings, the terms
add up as documented, the context is used, and a model passed to `simulate` is used as given.
No test times anything: the calibration's timing is exercised only for its shapes."""

import numpy as np
import pytest

from flashsim.cost.compute import ComputeModel, PartCost
from flashsim.cost.compute_decode import (
    CONTEXT_PARTS,
    FFN_PARTS,
    LAYER_PARTS,
    TOKEN_PARTS,
    DecodeTimings,
    fit_decode,
)
from flashsim.cost.robust import lad_fit
from flashsim.cost.simulate import simulate
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace


def stalls(rng, n, share=0.2, size=5.0):
    """SYNTHETIC heavy upper tail: a share of samples lose the core for `size` × their time."""
    return 1.0 + size * (rng.random(n) < share)


def test_lad_fit_recovers_a_line_through_stalls():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 500, 400)
    y = (20e-6 + 0.3e-6 * x) * (1 + 0.01 * rng.standard_normal(400)) * stalls(rng, 400)
    c = lad_fit(np.column_stack([np.ones(400), x]), y)
    assert c[0] == pytest.approx(20e-6, rel=0.05) and c[1] == pytest.approx(0.3e-6, rel=0.05)


def test_lad_fit_keeps_coefficients_non_negative():
    x = np.arange(50, dtype=float)
    c = lad_fit(np.column_stack([np.ones(50), x]), 10.0 - 0.1 * x)
    assert (c >= 0).all()


def synthetic_timings(seed=0, n=300, n_layers=4):
    """SYNTHETIC decode timings with known parts: token parts 10 µs each, layer parts 5 µs
    per layer, attention 3 µs + 0.2 µs per context token per layer, FFN parts 4 µs per
    running FFN + 0.5 µs per neuron, 20 % of tokens stalled."""
    rng = np.random.default_rng(seed)
    context = np.arange(1, n + 1, dtype=float)
    neurons = rng.integers(0, 200, (n, n_layers))
    neurons[rng.random((n, n_layers)) < 0.1] = 0
    runs, total_n = (neurons > 0).sum(axis=1), neurons.sum(axis=1)
    parts = {}
    for name in TOKEN_PARTS:
        parts[name] = 10e-6 * stalls(rng, n)
    for name in LAYER_PARTS:
        parts[name] = n_layers * 5e-6 * stalls(rng, n)
    for name in CONTEXT_PARTS:
        parts[name] = n_layers * (3e-6 + 0.2e-6 * context) * stalls(rng, n)
    for name in FFN_PARTS:
        parts[name] = (4e-6 * runs + 0.5e-6 * total_n) * stalls(rng, n)
    total = sum(parts.values()) + 7e-6  # Python between the laps
    sampled = np.arange(n) >= n // 3
    return DecodeTimings(parts, total, context, neurons, sampled)


def test_fit_decode_recovers_every_part():
    parts = {p.name: p for p in fit_decode(synthetic_timings())}
    for name in ("embed", "lm_head", "sampling"):
        assert parts[name].const_s == pytest.approx(10e-6, rel=0.05)
    for name in LAYER_PARTS:
        assert parts[name].const_s == pytest.approx(5e-6, rel=0.05)
    att = parts["attention"]
    assert att.const_s == pytest.approx(3e-6, rel=0.1)
    assert att.per_context_s == pytest.approx(0.2e-6, rel=0.05)
    for name in FFN_PARTS:
        assert parts[name].const_s == pytest.approx(4e-6, rel=0.1)
        assert parts[name].per_neuron_s == pytest.approx(0.5e-6, rel=0.05)


def test_the_fitted_model_gives_the_typical_total():
    t = synthetic_timings(seed=3)
    model = ComputeModel.from_parts(fit_decode(t), "synthetic")
    pred = model.seconds(t.neurons, t.context)
    err = (pred - t.total_s) / t.total_s
    assert abs(np.median(err[t.sampled])) < 0.02  # the rest anchors the median


def test_terms_add_up_as_documented():
    m = ComputeModel(1e-4, 1e-6, "fixed", s_per_context_token=1e-7, fixed_s_per_token=1e-3,
                     ffn_fixed_s_per_layer=1e-5)
    got = m.seconds(np.array([[10, 0], [0, 0]]), np.array([100, 200]))
    want = [1e-3 + 2e-4 + 10e-6 + 1e-5 + 2 * 100e-7, 1e-3 + 2e-4 + 2 * 200e-7]
    assert got == pytest.approx(want, rel=1e-12)


def test_a_longer_context_predicts_more():
    m = ComputeModel.from_parts([PartCost("attention", "layer", 1e-6, per_context_s=1e-8)], "x")
    n = np.full((2, 4), 10)
    short, long = m.seconds(n, np.array([10, 10])), m.seconds(n, np.array([400, 400]))
    assert (long > short).all()


def test_plain_linear_model_is_unchanged():
    """The two-rate model sweeps with fixed rates use: exactly fixed·L + rate·Σn."""
    n = np.array([[3, 5], [0, 7]])
    got = ComputeModel(1e-5, 1e-8).seconds(n, np.array([50, 60]))
    assert got.tolist() == (1e-5 + 1e-8 * n.astype(float)).sum(axis=1).tolist()


def test_rates_round_trip():
    m = ComputeModel(1e-4, 2e-7, "x", s_per_context_token=3e-8, fixed_s_per_token=4e-4,
                     ffn_fixed_s_per_layer=5e-6)
    back = ComputeModel.from_rates(m.to_rates(), "x")
    assert back == m


G = ModelGeometry("hand", 2, 256, 64, 2)


def test_simulate_charges_each_token_its_context():
    sets = NeuronSets.from_lists([[1, 2]] * 6)
    trace = ActivationTrace(G, np.arange(6), 2, [sets, sets], [sets, sets], {"name": "hand"})
    plan = make_layout("bundled").plan(trace)
    model = ComputeModel(0.0, 0.0, "context only", s_per_context_token=1e-6)
    frame, summary = simulate(plan, {"host_overhead_us": 0.0, "command_latency_us": 10.0,
                                     "n_units": 1, "unit_bandwidth_mb_s": 1000.0,
                                     "link_bandwidth_mb_s": 1e6, "stripe_bytes": 65536},
                              1, memcpy_bytes_per_s=1e9, compute_model=model)
    # positions 2..5 attend to 3..6 keys in each of the 2 layers
    assert frame["compute_ms"].to_numpy() == pytest.approx([2 * k * 1e-3 for k in (3, 4, 5, 6)])
    assert summary["compute_source"] == "context only"
