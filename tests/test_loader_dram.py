"""The flash runtime's DRAM matrix: rows copied as the layout's residency says (no disk)."""

import numpy as np
import pytest

from flashsim.data import REFERENCE_TRACE
from flashsim.layout.dram import DramManager, DramMatrix, check_half_decode
from flashsim.layout.registry import make_layout
from flashsim.layout.window import Residency
from flashsim.trace.format import ActivationTrace


def own_rows(ids):
    """The [fc1 | fc2] row of neuron i in a d_model = 1 matrix: [i, -i]."""
    ids = np.asarray(ids, dtype=np.float32)
    return np.stack([ids, -ids], axis=1)


def test_leaving_rows_are_overwritten_with_the_last_ones():
    res, mat = Residency(1, 16, 1), DramMatrix(16, 1)
    step = res.step(0, 0, np.array([5, 7, 9, 11]))
    mat.apply(step, own_rows(step.new))
    step = res.step(1, 0, np.array([5, 11]))  # 7 and 9 leave: 11 fills 7's row, 9's is cut
    mat.apply(step, own_rows(step.new))
    assert (step.evict.dst_rows.tolist(), step.evict.src_rows.tolist()) == ([1], [3])
    assert step.new.tolist() == [] and step.moved_rows == 1
    assert res.layers[0].n_used == 2 and mat.data[1].tolist() == [11, -11]
    step = res.step(2, 0, np.array([2, 5, 11]))  # 2 is appended after the two kept rows
    mat.apply(step, own_rows(step.new))
    assert step.first_new_row == 2 and mat.data[2].tolist() == [2, -2]
    assert res.rows_of(0, np.array([2, 5, 7, 11])).tolist() == [2, 0, -1, 1]


@pytest.mark.parametrize("window", [None, 1, 3])
def test_every_resident_neuron_finds_its_own_row(window):
    rng = np.random.default_rng(window or 0)
    d, sets = 24, []
    res, mat = Residency(1, d, window), DramMatrix(d, 1)
    for t in range(60):
        ids = np.flatnonzero(rng.random(d) < rng.random() * 0.6)
        sets.append(set(ids.tolist()))
        step = res.step(t, 0, ids)
        mat.apply(step, own_rows(step.new))
        held = set().union(*sets[max(0, t - (window or 1) + 1):]) if window else sets[-1]
        resident = np.flatnonzero(res.layers[0].pos >= 0)
        assert set(resident.tolist()) == held  # the union of the last k sets (or S_t)
        rows = res.rows_of(0, resident)
        assert sorted(rows.tolist()) == list(range(len(held)))  # packed at the top
        assert np.array_equal(mat.data[rows], own_rows(resident))


def test_the_fp16_decode_is_numpys_for_every_pattern():
    check_half_decode()  # raises unless all 65536 halves decode bit for bit as numpy's


@pytest.mark.parametrize("name,params", [
    ("sparse", {}), ("bundled", {"merge_gap_bytes": 64 << 10}),
    ("windowed+bundled", {}), ("windowed", {"merge_gap_bytes": 8192}),
    ("sparse", {"merge_gap_bytes": 1 << 20, "max_read_bytes": 8192}),  # more reads than ranges
])
def test_the_managers_reads_are_the_plans_batch_by_batch(name, params):
    """The manager's one-kernel prepare (window step + read derivation) reads the plan's
    batches exactly, and moves the plan's rows."""
    ref = ActivationTrace.load(REFERENCE_TRACE).head(40)
    layout = make_layout(name, **params)
    plan = layout.plan(ref)
    manager = DramManager(layout, ref.geometry, np.float16)
    assert manager._fused
    first = ref.n_prompt_tokens
    for t in range(ref.n_tokens):
        for l, s in enumerate(ref.predicted):
            step, off, length = manager.prepare(t, l, s[t].astype(np.int64))
            if t >= first:
                want_off, want_len = plan.batch_reads(t - first, l)
                assert np.array_equal(off, want_off) and np.array_equal(length, want_len)
                moved = (step.evict.n_rows + len(step.new)) * 2 * ref.geometry.row_bytes
                assert moved == plan.mem_moved_bytes[t - first, l]
