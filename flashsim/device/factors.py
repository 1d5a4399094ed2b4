"""Every read's command and transfer factors (base.command_factor, base.transfer_factor) in
one compiled loop, which both engines run: the fast path per batch inside its kernel, SimPy
for a whole call (base.read_factors); the same code, so the same numbers.

A factor is the Weibull quantile q(u) = (-log(1 - u))^spread / Γ(1 + spread) of a uniform u
hashed from the read. q is read from a table of QUANTILE_CELLS cells, interpolated linearly,
and computed exactly in the cells at either end (2.3 % of draws), where it bends most
(u^spread near 0, the logarithm's tail near 1): three transcendental functions a factor were
over half of the fast path's time on a plan. The table's relative error is < 1e-4 for a
spread ≤ 1, < 3e-4 at 2 and < 2e-3 at 4, far below any measured spread.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TRANSFER_SALT = np.uint64(0x6A09E667F3BCC909)
"""Mixed into a read's hash for its transfer factor, so it is drawn apart from its command
factor."""

QUANTILE_CELLS = 2048
"""Cells of a factor's quantile table, equal in u (a power of two: u × cells is exact)."""

EXACT_HEAD_CELLS, EXACT_TAIL_CELLS = 32, 16
"""Cells at either end of the table where a factor is computed, not interpolated."""


@njit(cache=True, inline="always")
def _mix64(z):
    """splitmix64's finaliser: a bijective 64-bit hash (uint64 arithmetic wraps)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _quantile(u, spread, inv_gamma):
    """The factor at uniform u in [0, 1): E^spread / Γ(1 + spread), E = -log(1 - u) ~ Exp(1);
    E = 0 (u = 0) gives 0."""
    e = -np.log1p(-u)
    return np.exp(spread * np.log(e)) * inv_gamma if e > 0.0 else 0.0


@njit(cache=True)
def quantile_table(spread, inv_gamma):
    """The factor at u = j / QUANTILE_CELLS for j = 0 … QUANTILE_CELLS (the last: inf)."""
    table = np.empty(QUANTILE_CELLS + 1)
    for j in range(QUANTILE_CELLS):
        table[j] = _quantile(j * (1.0 / QUANTILE_CELLS), spread, inv_gamma)
    table[QUANTILE_CELLS] = np.inf
    return table


@njit(cache=True, inline="always")
def _weibull(z, spread, inv_gamma, table):
    """The factor of the 64-bit hash z: u from its top 53 bits (exact), q(u) from the table
    (in the end cells exactly)."""
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    x = u * QUANTILE_CELLS
    j = int(x)
    if j < EXACT_HEAD_CELLS or j >= QUANTILE_CELLS - EXACT_TAIL_CELLS:
        return _quantile(u, spread, inv_gamma)
    return table[j] + (x - j) * (table[j + 1] - table[j])


@njit(cache=True, nogil=True)
def draw_factors(first_index, offsets, lengths, command_spread, command_inv_gamma,
                 command_table, transfer_spread, transfer_inv_gamma, transfer_table, command,
                 transfer):
    """command[r], transfer[r] of read first_index + r: the Weibull factors of the hash of
    (index, offset, length), the transfer's mixed once more with TRANSFER_SALT (a spread
    of 0: every factor 1; each spread's table from quantile_table)."""
    for r in range(len(offsets)):
        z = _mix64(_mix64(_mix64(np.uint64(first_index + r)) ^ np.uint64(offsets[r]))
                   ^ np.uint64(lengths[r]))
        command[r] = (1.0 if command_spread == 0.0
                      else _weibull(z, command_spread, command_inv_gamma, command_table))
        transfer[r] = (1.0 if transfer_spread == 0.0
                       else _weibull(_mix64(z ^ TRANSFER_SALT), transfer_spread,
                                     transfer_inv_gamma, transfer_table))
