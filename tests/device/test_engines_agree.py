"""The numba fast path replays the SimPy reference: the same makespans and per-read times
with every model term switched on."""

import numpy as np
import pytest

from device_cases import (
    AMORTIZED,
    BATCH_START,
    CALLS,
    CALLS_TWO_CPUS,
    CONGESTED,
    ONE_CPU,
    PARAMS,
    PASSES,
    SHARED_HOST,
    SPREAD,
    SPREAD_BASE,
    TWO_CPUS,
    mixed_batches,
    random_reads,
)
from flashsim.device import fast as fast_module
from flashsim.device.base import ModelConstants, command_factor, read_factors, transfer_factor
from flashsim.device.des import FlashDevice
from flashsim.device.fast import FastDevice, chunk_bounds
from flashsim.errors import InputError


@pytest.mark.parametrize("qd", [1, 4, 32, 64])
@pytest.mark.parametrize("params", [PARAMS, CONGESTED, SHARED_HOST, TWO_CPUS, BATCH_START, CALLS,
                                    CALLS_TWO_CPUS],
                         ids=["plain", "congested", "one-host-cpu", "two-host-cpus",
                              "batch-start", "host-calls", "host-calls-two-cpus"])
def test_fast_path_matches_simpy_within_one_percent(qd, params):
    rng = np.random.default_rng(qd)
    off, length, ptr = mixed_batches(rng, 12)
    des = FlashDevice(params).run_batches(off, length, ptr, qd)
    fast = FastDevice(params).run_batches(off, length, ptr, qd)
    assert np.all(des > 0)
    assert np.max(np.abs(fast - des) / des) <= 0.01
    # and per read, on one batch
    a = FlashDevice(params).run(off[:ptr[3]], length[:ptr[3]], qd)
    b = FastDevice(params).run(off[:ptr[3]], length[:ptr[3]], qd)
    assert np.max(np.abs(a.finish_s - b.finish_s)) <= 0.01 * a.makespan_s


@pytest.mark.parametrize("qd", [2, 8, 32])
def test_fast_path_matches_simpy_with_amortization(qd):
    params = AMORTIZED.model_copy(update={
        "link_amortization_per_read": 0.07, "n_units": 5, "stripe_bytes": 16384,
        "host_cpus": 1, "host_completion_us": 2.0, "link_wakeup_us": 6.0,
        "link_congestion_per_read": 0.002, "transport_latency_us": 3.0,
        "command_latency_spread": 0.8, "host_call_us": 4.0, "batch_start_us": 15.0})
    rng = np.random.default_rng(qd)
    sizes = rng.integers(1, 70, size=10)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    off = rng.integers(0, 1 << 18, size=ptr[-1]) * 4096
    length = rng.choice([4096, 16384, 65536], size=ptr[-1])
    des = FlashDevice(params).run_batches(off, length, ptr, qd)
    fast = FastDevice(params).run_batches(off, length, ptr, qd)
    assert np.all(des > 0)
    assert fast == pytest.approx(des, rel=1e-9)
    a = FlashDevice(params).run(off[:ptr[2]], length[:ptr[2]], qd)
    b = FastDevice(params).run(off[:ptr[2]], length[:ptr[2]], qd)
    assert b.finish_s == pytest.approx(a.finish_s, rel=1e-9)


@pytest.mark.parametrize("qd", [1, 8, 32])
def test_fast_path_matches_simpy_with_transfer_spread(qd):
    off, length = random_reads(400, qd)
    ptr = np.array([0, 1, 40, 41, 200, 400])
    des = FlashDevice(SPREAD).run_batches(off, length, ptr, qd)
    fast = FastDevice(SPREAD).run_batches(off, length, ptr, qd)
    assert fast == pytest.approx(des, rel=1e-9)
    plain = FastDevice(SPREAD_BASE).run_batches(off, length, ptr, qd)
    assert not np.allclose(fast, plain)  # the spread changes the answer


PASS_SETS = [
    ONE_CPU.model_copy(update={"command_latency_us": 12.0, "command_latency_spread": 0.8,
                               "unit_bandwidth_mb_s": 300.0, "n_units": 4, "stripe_bytes": 16384,
                               "link_bandwidth_mb_s": 1500.0, "link_overhead_us": 3.0,
                               "link_wakeup_us": 7.0, "host_call_us": 4.0,
                               "batch_start_us": 25.0, "link_transfer_spread": 0.3,
                               "transport_latency_us": 2.0}),
    PASSES.model_copy(update={"link_congestion_per_read": 0.01, "link_amortization_per_read": 0.2,
                              "link_overhead_us": 9.0, "unit_bandwidth_mb_s": 500.0,
                              "n_units": 3, "stripe_bytes": 65536}),
    PASSES.model_copy(update={"host_cpus": 2, "host_call_us": 3.0, "link_wakeup_us": 20.0,
                              "unit_bandwidth_mb_s": 800.0, "n_units": 2,
                              "link_bandwidth_mb_s": 900.0}),
]


@pytest.mark.parametrize("qd", [1, 3, 8, 32])
@pytest.mark.parametrize("params", PASS_SETS, ids=["one-cpu", "unshared", "two-cpus"])
def test_fast_path_equals_simpy_with_passes(qd, params):
    rng = np.random.default_rng(qd)
    n = 300
    off = rng.integers(0, 4096, size=n) * 4096
    length = rng.choice([4096, 12288, 65536, 1 << 20], size=n)
    ptr = np.array([0, 1, 40, 40, 170, n])
    des = FlashDevice(params).run_batches(off, length, ptr, qd)
    fast = FastDevice(params).run_batches(off, length, ptr, qd)
    assert np.all(des[[0, 1, 3, 4]] > 0)
    np.testing.assert_allclose(fast, des, rtol=1e-12, atol=0)
    a = FlashDevice(params).run(off, length, qd)
    b = FastDevice(params).run(off, length, qd)
    np.testing.assert_allclose(b.finish_s, a.finish_s, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.start_s, a.start_s, rtol=1e-12, atol=0)


@pytest.mark.parametrize("qd", [1, 5, 32, 100])
@pytest.mark.parametrize("params", [PARAMS, SHARED_HOST, SPREAD, PASS_SETS[2]],
                         ids=["plain", "one-host-cpu", "spread", "passes-two-cpus"])
def test_fast_path_pops_tied_events_in_simpys_order(qd, params):
    """Reads alike on one unit, with no host or command time: many events fall at one
    instant, and only SimPy's order of scheduling breaks the ties (a tie broken otherwise
    changes which read takes the unit first, far beyond rounding)."""
    same = params.model_copy(update={"host_overhead_us": 0.0, "command_latency_us": 0.0,
                                     "command_latency_spread": 0.0, "n_units": 1,
                                     "host_completion_us": 0.0})
    n = 150
    off = np.zeros(n, dtype=np.int64)
    length = np.where(np.arange(n) % 7 == 3, 16384, 4096)
    ptr = np.array([0, 1, 2, 34, 34, 90, n])
    des = FlashDevice(same).run_batches(off, length, ptr, qd)
    fast = FastDevice(same).run_batches(off, length, ptr, qd)
    np.testing.assert_allclose(fast, des, rtol=1e-12, atol=0)
    a, b = FlashDevice(same).run(off, length, qd), FastDevice(same).run(off, length, qd)
    np.testing.assert_allclose(b.start_s, a.start_s, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(b.finish_s, a.finish_s, rtol=1e-12, atol=0)


def test_a_batch_of_factors_is_every_read_drawn_alone():
    """`read_factors` (the SimPy engine's draws for a whole call) gives each read's
    command_factor and transfer_factor, read i drawn as read first_index + i."""
    k = ModelConstants.from_params(SPREAD)
    rng = np.random.default_rng(9)
    off = rng.integers(0, 1 << 40, size=500)
    length = rng.integers(1, 1 << 24, size=500)
    command, transfer = read_factors(77, off, length, k)
    reads = [(77 + j, int(o), int(n)) for j, (o, n) in enumerate(zip(off, length))]
    np.testing.assert_array_equal(
        command, [command_factor(*r, k.command_spread, k.command_inv_gamma) for r in reads])
    np.testing.assert_array_equal(
        transfer, [transfer_factor(*r, k.transfer_spread, k.transfer_inv_gamma) for r in reads])
    assert len(set(command.tolist())) == 500  # every read drawn apart
    assert not np.array_equal(command, transfer)
    flat = ModelConstants.from_params(PARAMS)
    for factors in read_factors(0, off, length, flat):
        np.testing.assert_array_equal(factors, np.ones(500))


def test_chunks_cover_every_batch_once_cut_at_batch_boundaries():
    """Chunks of about `chunk_reads` reads: every batch in exactly one, in order; a batch
    larger than a chunk is a chunk of its own; empty batches ride along."""
    ptr = np.array([0, 3, 3, 10, 30, 31, 31, 40, 41])
    chunks = chunk_bounds(ptr, chunk_reads=8)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(ptr) - 1
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert all(b0 < b1 for b0, b1 in chunks)
    assert (3, 4) in chunks  # the 20-read batch alone
    assert chunk_bounds(np.array([0]), chunk_reads=8) == []
    assert chunk_bounds(np.array([0, 0, 0]), chunk_reads=8) == [(0, 2)]


@pytest.mark.parametrize("params", [SPREAD, PASS_SETS[2], CALLS_TWO_CPUS],
                         ids=["spread", "passes-two-cpus", "host-calls-two-cpus"])
def test_threads_and_chunks_do_not_change_the_answer(params, monkeypatch):
    """The fast path in small chunks over two threads gives every batch the makespan of one
    call on one thread (the factors follow a read's index in the whole call), and SimPy's."""
    rng = np.random.default_rng(4)
    off, length, ptr = mixed_batches(rng, 40)
    whole = FastDevice(params, threads=1).run_batches(off, length, ptr, 8)
    monkeypatch.setattr(fast_module, "CHUNK_READS", 7)
    assert len(chunk_bounds(ptr, 7)) > 5
    chunked = FastDevice(params, threads=2).run_batches(off, length, ptr, 8)
    np.testing.assert_array_equal(chunked, whole)
    des = FlashDevice(params).run_batches(off, length, ptr, 8)
    np.testing.assert_allclose(chunked, des, rtol=1e-12, atol=0)


def _cut_shares(ptr: np.ndarray, qd: int, rng: np.random.Generator) -> np.ndarray:
    """Each batch cut into qd contiguous shares at random points (some shares empty)."""
    rows = []
    for lo, hi in zip(ptr[:-1], ptr[1:]):
        cuts = np.sort(rng.integers(lo, hi + 1, size=qd - 1))
        rows.append(np.concatenate([[lo], cuts, [hi]]))
    return np.array(rows, dtype=np.int64)


@pytest.mark.parametrize("qd", [1, 3, 8])
@pytest.mark.parametrize("params", [PARAMS, SPREAD, PASS_SETS[2], CALLS_TWO_CPUS],
                         ids=["plain", "spread", "passes-two-cpus", "host-calls-two-cpus"])
def test_engines_agree_when_each_worker_reads_its_own_share(qd, params):
    """Workers that each issue only their share of a batch (threads faulting their own
    rows): the fast path replays SimPy, batch by batch and in chunks."""
    rng = np.random.default_rng(qd + 11)
    off, length, ptr = mixed_batches(rng, 10)
    shares = _cut_shares(ptr, qd, rng)
    des = FlashDevice(params).run_batches(off, length, ptr, qd, shares=shares)
    fast = FastDevice(params, threads=2).run_batches(off, length, ptr, qd, shares=shares)
    np.testing.assert_allclose(fast, des, rtol=1e-12, atol=0)


def test_a_worker_with_its_own_share_cannot_help_the_others():
    """One share holding every read takes as long as the reads one at a time; an even cut
    over qd workers takes well under that."""
    off = np.arange(64, dtype=np.int64) * 7 * 4096  # over every unit
    length = np.full(64, 4096)
    ptr = np.array([0, 64])
    qd = 8
    device = FastDevice(PARAMS)
    serial = device.run_batches(off, length, ptr, 1)[0]
    lopsided = np.array([[0] + [64] * qd])  # worker 0 has every read
    assert device.run_batches(off, length, ptr, qd, shares=lopsided)[0] == pytest.approx(
        serial, rel=1e-9)
    even = np.array([np.linspace(0, 64, qd + 1).astype(np.int64)])
    assert device.run_batches(off, length, ptr, qd, shares=even)[0] < serial / 2


def test_bad_shares_are_refused_with_the_key():
    off, length, ptr = np.zeros(4, np.int64), np.full(4, 4096), np.array([0, 4])
    with pytest.raises(InputError, match="shares"):
        FastDevice(PARAMS).run_batches(off, length, ptr, 2, shares=np.array([[0, 3, 2]]))
    with pytest.raises(InputError, match="shares"):
        FlashDevice(PARAMS).run_batches(off, length, ptr, 2, shares=np.array([[0, 4]]))
