"""Least-absolute-deviation fits: timings on a shared machine have heavy upper tails (another
process takes the core for a while), which pull a least-squares fit; the LAD fit follows the
typical sample, like a median does for a constant.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import linprog


def lad_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients c ≥ 0 minimising Σ |y - x @ c| (x: [n, k] drivers, a column of ones for
    a constant). Solved exactly as a linear program; columns scaled to unit size first."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError("lad_fit needs x [n, k] and y [n] with n > 0")
    n, k = x.shape
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    xs = x / scale
    y_scale = float(np.abs(y).max()) or 1.0
    # variables: c (k, ≥ 0), u (n, ≥ 0), v (n, ≥ 0) with xs c + u - v = y; minimise Σ u + v
    cost = np.concatenate([np.zeros(k), np.ones(2 * n)])
    eye = sparse.identity(n, format="csr")
    a_eq = sparse.hstack([sparse.csr_matrix(xs), eye, -eye], format="csr")
    res = linprog(cost, A_eq=a_eq, b_eq=y / y_scale, bounds=(0, None), method="highs")
    if not res.success:  # cannot happen for a feasible LAD; keep the caller honest
        raise RuntimeError(f"LAD fit failed: {res.message}")
    return res.x[:k] / scale * y_scale


def median_or_zero(values: np.ndarray) -> float:
    """The median of `values` (0.0 when empty)."""
    values = np.asarray(values, np.float64)
    return float(np.median(values)) if len(values) else 0.0
