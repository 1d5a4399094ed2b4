"""The memory-management model and the runtime code it times: the fit recovers SYNTHETIC
parameters, the model grows with neurons and bytes, the manager's counts are the plan's,
and the manager decodes the read bytes into the right matrix rows. Nothing is timed."""

import numpy as np
import pytest

from flashsim.cost.memory import MemoryModel, fit_memory
from flashsim.cost.memory_timing import MemorySamples, time_manager
from flashsim.cost.simulate import simulate
from flashsim.data import REFERENCE_TRACE
from flashsim.geometry import ModelGeometry
from flashsim.layout.dram import DramManager
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

DEVICE = {"host_overhead_us": 0.0, "command_latency_us": 10.0, "n_units": 1,
          "unit_bandwidth_mb_s": 1000.0, "link_bandwidth_mb_s": 1e6, "stripe_bytes": 65536}


def test_fit_recovers_synthetic_terms_through_stalls():
    rng = np.random.default_rng(0)
    n = 600
    loaded = rng.integers(0, 100, n).astype(float)
    reads = np.ceil(loaded * rng.uniform(0.2, 1.0, n))
    read_bytes = reads * 4096 * rng.uniform(1, 3, n)
    moved = rng.integers(0, 50, n).astype(float)
    true = 30e-6 + 2e-6 * loaded + 1e-6 * reads + 1e-11 * read_bytes + 0.3e-6 * moved
    stalled = true * (1 + 4 * (rng.random(n) < 0.2))  # SYNTHETIC: 20 % of calls stalled
    m = fit_memory(MemorySamples(stalled, loaded, reads, read_bytes, moved))
    assert m.s_per_call == pytest.approx(30e-6, rel=0.05)
    assert m.s_per_neuron == pytest.approx(2e-6, rel=0.05)
    assert m.s_per_read == pytest.approx(1e-6, rel=0.1)
    assert m.s_per_read_byte == pytest.approx(1e-11, rel=0.1)
    assert m.s_per_moved_row == pytest.approx(0.3e-6, rel=0.05)


@pytest.fixture(scope="module")
def ref():
    return ActivationTrace.load(REFERENCE_TRACE).head(24)


def test_more_neurons_and_bytes_cost_more(ref):
    m = MemoryModel(20e-6, 1e-6, 1e-7, 1e-11, 1e-7, source="fixed")
    windowed = make_layout("windowed+bundled").plan(ref)  # reads only the increment
    bundled = make_layout("bundled").plan(ref)
    assert m.seconds(bundled).sum() > m.seconds(windowed).sum()
    big = MemoryModel(20e-6, 2e-6, 1e-7, 1e-11, 1e-7, source="fixed")
    assert (big.seconds(bundled) >= m.seconds(bundled)).all()


@pytest.mark.parametrize("name", ["sparse", "bundled", "windowed+bundled"])
def test_the_managers_counts_are_the_plans(ref, name):
    """The model is fitted on the manager's counts and applied to the plan's: they agree."""
    layout = make_layout(name)
    plan = layout.plan(ref)
    g = ref.geometry
    sets = ((t, l, s[t].astype(np.int64)) for t in range(ref.n_tokens)
            for l, s in enumerate(ref.predicted))
    samples = time_manager(DramManager(layout, g, np.float16), sets, ref.n_prompt_tokens)
    shape = (plan.n_tokens, plan.n_layers)
    assert np.array_equal(samples.loaded.reshape(shape), plan.neurons_loaded)
    assert np.array_equal(samples.reads.reshape(shape), plan.reads_per_batch())
    assert np.array_equal(samples.read_bytes.reshape(shape), plan.bytes_per_batch())
    record = 2 * g.row_bytes
    moved = samples.moved_rows.reshape(shape) + plan.neurons_loaded
    assert np.array_equal(moved * record, plan.mem_moved_bytes)


G = ModelGeometry("hand", 2, 8, 32, 2)


@pytest.mark.parametrize("name", ["sparse", "bundled", "windowed+bundled"])
def test_the_manager_decodes_each_neuron_into_its_row(name):
    rng = np.random.default_rng(2)
    layout = make_layout(name, block_bytes=512)
    manager = DramManager(layout, G, np.float16)
    p = manager.placement
    fc1 = rng.standard_normal((2, 32, 8)).astype(np.float16)
    fc2 = rng.standard_normal((2, 32, 8)).astype(np.float16)
    file = np.zeros(p.file_bytes, np.uint8)
    for l in range(2):
        for i in range(32):
            a, b = p.fc1_offset_bytes[l, i], p.fc2_offset_bytes[l, i]
            file[a:a + 16], file[b:b + 16] = fc1[l, i].view(np.uint8), fc2[l, i].view(np.uint8)
    for t in range(12):
        for l in range(2):
            ids = np.flatnonzero(rng.random(32) < 0.3)
            step, off, length = manager.prepare(t, l, ids)
            data = np.concatenate([file[o:o + n] for o, n in zip(off, length)] or [file[:0]])
            manager.store(l, step, off, length, data)
            rows = manager.rows(l, ids)
            assert np.array_equal(rows[:, :8], fc1[l, ids].astype(np.float32))
            assert np.array_equal(rows[:, 8:], fc2[l, ids].astype(np.float32))


def test_simulate_uses_a_given_memory_model_and_memcpy_for_dense_layouts(ref):
    m = MemoryModel(1e-4, 0.0, 0.0, 0.0, 0.0, source="per call only")
    plan = make_layout("bundled").plan(ref)
    frame, s = simulate(plan, DEVICE, 1, memcpy_bytes_per_s=1e9, memory_model=m)
    assert frame["mem_ms"].to_numpy() == pytest.approx(np.full(plan.n_tokens, 0.4))
    assert s["mem_source"] == "per call only"
    dense = make_layout("naive").plan(ref)
    frame, s = simulate(dense, DEVICE, 1, memcpy_bytes_per_s=1e9, memory_model=m)
    assert frame["mem_ms"].to_numpy() == pytest.approx(dense.mem_moved_bytes.sum(axis=1) / 1e6)


def test_rates_round_trip():
    m = MemoryModel(1e-5, 2e-6, 3e-7, 4e-12, 5e-7, source="x")
    assert MemoryModel.from_rates(m.to_rates(), "x") == m
    assert MemoryModel.from_rates({"memcpy_bytes_per_s": 1e9}, "x") is None

