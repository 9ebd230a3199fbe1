"""Interval estimates for the inductive-bias estimator (docs/methods.md §1).

- ``clopper_pearson``: the exact binomial interval of a fraction ``k / n`` (Clopper & Pearson 1934),
  from quantiles of the beta distribution; it never covers less than its level.
- ``bootstrap_bits``: the percentile bootstrap of the fitted bits. Each of ``n_boot`` resamples (``n``
  losses drawn with replacement) is refitted and its bits computed; the caller takes percentiles.
  Refits start from the full-sample fit, which is close to every resample's optimum, so each takes
  few likelihood evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from workers.probes.functional.noncentral_chi2 import NcChi2Fit, bits_below, bits_below_fits, mle_fit, mle_refits

FitFn = Callable[[np.ndarray, NcChi2Fit | None], NcChi2Fit]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided ``level`` interval for a binomial proportion with ``k`` successes in ``n``.

    ``low = Beta(alpha/2; k, n-k+1)`` (0 when ``k = 0``), ``high = Beta(1-alpha/2; k+1, n-k)`` (1 when
    ``k = n``), ``alpha = 1 - level``. Raises ``ValueError`` unless ``0 <= k <= n``, ``n >= 1`` and
    ``0 < level < 1``.
    """
    if not (n >= 1 and 0 <= k <= n):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def bootstrap_bits(
    losses,
    epsilon: float,
    n_boot: int = 200,
    seed: int = 0,
    fit_fn: FitFn = mle_fit,
    full_fit: NcChi2Fit | None = None,
) -> np.ndarray:
    """Bits at ``epsilon`` refitted on ``n_boot`` bootstrap resamples of the losses.

    Args:
        losses: positive finite losses (1-D).
        epsilon: the target loss (positive).
        n_boot: number of resamples (default 200).
        seed: seeds a ``numpy.random.Generator``; the result depends on nothing else (default 0).
        fit_fn: ``fit_fn(sample, start) -> NcChi2Fit`` (default ``mle_fit``).
        full_fit: the fit of the whole sample, used as every refit's start; computed with
            ``fit_fn(losses, None)`` when not given.

    Returns:
        Array of ``n_boot`` bits, in resample order; percentiles of it are the interval.
    """
    x = np.asarray(losses, dtype=np.float64).ravel()
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    start = full_fit if full_fit is not None else fit_fn(x, None)
    if fit_fn is mle_fit:
        return bits_below_fits(epsilon, bootstrap_mle_refits(x, n_boot, seed, start))
    indices = _resample_indices(x.size, n_boot, seed)
    return np.array([bits_below(epsilon, fit_fn(x[row], start)) for row in indices])


def _resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_mle_refits(losses: np.ndarray, n_boot: int, seed: int, start: NcChi2Fit):
    """The maximum-likelihood fits of ``bootstrap_bits``'s resamples (same seed, same resamples),
    for callers that read them at several epsilons. All resamples are fitted at once
    (``noncentral_chi2.mle_refits``): one array call per likelihood evaluation for all of them
    instead of one optimisation per resample."""
    x = np.asarray(losses, dtype=np.float64).ravel()
    counts = np.zeros((n_boot, x.size), dtype=np.int64)
    np.add.at(counts, (np.arange(n_boot)[:, None], _resample_indices(x.size, n_boot, seed)), 1)
    return mle_refits(x, counts, start)
