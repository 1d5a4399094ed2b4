"""The after-compute cost of a batch: measured beside the short batches, kept in the profile,
added to a decode's batches (simulate, advise, end-to-end) and not to validate's replay."""

import numpy as np
import pytest

from flashsim.cost.compute_model import ComputeModel
from flashsim.cost.simulate import io_seconds, io_seconds_draws, simulate
from flashsim.data import REFERENCE_TRACE
from flashsim.device import DeviceProfile, make_device
from flashsim.device.interleave import batch_overhead_s, measure_interleave
from flashsim.device.profile import InterleaveInfo
from flashsim.errors import InputError
from flashsim.io.reader import DirectReader
from flashsim.layout.registry import make_layout
from flashsim.trace.format import ActivationTrace

OVERHEAD_US = 150.0


@pytest.fixture(scope="module")
def plan():
    return make_layout("windowed+bundled", window=5).plan(ActivationTrace.load(REFERENCE_TRACE))


@pytest.fixture(scope="module")
def profile():
    base = DeviceProfile.load("local-virtio")
    return base.model_copy(update={"interleave": InterleaveInfo(
        batch_overhead_us=OVERHEAD_US, gap_us=400.0)})


def test_a_decode_pays_the_overhead_on_every_nonempty_batch_only(plan, profile):
    back = io_seconds(plan, profile, 8)
    decode = io_seconds(plan, profile, 8, interleaved=True)
    nonempty = (np.diff(plan.batch_ptr) > 0).reshape(plan.n_tokens, plan.n_layers)
    assert 0 < nonempty.sum() < nonempty.size  # the reference plan has empty batches too
    np.testing.assert_allclose(decode - back, OVERHEAD_US * 1e-6 * nonempty, atol=1e-12)
    draws = io_seconds_draws(plan, profile, 8, 3, interleaved=True)
    np.testing.assert_allclose(draws[0], decode, rtol=1e-12)
    # a device model made once from the profile (as validate makes it) carries the cost too
    made = io_seconds(plan, make_device(profile), 8, interleaved=True)
    np.testing.assert_allclose(made, decode, rtol=1e-12)


def test_simulate_estimates_a_decode_so_it_counts_the_overhead(plan, profile):
    bare = profile.model_copy(update={"interleave": None})
    opts = {"memcpy_bytes_per_s": 10e9,  # fixed models: nothing timed on this machine
            "compute_model": ComputeModel.from_rates({}, "none")}
    with_o, _ = simulate(plan, profile, 8, **opts)
    without, _ = simulate(plan, bare, 8, **opts)
    nonempty = (np.diff(plan.batch_ptr) > 0).reshape(plan.n_tokens, plan.n_layers).sum(axis=1)
    np.testing.assert_allclose(with_o["io_ms"] - without["io_ms"], OVERHEAD_US * 1e-3 * nonempty,
                               atol=1e-9)


def test_profiles_without_the_section_and_bare_parameters_cost_nothing_more(profile):
    assert batch_overhead_s(profile) == pytest.approx(OVERHEAD_US * 1e-6)
    assert batch_overhead_s(DeviceProfile.load("m1max-paper")) == 0.0
    assert batch_overhead_s(profile.require_params()) == 0.0


def test_the_section_round_trips_and_a_bad_value_names_its_key(profile, tmp_path):
    path = tmp_path / "p.yaml"
    profile.save(path)
    again = DeviceProfile.load(path)
    assert again.interleave.batch_overhead_us == OVERHEAD_US
    text = path.read_text().replace(f"batch_overhead_us: {OVERHEAD_US}", "batch_overhead_us: -3")
    path.write_text(text)
    with pytest.raises(InputError, match="interleave.batch_overhead_us"):
        DeviceProfile.load(path)


@pytest.mark.disk
def test_measured_on_a_real_file_both_kinds_of_batch_per_point(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4 << 20))
    with DirectReader(path, allow_page_cache=True) as reader:
        got = measure_interleave(reader, np.random.default_rng(0), batches=10, gap_us=50.0)
    assert len(got["points"]) == 6
    for p in got["points"]:
        assert p["back_to_back_us"] > 0 and p["after_compute_us"] > 0
        assert p["overhead_us"] == pytest.approx(p["after_compute_us"] - p["back_to_back_us"],
                                                 abs=0.02)
    assert got["batch_overhead_us"] >= 0 and got["gap_us"] == 50.0
    InterleaveInfo(**got)  # what calibrate stores validates
