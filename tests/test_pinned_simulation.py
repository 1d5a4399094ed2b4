"""Simulated values on the bundled trace, pinned: a refactor must not move them.

The numbers were produced by the code before the package reorganisation; bytes and read
counts are exact integers of the plan, I/O and total times come from the device model with
fixed memcpy and compute rates (so the host's speed plays no part).
"""

import pytest

from flashsim.cost.compute import ComputeModel
from flashsim.cost.run import simulate_layout
from flashsim.data import REFERENCE_TRACE
from flashsim.device import load_params
from flashsim.trace.format import ActivationTrace

# (layout, merge gap bytes): (io_ms_mean, bytes_per_token, reads_per_token, total_ms_p50)
PINNED = {
    ("naive", 0): (0.9619610053931775, 4194304.0, 4.0, 1.0429210053931772),
    ("sparse", 0): (1.7897456419880342, 1643168.0, 153.3203125, 1.8906011474223),
    ("sparse", 65536): (1.0253389848990415, 3779856.0, 7.37109375, 1.1019413421176245),
    ("windowed+bundled", 0): (0.7675706388577159, 297248.0, 60.58203125, 0.8091630342298889),
    ("windowed+bundled", 65536): (0.82652243445525, 1274336.0, 18.00390625, 0.9093252440044246),
    ("coactivation", 0): (1.1379575053331283, 976464.0, 93.140625, 1.2374769500479859),
    ("coactivation", 65536): (0.8126033609674679, 2222032.0, 8.73046875, 0.9070407394931685),
}


@pytest.fixture(scope="module")
def inputs():
    return ActivationTrace.load(REFERENCE_TRACE), load_params("flashsim/data/devices/m1max-paper.yaml")


@pytest.mark.parametrize("engine", ["fast", "des"])
@pytest.mark.parametrize("key", sorted(PINNED), ids=lambda k: f"{k[0]}-gap{k[1]}")
def test_simulated_values_are_pinned(inputs, key, engine):
    trace, params = inputs
    name, gap = key
    _, s, _ = simulate_layout(name, trace, params, 32, engine=engine, block_bytes=4096,
                              merge_gap_bytes=gap, memcpy_bytes_per_s=1e10,
                              compute_model=ComputeModel(1e-5, 1e-8, "fixed"))
    io_ms, bytes_tok, reads_tok, total_ms = PINNED[key]
    assert s["bytes_per_token"] == bytes_tok and s["reads_per_token"] == reads_tok
    assert s["io_ms_mean"] == pytest.approx(io_ms, rel=1e-9)
    assert s["total_ms_p50"] == pytest.approx(total_ms, rel=1e-9)
