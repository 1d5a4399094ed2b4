"""A read's factors from the quantile table: the Weibull's quantile within the table's stated
error, mean 1, and the fast path's chunks balanced over its CPUs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flashsim.device.base import factor_table
from flashsim.device.factors import QUANTILE_CELLS, _weibull, draw_factors
from flashsim.device.fast import CHUNK_READS, balanced_chunk_reads, chunk_bounds


def _exact(u: np.ndarray, spread: float) -> np.ndarray:
    """E^spread / Γ(1 + spread), E = -log(1 - u), in numpy."""
    return np.power(-np.log1p(-u), spread) / math.gamma(1.0 + spread)


@pytest.mark.parametrize(("spread", "rel"), [(0.1, 1e-4), (0.435, 1e-4), (1.0, 1e-4),
                                             (2.0, 3e-4), (4.0, 2e-3)])
def test_a_factor_is_the_weibull_quantile_of_its_hash(spread, rel):
    """The factor of a hash whose top 53 bits are u is the Weibull quantile at u within the
    stated relative error, at u spread over every cell of the table (numpy's quantile)."""
    inv_gamma = 1.0 / math.gamma(1.0 + spread)
    table = factor_table(spread, inv_gamma)
    steps = QUANTILE_CELLS * 8
    u_bits = [((2 * k + 1) << 53) // (2 * steps) for k in range(steps)]  # mid-steps
    factors = [_weibull(np.uint64(b << 11), spread, inv_gamma, table) for b in u_bits]
    exact = _exact(np.array(u_bits, dtype=np.float64) / float(1 << 53), spread)
    assert np.max(np.abs(np.array(factors) / exact - 1.0)) < rel


@pytest.mark.parametrize("spread", [0.3, 1.0, 2.0])
def test_drawn_factors_average_one(spread):
    """Over 400 k reads the drawn factors average 1 (the Weibull's mean) and their median
    is the quantile at 1/2."""
    n = 400_000
    off = np.arange(n, dtype=np.int64) * 4096
    length = np.full(n, 4096, dtype=np.int64)
    inv_gamma = 1.0 / math.gamma(1.0 + spread)
    table = factor_table(spread, inv_gamma)
    command, transfer = np.empty(n), np.empty(n)
    draw_factors(0, off, length, spread, inv_gamma, table, spread, inv_gamma, table, command,
                 transfer)
    tol = 0.01 * (1.0 + spread) ** 2
    assert command.mean() == pytest.approx(1.0, abs=tol)
    assert transfer.mean() == pytest.approx(1.0, abs=tol)
    assert np.median(command) == pytest.approx(_exact(np.array([0.5]), spread)[0], rel=0.01)
    assert not np.array_equal(command, transfer)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n_reads", [1, CHUNK_READS, 5 * CHUNK_READS - 7, 40 * CHUNK_READS])
def test_chunks_come_in_a_multiple_of_the_cpus(threads, n_reads):
    """Chunks of about CHUNK_READS reads, their number a multiple of the CPUs when there is
    more than one chunk (5 chunks on 2 CPUs would leave one idle a fifth of the call)."""
    reads = balanced_chunk_reads(n_reads, threads)
    n_chunks = -(-n_reads // reads)
    assert reads <= CHUNK_READS
    if n_chunks > 1 and threads > 1:
        assert n_chunks % threads == 0
    ptr = np.arange(n_reads + 1, dtype=np.int64)  # one-read batches: cuts fall anywhere
    assert len(chunk_bounds(ptr, reads)) == n_chunks
