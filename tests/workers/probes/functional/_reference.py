"""Independent reference computations for the weight-spectrum tests: explicit loops, plain numpy.

Nothing here is shared with the code under test: eigenvalues come from ``np.linalg.eigvalsh`` of the
Gram matrix, the KS search visits every candidate in a Python loop, and the empirical CDF comes from
``np.searchsorted``.
"""

from __future__ import annotations

import numpy as np


def eigenvalues_numpy(w: np.ndarray) -> np.ndarray:
    """The min(rows, cols) largest eigenvalues of W^T W in float64, ascending, clipped at 0."""
    w = np.asarray(w, dtype=np.float64)
    lam = np.linalg.eigvalsh(w.T @ w)[-min(w.shape):]
    return np.clip(lam, 0.0, None)


def fit_loop(values: np.ndarray, min_tail: int) -> dict | None:
    """PriorProbe's fit: every distinct xmin leaving >= min_tail values, two-sided KS, first minimum."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    best = None
    for xmin in np.unique(x):
        tail = x[x >= xmin]
        n = tail.size
        if n < min_tail:
            continue
        spread = np.sum(np.log(tail / xmin))
        if spread <= 0:
            continue
        alpha = 1.0 + n / spread
        fitted = 1.0 - (tail / xmin) ** (1.0 - alpha)
        # The sup of |F - ECDF| over a step ECDF is reached at a data point, from the left or the right.
        right = np.searchsorted(tail, tail, side="right") / n
        left = np.searchsorted(tail, tail, side="left") / n
        distance = max(np.max(np.abs(fitted - right)), np.max(np.abs(fitted - left)))
        if best is None or distance < best["ks_distance"]:
            best = dict(alpha=alpha, alpha_se=(alpha - 1) / np.sqrt(n), xmin=xmin, n_tail=n, ks_distance=distance)
    return best


def fit_wwfit(values: np.ndarray) -> dict | None:
    """Line-by-line transcription of WeightWatcher's WWFit.fit_power_law (WW_powerlaw.py)."""
    data = np.sort(np.asarray(values, dtype=np.float64))
    N = len(data)
    if N < 2:
        return None
    log_data = np.log(data)
    alphas = np.zeros(N - 1)
    Ds = np.ones(N - 1)
    for i, xmin in enumerate(data[:-1]):
        n = float(N - i)
        alpha = 1 + n / (np.sum(log_data[i:]) - n * log_data[i])
        alphas[i] = alpha
        if alpha > 1:
            Ds[i] = np.max(np.abs(1 - (data[i:] / xmin) ** (-alpha + 1) - np.arange(n) / n))
    sigmas = (alphas - 1) / np.sqrt(N - np.arange(N - 1))
    i = int(np.argmin(Ds))
    return dict(alpha=alphas[i], alpha_se=sigmas[i], xmin=data[i], n_tail=N - i, ks_distance=Ds[i])


def metrics_reference(lam: np.ndarray, fit: dict | None) -> dict:
    """Norm metrics by their textbook formulas, plus the fit-based ones when a fit is given."""
    lam = np.asarray(lam, dtype=np.float64)
    total, lmax = lam.sum(), lam.max()
    p = lam[lam > 0] / total
    out = dict(
        log_norm=np.log10(total),
        log_spectral_norm=np.log10(lmax),
        stable_rank=total / lmax,
        entropy_rank=np.exp(-np.sum(p * np.log(p))),
    )
    if fit is not None:
        out.update(fit)
        out["alpha_weighted"] = fit["alpha"] * np.log10(lmax)
        out["log_alpha_norm"] = np.log10(np.sum(lam ** fit["alpha"]))
    return out
