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


def test_fault_probe_faults_every_page_once_and_scales_each_thread_count(stores):
    """The fault probe gathers every page of the store once per pass with MADV_RANDOM, a
    pass before and after each block: as many major faults as pages; each block's rows
    are predicted by the model times its own ratio, the unscaled error kept; no cgroup is
    left."""
    from flashsim.data import REFERENCE_TRACE
    from flashsim.trace.format import ActivationTrace
    from flashsim.validation.fault_probe import PROBE_PASSES
    from flashsim.validation.mmap import validate_mmap

    before = groups()
    trace = ActivationTrace.load(REFERENCE_TRACE)
    kwargs = dict(store=stores["sparse"].path, reps=1, tokens=3, advice="random",
                  profile="local-virtio", budgets=[2 << 20])
    plain = validate_mmap(trace, ["mmap-sparse"], [1, 2], **kwargs)
    probed = validate_mmap(trace, ["mmap-sparse"], [1, 2], fault_probe=True, **kwargs)
    info = probed.info["fault_probe"]
    pages = stores["sparse"].path.stat().st_size // 4096
    assert info["pages"] == pages and info["budget_bytes"] == 2 << 20
    for q in ("1", "2"):  # one block at each: passes before it and after
        assert len(info["major_faults"][q]) == 2 * PROBE_PASSES and len(info["factors"][q]) == 1
        assert all(abs(f - pages) <= 2 for f in info["major_faults"][q])
    for a, b in zip(plain.rows, probed.rows):
        factor = info["factors"][str(b["queue_depth"])][0]
        assert factor > 0
        assert b["predicted_io_ms_mean_part"] == pytest.approx(
            a["predicted_io_ms_mean_part"] * factor, rel=1e-9)
        assert np.isfinite(b["unprobed_error"])
    assert groups() == before


def test_fault_probe_and_drift_probe_are_one_or_the_other(stores):
    from flashsim.data import REFERENCE_TRACE
    from flashsim.errors import InputError
    from flashsim.trace.format import ActivationTrace
    from flashsim.validation.mmap import validate_mmap

    trace = ActivationTrace.load(REFERENCE_TRACE)
    with pytest.raises(InputError, match="--fault-probe"):
        validate_mmap(trace, ["mmap-sparse"], [1], budgets=[2 << 20],
                      store=stores["sparse"].path, profile="local-virtio", reps=1, tokens=2,
                      drift_probe=True, fault_probe=True)
