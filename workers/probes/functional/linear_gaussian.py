"""Exact law of the test MSE of a linear model with Gaussian weights: a known answer for ``init``.

A linear model ``f(x) = W x + b`` (an MLP without hidden layers) whose parameters are i.i.d.
``N(0, s^2)`` has test MSE

    Q = 1 / (N C) sum_o |s A u_o - y_o|^2,       A = [X, 1] (N x (d + 1)),  u_o ~ N(0, I),

for the N test points, C outputs and targets ``y_o`` (one-hot columns for classification). With
the thin SVD ``A = U S V^T`` (rank r) the ``V^T u_o`` are independent standard normals, so

    Q = sum_{o, j} (s^2 S_j^2 / (N C)) chi2_1((U^T y_o)_j^2 / (s S_j)^2) + |(I - U U^T) y_o|^2 / (N C):

a generalised chi-squared (``generalized_chi2``), exact to float64 rounding. Tests and the
calibration experiment use it to check the rare-event estimator on the ``init`` sampler end to end.
"""

from __future__ import annotations

import numpy as np

# Singular values below this fraction of the largest are treated as 0 (rank deficiency).
_RANK_TOLERANCE = 1e-12


def linear_gaussian_mse_law(x, y, scale: float, bias: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """``(weights, noncentralities, offset)`` of the test MSE of ``W x (+ b)`` with ``N(0, scale^2)`` entries.

    Args:
        x: ``(N, d)`` test inputs (flattened per row).
        y: ``(N, C)`` dense targets (one-hot for classification) or ``(N,)`` for one output.
        scale: the init standard deviation ``s`` (> 0).
        bias: whether the model has a bias (an extra column of ones in ``A``).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    a = np.hstack([x, np.ones((len(x), 1))]) if bias else x
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    keep = s > _RANK_TOLERANCE * s.max()
    u, s = u[:, keep], s[keep]
    n_cells = y.size
    projected = u.T @ y  # (r, C)
    weights = np.repeat((scale * s) ** 2 / n_cells, y.shape[1])
    noncentralities = (projected / (scale * s)[:, None]).ravel() ** 2
    offset = float(np.sum((y - u @ projected) ** 2)) / n_cells
    return weights, noncentralities, offset
