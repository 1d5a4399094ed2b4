"""The decode's wait cost (its compute after waiting on reads): what it adds to a token by
hand, a profile carrying it, and its fit recovering known costs from synthetic samples."""

import numpy as np
import pytest

from flashsim.cost.compute import ComputeModel
from flashsim.cost.simulate import simulate
from flashsim.cost.wait_cost import DecodeWaitCost
from flashsim.geometry import ModelGeometry, NeuronSets
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

G = ModelGeometry("hand-block", 2, 2048, 16, 2)  # 4 KiB rows
# one unit, no host time: a 4 KiB read takes 101 µs, reads run back to back
SERIAL = {"host_overhead_us": 0.0, "command_latency_us": 100.0, "n_units": 1,
          "unit_bandwidth_mb_s": 4096.0, "link_bandwidth_mb_s": 1e6, "stripe_bytes": 65536}
COMPUTE = ComputeModel(fixed_s_per_layer=1e-3, s_per_neuron=1e-6, source="fixed for the test")
WAIT = DecodeWaitCost(compute_per_batch_s=100e-6, compute_per_io_s=0.5)


def trace_with_an_empty_layer():
    # token 1 computes nothing in layer 1: that layer reads nothing and waits for nothing
    layers = [NeuronSets.from_lists([[0], [1, 5], [3]]), NeuronSets.from_lists([[0], [], [7]])]
    return ActivationTrace(G, np.arange(3), 1, layers, layers, {"name": "hand"})


@pytest.mark.parametrize("engine", ["fast", "des"])
def test_wait_cost_by_hand(engine):
    plan = make_layout("sparse").plan(trace_with_an_empty_layer())
    frame, summary = simulate(plan, SERIAL, 1, engine, memcpy_bytes_per_s=1e9,
                              compute_model=COMPUTE, wait_cost=WAIT)
    # token 1: one batch of 4 reads; token 2: two batches of 2 reads
    io_ms = [4 * 0.101, 2 * 2 * 0.101]
    assert frame["io_ms"].to_numpy() == pytest.approx(io_ms)
    # compute: 2 layers x 1 ms + neurons x 1 µs, + 100 µs per batch + half the waited time
    assert frame["compute_ms"].to_numpy() == pytest.approx(
        [2.002 + 0.1 + 0.5 * io_ms[0], 2.002 + 0.2 + 0.5 * io_ms[1]])
    assert summary["wait_cost_model"]["compute_per_batch_us"] == pytest.approx(100.0)
    assert summary["wait_cost_model"]["compute_per_io_s"] == pytest.approx(0.5)


def test_without_a_wait_cost_nothing_is_added():
    plan = make_layout("sparse").plan(trace_with_an_empty_layer())
    frame, summary = simulate(plan, SERIAL, 1, "fast", memcpy_bytes_per_s=1e9,
                              compute_model=COMPUTE)
    assert frame["io_ms"].to_numpy() == pytest.approx([4 * 0.101, 4 * 0.101])
    assert frame["compute_ms"].to_numpy() == pytest.approx([2.002, 2.002])
    assert summary["wait_cost_model"] is None


@pytest.mark.parametrize("field", ["compute_per_batch_s", "compute_per_io_s"])
@pytest.mark.parametrize("value", [-1e-6, float("nan"), float("inf")])
def test_a_wait_cost_is_finite_and_not_negative(field, value):
    args = {"compute_per_batch_s": 0.0, "compute_per_io_s": 0.0}
    with pytest.raises(ValueError, match=field):
        DecodeWaitCost(**{**args, field: value})


@pytest.mark.parametrize("start", [0, 1, 2])
def test_fit_recovers_known_costs_from_synthetic_samples(start):
    from flashsim.validation.wait_calibration import fit_wait_cost

    rng = np.random.default_rng(start)
    rows = []
    for batches, waited_ms in ((4, 8.0), (4, 1.5), (3, 4.0)):  # long and short waits
        n = 48
        b = np.full(n, float(batches)) - (rng.random(n) < 0.2)  # a skipped layer now and then
        io = waited_ms * 1e-3 * rng.uniform(0.7, 1.3, n)
        comp = 80e-6 * b + 0.2 * io
        # a few tokens hit by a stall: least absolute deviations looks past them
        comp[rng.choice(n, 3, replace=False)] += 2e-3
        extra = 0.6e-3 + rng.normal(0, 10e-6, n)  # I/O beyond the model, per token
        rows.append({"layout": "synthetic", "queue_depth": 1, "io_extra_s": extra,
                     "compute_extra_s": comp, "batches": b, "io_waited_s": io})
    cost = fit_wait_cost(rows, "synthetic samples")
    assert cost.compute_per_batch_s == pytest.approx(80e-6, rel=1e-3)
    assert cost.compute_per_io_s == pytest.approx(0.2, rel=1e-3)
    rows_info = cost.calibration["rows"]
    assert [r["io_beyond_model_ms_p50"] for r in rows_info] == pytest.approx([0.6] * 3, abs=0.05)


def test_fit_never_goes_negative():
    from flashsim.validation.wait_calibration import fit_wait_cost

    n = 32
    rows = [{"layout": "synthetic", "queue_depth": 8, "io_extra_s": np.full(n, -20e-6),
             "compute_extra_s": np.full(n, -1e-4), "batches": np.full(n, 4.0),
             "io_waited_s": np.linspace(1e-3, 2e-3, n)}]
    cost = fit_wait_cost(rows, "faster than the models")
    assert (cost.compute_per_batch_s, cost.compute_per_io_s) == (0, 0)


def test_a_profile_carries_its_decode_wait(tmp_path):
    from flashsim.cost.wait_cost import PROFILE, resolve_wait_cost
    from flashsim.device.profile import DecodeWaitInfo, DeviceProfile

    profile = DeviceProfile.load("local-virtio")
    assert resolve_wait_cost(PROFILE, profile.model_copy(update={"decode_wait": None})) is None
    info = DecodeWaitInfo(compute_per_batch_us=40.0, compute_per_io_s=0.25, source="by hand")
    path = tmp_path / "p.yaml"
    profile.model_copy(update={"decode_wait": info}).save(path)
    cost = resolve_wait_cost(PROFILE, DeviceProfile.load(path))
    assert (cost.compute_per_batch_s, cost.compute_per_io_s) == pytest.approx((40e-6, 0.25))
    assert resolve_wait_cost(None, DeviceProfile.load(path)) is None
