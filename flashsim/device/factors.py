"""Every read's command and transfer factors (base.command_factor, base.transfer_factor) in
one compiled loop, which both engines run: the fast path per batch inside its kernel, SimPy
for a whole call (base.read_factors); the same code, so the same numbers."""

from __future__ import annotations

import numpy as np
from numba import njit

TRANSFER_SALT = np.uint64(0x6A09E667F3BCC909)
"""Mixed into a read's hash for its transfer factor, so it is drawn apart from its command
factor."""


@njit(cache=True, inline="always")
def _mix64(z):
    """splitmix64's finaliser: a bijective 64-bit hash (uint64 arithmetic wraps)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _weibull(z, spread, inv_gamma):
    """E^spread / Γ(1 + spread) with E ~ Exp(1) from the 64-bit hash z: u from its top 53
    bits (exact), E = -log(1 - u); E = 0 (u = 0) gives 0."""
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    e = -np.log1p(-u)
    return np.exp(spread * np.log(e)) * inv_gamma if e > 0.0 else 0.0


@njit(cache=True, nogil=True)
def draw_factors(first_index, offsets, lengths, command_spread, command_inv_gamma,
                 transfer_spread, transfer_inv_gamma, command, transfer):
    """command[r], transfer[r] of read first_index + r: the Weibull factors of the hash of
    (index, offset, length), the transfer's mixed once more with TRANSFER_SALT (a spread
    of 0: every factor 1)."""
    for r in range(len(offsets)):
        z = _mix64(_mix64(_mix64(np.uint64(first_index + r)) ^ np.uint64(offsets[r]))
                   ^ np.uint64(lengths[r]))
        command[r] = (1.0 if command_spread == 0.0
                      else _weibull(z, command_spread, command_inv_gamma))
        transfer[r] = (1.0 if transfer_spread == 0.0
                       else _weibull(_mix64(z ^ TRANSFER_SALT), transfer_spread,
                                     transfer_inv_gamma))
