"""Layouts and costs on the real bundled reference trace and the measured local profile."""

from pathlib import Path

import numpy as np
import pytest

from flashsim.cost.compute import ComputeModel
from flashsim.cost.simulate import io_seconds, simulate
from flashsim.data import REFERENCE_TRACE, TRAINING_TRACE
from flashsim.device.gap import break_even_gap_bytes
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

LOCAL = Path(__file__).resolve().parents[1] / "flashsim" / "data" / "devices" / "local-virtio.yaml"
COMPUTE = ComputeModel(fixed_s_per_layer=1e-4, s_per_neuron=1e-8, source="fixed for the test")


@pytest.fixture(scope="module")
def ref():
    trace = ActivationTrace.load(REFERENCE_TRACE)
    assert not trace.is_synthetic
    return trace


@pytest.fixture(scope="module")
def train():
    return ActivationTrace.load(TRAINING_TRACE)


def _io_ms(trace, name, which, merge_gap_bytes=0):
    plan = make_layout(name, merge_gap_bytes=merge_gap_bytes).plan(trace, which=which)
    return simulate(plan, LOCAL, 32, memcpy_bytes_per_s=1e10, compute_model=COMPUTE)[1][
        "io_ms_mean"]


@pytest.mark.slow
def test_layout_ordering_in_io_time_per_token(ref):
    names = ("naive", "sparse", "windowed", "windowed+bundled")
    active = {name: _io_ms(ref, name, "active") for name in names}
    assert active["windowed+bundled"] < active["windowed"] < active["sparse"]
    # opt-mini's 512-byte rows sit 8 to a 4 KiB block, so paper-literal sparse (gap 0) issues
    # many small reads; on this disk at QD 32 a read costs ~14 us before its bytes (~0.9 us
    # per KiB): sparse is then about as fast as naive 1 MiB reads (either side of it,
    # calibration to calibration), and slower on the predicted set, ~2.6x the active one.
    # The cost-aware default merges reads at most the device's break-even
    # gap apart (reading a few unneeded blocks costs less than another read; the paper's
    # "reading more than needed in bigger chunks can pay"), which restores the ordering.
    gap = break_even_gap_bytes(LOCAL, 32, 4096)
    assert gap > 0
    predicted = {name: _io_ms(ref, name, "predicted", gap) for name in names}
    assert (predicted["windowed+bundled"] < predicted["windowed"] < predicted["sparse"]
            < predicted["naive"])


@pytest.mark.parametrize("name", ["sparse", "windowed+bundled", "naive"])
@pytest.mark.parametrize("qd", [1, 32])
def test_fast_path_agrees_with_simpy_per_token(ref, name, qd):
    plan = make_layout(name).plan(ref).head(4)
    fast = io_seconds(plan, LOCAL, qd, "fast").sum(axis=1)
    des = io_seconds(plan, LOCAL, qd, "des").sum(axis=1)
    assert np.all(fast > 0)
    np.testing.assert_allclose(fast, des, rtol=0.01)


def test_windowing_never_reads_a_resident_neuron_on_the_real_trace(ref):
    plan = make_layout("windowed+bundled").plan(ref)
    predicted = [s.counts()[ref.n_prompt_tokens:] for s in ref.sets("predicted")]
    assert np.all(plan.neurons_loaded <= np.stack(predicted, axis=1))
    assert plan.neurons_loaded.sum() < 0.5 * sum(p.sum() for p in predicted)


@pytest.mark.slow
def test_coactivation_trained_on_the_other_trace_loads_the_same_neurons(ref, train):
    bundled = make_layout("windowed+bundled").plan(ref)
    coact = make_layout("windowed+coactivation", train_trace=train).plan(ref)
    assert np.array_equal(coact.useful_bytes, bundled.useful_bytes)
    assert coact.reads_per_token().mean() < bundled.reads_per_token().mean()
