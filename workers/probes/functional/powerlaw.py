"""Continuous power-law fit of the upper tail of a spectrum (Clauset, Shalizi & Newman 2009).

Idea: above some ``xmin`` the values follow ``p(x) ∝ x^-alpha``. For a given ``xmin`` the
maximum-likelihood exponent of the ``n`` values ``x_i >= xmin`` is

    alpha = 1 + n / sum_i ln(x_i / xmin),          standard error (alpha - 1) / sqrt(n),

and ``xmin`` is the candidate that minimises the Kolmogorov-Smirnov distance between the tail's
empirical CDF and the fitted CDF ``F(x) = 1 - (x / xmin)^(1 - alpha)``.

Every candidate is scored at once: the exponents come from suffix sums of ``ln x``, the KS
distances from one broadcast (candidates x values) array. That array has about ``m^2 / 2`` useful
entries for ``m`` values, so candidates are processed in blocks of consecutive candidates holding at
most ``_BLOCK_ELEMENTS`` entries each; the block loop only bounds memory (a few hundred MB at most),
it never visits single candidates.

Two variants share that machinery:

- ``fit_power_law`` (PriorProbe): candidates are the distinct values whose tail holds at least
  ``min_tail`` values; the KS distance is the two-sided supremum ``max_x |F(x) - ECDF(x)|`` (both
  one-sided limits of the step function are checked); ties in the minimum distance go to the
  smallest ``xmin`` (the largest tail).
- ``fit_power_law_weightwatcher``: a transcription of WeightWatcher's ``WWFit``
  (``weightwatcher/WW_powerlaw.py``): every value but the largest is a candidate (tails of 2 values
  count), the distance is ``max_k |F(x_k) - k / n|`` over the tail's 0-based ranks ``k`` (the lower
  empirical CDF only), a candidate with ``alpha <= 1`` scores 1, and ``np.argmin`` picks the first
  minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Entries of one (candidates x values) block: 2**21 float64 = 16 MiB per temporary array.
_BLOCK_ELEMENTS = 1 << 21

_Statistic = Literal["two_sided", "lower"]


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted power-law tail.

    ``alpha``: the exponent; ``alpha_se``: its standard error ``(alpha - 1) / sqrt(n_tail)``;
    ``xmin``: the start of the tail (the smallest value included); ``n_tail``: how many values
    ``>= xmin`` the fit used; ``ks_distance``: the KS distance of the chosen fit (statistic as
    described in the module docstring for the variant that produced it).
    """

    alpha: float
    alpha_se: float
    xmin: float
    n_tail: int
    ks_distance: float


def fit_power_law(values: np.ndarray, min_tail: int = 10, *, block_elements: int = _BLOCK_ELEMENTS) -> PowerLawFit | None:
    """PriorProbe's power-law tail fit (module docstring: MLE alpha, two-sided KS-chosen xmin).

    Args:
        values: positive, finite numbers (any shape; flattened). Zero eigenvalues must be removed by
            the caller: ``ln 0`` has no place in a power law.
        min_tail: the smallest tail a candidate ``xmin`` may leave (default 10, at least 2).
        block_elements: memory bound of one KS block (tests vary it; the result does not depend on it).

    Returns:
        The fit, or ``None`` when no candidate qualifies: fewer than ``min_tail`` values, or every
        qualifying tail consists of one repeated value (its exponent is infinite).

    Raises:
        ValueError: a value is not finite or not positive, or ``min_tail < 2``.
    """
    if min_tail < 2:
        raise ValueError(f"min_tail must be at least 2, got {min_tail}")
    x = _sorted_positive(values)
    m = x.size
    if m < min_tail:
        return None
    logx = np.log(x)
    # Only the first occurrence of each value: the tail of xmin is then exactly {x >= xmin}.
    first_of_value = np.ones(m, dtype=bool)
    first_of_value[1:] = x[1:] > x[:-1]
    idx = np.flatnonzero(first_of_value[: m - min_tail + 1])
    alpha = _candidate_alphas(logx, idx)
    finite = np.isfinite(alpha)
    if not finite.any():
        return None
    idx, alpha = idx[finite], alpha[finite]
    distances = _ks_distances(logx, idx, alpha, "two_sided", block_elements)
    return _fit_at(x, idx, alpha, distances, int(np.argmin(distances)))


def fit_power_law_weightwatcher(values: np.ndarray, *, block_elements: int = _BLOCK_ELEMENTS) -> PowerLawFit | None:
    """WeightWatcher's ``WWFit`` power-law fit, vectorised (module docstring lists its choices).

    Args:
        values: positive, finite numbers; WeightWatcher passes its eigenvalues above ``1e-5``.
        block_elements: memory bound of one KS block.

    Returns:
        The fit, or ``None`` when there are fewer than 2 values or the chosen exponent is infinite
        (a tail of identical values; WeightWatcher would report ``inf``, which JSON cannot carry).

    Raises:
        ValueError: a value is not finite or not positive.
    """
    x = _sorted_positive(values)
    m = x.size
    if m < 2:
        return None
    logx = np.log(x)
    idx = np.arange(m - 1)
    alpha = _candidate_alphas(logx, idx)
    distances = _ks_distances(logx, idx, alpha, "lower", block_elements)
    distances[~(alpha > 1.0)] = 1.0
    best = int(np.argmin(distances))
    if not np.isfinite(alpha[best]):
        return None
    return _fit_at(x, idx, alpha, distances, best)


def _sorted_positive(values: np.ndarray) -> np.ndarray:
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size and not (np.isfinite(x).all() and x[0] > 0.0):
        raise ValueError("power-law fits need finite, strictly positive values")
    return x


def _candidate_alphas(logx: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """MLE exponent for the tail starting at each sorted index in ``idx`` (inf for a constant tail)."""
    # Shifting by ln(x_max) keeps the suffix sums small where the tails are short, so the
    # difference below (the sum of ln(x_j / x_i) over the tail) loses few digits.
    shifted = logx - logx[-1]
    suffix = np.cumsum(shifted[::-1])[::-1]
    n_tail = (logx.size - idx).astype(np.float64)
    spread = suffix[idx] - n_tail * shifted[idx]
    spread = np.where(spread > 0.0, spread, 0.0)
    with np.errstate(divide="ignore"):
        return 1.0 + n_tail / spread


def _ks_distances(
    logx: np.ndarray, idx: np.ndarray, alpha: np.ndarray, statistic: _Statistic, block_elements: int
) -> np.ndarray:
    """KS distance of the fitted tail for every candidate; ``idx`` must be increasing."""
    m = logx.size
    distances = np.empty(idx.size, dtype=np.float64)
    start = 0
    while start < idx.size:
        first = int(idx[start])
        width = m - first
        rows = max(1, block_elements // width)
        block = slice(start, start + rows)
        cand, cand_alpha = idx[block], alpha[block]
        # u[c, j] = ln(x_j / xmin_c) for the values from the block's first candidate on.
        u = logx[first:][None, :] - logx[cand][:, None]
        rank = np.arange(first, m)[None, :] - cand[:, None]  # 0-based rank in the tail; < 0 outside it
        n_tail = (m - cand)[:, None].astype(np.float64)
        exponent = cand_alpha[:, None] - 1.0
        with np.errstate(invalid="ignore", over="ignore"):
            fitted_cdf = -np.expm1(-exponent * u)
        # A constant tail has alpha = inf: the CDF's limit is a step at xmin (0 at xmin, 1 above).
        fitted_cdf = np.where(np.isinf(exponent), (u > 0.0).astype(np.float64), fitted_cdf)
        if statistic == "two_sided":
            deviation = np.maximum(fitted_cdf - rank / n_tail, (rank + 1) / n_tail - fitted_cdf)
        else:
            deviation = np.abs(fitted_cdf - rank / n_tail)
        deviation[rank < 0] = -np.inf
        distances[block] = deviation.max(axis=1)
        start += rows
    return distances


def _fit_at(x: np.ndarray, idx: np.ndarray, alpha: np.ndarray, distances: np.ndarray, best: int) -> PowerLawFit:
    n_tail = int(x.size - idx[best])
    a = float(alpha[best])
    return PowerLawFit(
        alpha=a,
        alpha_se=(a - 1.0) / float(np.sqrt(n_tail)),
        xmin=float(x[idx[best]]),
        n_tail=n_tail,
        ks_distance=float(distances[best]),
    )
