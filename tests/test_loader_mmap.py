"""The real mmap baseline: the decode reading its FFN rows through the page cache of the
mapped store, inside a memory cgroup, gives the in-DRAM decode's tokens; the cgroup goes."""

import os
from pathlib import Path

import numpy as np
import pytest

from flashsim.layout.registry import make_layout
from flashsim.loader.mmap_source import CGROUP_PREFIX, generate_mmap
from flashsim.loader.store import store_for
from flashsim.model.checkpoint import load_checkpoint
from flashsim.trace.capture import capture_trace

pytestmark = pytest.mark.disk

PROMPT = "The history of the city begins with a small settlement on the river"
CGROUPS = Path("/sys/fs/cgroup/memory")


def groups() -> set[str]:
    return {p.name for p in CGROUPS.glob(CGROUP_PREFIX + "*")}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    if os.geteuid() != 0 or not (CGROUPS / "memory.limit_in_bytes").exists():
        pytest.skip("needs root and a cgroup v1 memory hierarchy")
    folder = tmp_path_factory.mktemp("mmap")
    ckpt = load_checkpoint(None)
    return {p: store_for(ckpt, make_layout(f"mmap-{p}"), folder) for p in ("sparse", "dense")}


def test_sparse_mmap_decode_gives_the_in_dram_tokens(stores):
    before = groups()
    ref = capture_trace(None, PROMPT, 12, quiet=True)
    lay = make_layout("mmap-sparse", budget_bytes=8 << 20)
    got = generate_mmap(stores["sparse"].path, lay, prompt_text=PROMPT, n_tokens=12)
    assert np.array_equal(got["token_ids"], ref.token_ids)
    assert got["cgroup"]["major_faults"] >= 1 and got["cgroup"]["limit_bytes"] > 8 << 20
    assert groups() == before


def test_dense_mmap_decode_reads_every_row(stores):
    before = groups()
    lay = make_layout("mmap-dense", budget_bytes=8 << 20)
    got = generate_mmap(stores["dense"].path, lay, prompt_text=PROMPT, n_tokens=4)
    whole = make_layout("mmap-dense")
    again = generate_mmap(stores["dense"].path, whole, prompt_text=PROMPT, n_tokens=4)
    assert np.array_equal(got["generated_ids"], again["generated_ids"])
    n_rows = 2 * 1024 * 4  # fc1 + fc2 rows of every layer, every token
    assert all(r["bytes_read"] == n_rows * 512 for r in got["per_token"])
    assert groups() == before


def test_both_page_cache_models_predict_the_same_measured_runs(stores):
    from flashsim.data import REFERENCE_TRACE
    from flashsim.trace.format import ActivationTrace
    from flashsim.validation.mmap import validate_mmap

    before = groups()
    trace = ActivationTrace.load(REFERENCE_TRACE)
    res = validate_mmap(trace, ["mmap-sparse"], [1], budgets=[2 << 20],
                        store=stores["sparse"].path, profile="m1max-paper", reps=1, tokens=4,
                        advice="random", page_cache=["lru", "two-list"])
    lru, two = res.rows
    assert (lru["page_cache"], two["page_cache"]) == ("lru", "two-list")
    assert lru["measured_ms"] == two["measured_ms"] > 0  # one set of runs, two predictions
    assert two["predicted_cache_bytes"] == lru["predicted_cache_bytes"] - (256 << 10)
    assert 0 < two["measured_cache_bytes"] <= (2 << 20) + (1 << 20)  # the cgroup's own view
    assert groups() == before


def test_drift_probe_scales_the_mmap_rows_and_leaves_no_file(stores, tmp_path):
    """With the drift probe the rows are predicted by the profile's model times the
    measured factor: the scaled row's I/O part is the unscaled one's × the factor, the
    unscaled error is kept, and the probe's own file goes."""
    from flashsim.data import REFERENCE_TRACE
    from flashsim.device.profile import DeviceProfile
    from flashsim.trace.format import ActivationTrace
    from flashsim.validation.drift_probe import PROBE_FILE
    from flashsim.validation.mmap import validate_mmap

    prof = DeviceProfile.load("flashsim/data/devices/local-virtio.yaml")
    measured = prof.measured.model_copy(update={  # a small probe file, quickly
        "file_path": str(tmp_path / "gone.bin"), "file_bytes": 8 << 20,
        "point_duration_s": 0.02, "warmup_s": 0.01})
    prof = prof.model_copy(update={"measured": measured})
    trace = ActivationTrace.load(REFERENCE_TRACE)
    kwargs = dict(store=stores["sparse"].path, reps=1, tokens=3, advice="random")
    plain = validate_mmap(trace, ["mmap-sparse"], [1, 2], budgets=[2 << 20], profile=prof,
                          **kwargs)
    probed = validate_mmap(trace, ["mmap-sparse"], [1, 2], budgets=[2 << 20], profile=prof,
                           drift_probe=True, **kwargs)
    info = probed.info["drift_probe"]
    assert info["measurements"] > 0 and info["factor"] > 0 and info["qds"] == [1, 2]
    assert not (stores["sparse"].path.parent / PROBE_FILE).exists()
    assert "drift_probe" not in plain.info and "undrifted_error" not in plain.rows[0]
    for a, b in zip(plain.rows, probed.rows):
        assert b["predicted_io_ms_mean_part"] == pytest.approx(
            a["predicted_io_ms_mean_part"] * info["factor"], rel=1e-9)
        assert np.isfinite(b["undrifted_error"])
