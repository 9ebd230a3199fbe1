"""Continuous power-law fit of the upper tail of a spectrum (Clauset, Shalizi & Newman 2009).

Idea: above some ``xmin`` the values follow ``p(x) ∝ x^-alpha``. For a given ``xmin`` the
maximum-likelihood exponent of the ``n`` values ``x_i >= xmin`` is

    alpha = 1 + n / sum_i ln(x_i / xmin),          standard error (alpha - 1) / sqrt(n),

and ``xmin`` is the candidate that minimises the Kolmogorov-Smirnov distance between the tail's
empirical CDF and the fitted CDF ``F(x) = 1 - (x / xmin)^(1 - alpha)``.

Every candidate is scored at once: the exponents come from suffix sums of ``ln x``, the KS
distances from one broadcast (candidates x values) array. That array has about ``m^2 / 2`` useful
entries for ``m`` values, so candidates are processed in blocks of consecutive candidates holding at
most ``_BLOCK_ELEMENTS`` entries each, in two reused scratch buffers of a few MB that stay in cache;
the block loop only bounds memory, it never visits single candidates.

Two variants share that machinery:

- ``fit_power_law`` (PriorProbe): candidates are the distinct values whose tail holds at least
  ``min_tail`` values; the KS distance is the two-sided supremum ``max_x |F(x) - ECDF(x)|`` (both
  one-sided limits of the step function are checked); ties in the minimum distance go to the
  smallest ``xmin`` (the largest tail).
- ``fit_power_law_weightwatcher``: a transcription of WeightWatcher's ``WWFit``
  (``weightwatcher/WW_powerlaw.py``): every value but the largest is a candidate (tails of 2 values
  count), the distance is ``max_k |F(x_k) - k / n|`` over the tail's 0-based ranks ``k`` (the lower
  empirical CDF only), a candidate with ``alpha <= 1`` scores 1, and ``np.argmin`` picks the first
  minimum. ``WWFit`` uses this standard branch from 20 values on (``SMALL_N_CUTOFF``).
- ``fit_power_law_weightwatcher_small_n``: ``WWFit`` below 20 values (``fit_powerlaw_smallN``,
  WeightWatcher 0.7.7): tails of at least 8 values, the bias-corrected exponent
  ``alpha = 1 + (n - 1) / sum ln(x_i / xmin)``, the same lower KS distance, first minimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Entries of one (candidates x values) block: 2**18 float64 = 2 MiB per scratch buffer, small enough
# to stay in cache between the passes over it.
_BLOCK_ELEMENTS = 1 << 18

_Statistic = Literal["two_sided", "lower"]

# WWFit.fit_powerlaw_smallN (weightwatcher/WW_powerlaw.py, 0.7.7), used below SMALL_N_CUTOFF = 20 values.
WW_SMALL_N_CUTOFF = 20
WW_SMALL_N_MIN_TAIL = 8  # k_min
WW_SMALL_N_MIN_SPREAD = 1e-12  # tails with sum ln(x / xmin) at or below this are skipped as degenerate


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

    This is its standard branch, which ``WWFit`` takes from 20 values on; below that it uses
    ``fit_power_law_weightwatcher_small_n``. Callers reproducing WeightWatcher pick by size.

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


def fit_power_law_weightwatcher_small_n(
    values: np.ndarray, *, min_tail: int = WW_SMALL_N_MIN_TAIL, block_elements: int = _BLOCK_ELEMENTS
) -> PowerLawFit | None:
    """WeightWatcher 0.7.7's fit for fewer than 20 values (``WWFit`` with ``fit_powerlaw_smallN``), vectorised.

    Candidates ``xmin`` are the values (all but the largest) whose tail holds at least ``min_tail``
    (default 8) values and whose log spread ``s = sum ln(x_i / xmin)`` exceeds ``1e-12``; each gets the
    bias-corrected exponent ``alpha = 1 + (n - 1) / s`` and the lower KS distance
    ``D = max_k |F(x_k) - k / n|``. The fit is the first minimum of ``D``: ``fit_powerlaw_smallN`` picks
    by ``J = D - 0.868 / sqrt(n)``, but ``WWFit.__init__`` then overrides that choice with
    ``argmin(D)`` (other candidates scoring 1), and that is what WeightWatcher reports. Without a
    candidate (fewer than ``min_tail`` values) the whole sample is the tail.

    Args:
        values: positive, finite numbers; WeightWatcher passes its eigenvalues above ``1e-5``.
        min_tail: WeightWatcher's ``k_min`` (default 8).
        block_elements: memory bound of one KS block.

    Returns:
        The fit, ``alpha_se = (alpha - 1) / sqrt(n_tail)``, ``ks_distance = D``; or ``None`` for fewer
        than 2 values (WeightWatcher fails on 1) or a sample of identical values (WeightWatcher
        reports ``alpha = 0``). In its whole-sample fallback WeightWatcher reports
        ``alpha_se = -1 / sqrt(n)``: its standard errors are computed before the fallback fills in
        the exponent.

    Raises:
        ValueError: a value is not finite or not positive.
    """
    x = _sorted_positive(values)
    m = x.size
    if m < 2:
        return None
    logx = np.log(x)
    idx = np.arange(m - 1)
    n_tail = (m - idx).astype(np.float64)
    spread = _tail_log_spreads(logx, idx)
    valid = (n_tail >= min_tail) & (spread > WW_SMALL_N_MIN_SPREAD)
    if not valid.any():
        if spread[0] <= WW_SMALL_N_MIN_SPREAD:
            return None
        valid = idx == 0
    alpha = np.zeros(idx.size)
    alpha[valid] = 1.0 + (n_tail[valid] - 1.0) / spread[valid]
    distances = np.ones(idx.size)  # WWFit's score for a candidate it skipped
    distances[valid] = _ks_distances(logx, idx[valid], alpha[valid], "lower", block_elements)
    best = int(np.argmin(distances))
    if not valid[best]:
        return None  # every candidate scored D = 1; WeightWatcher would report alpha = 0
    return _fit_at(x, idx, alpha, distances, best)


def _sorted_positive(values: np.ndarray) -> np.ndarray:
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size and not (np.isfinite(x).all() and x[0] > 0.0):
        raise ValueError("power-law fits need finite, strictly positive values")
    return x


def _tail_log_spreads(logx: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``sum_{j >= i} ln(x_j / x_i)`` for each sorted index ``i`` in ``idx`` (clipped at 0)."""
    # Shifting by ln(x_max) keeps the suffix sums small where the tails are short, so the
    # difference below (the sum of ln(x_j / x_i) over the tail) loses few digits.
    shifted = logx - logx[-1]
    suffix = np.cumsum(shifted[::-1])[::-1]
    n_tail = (logx.size - idx).astype(np.float64)
    spread = suffix[idx] - n_tail * shifted[idx]
    return np.where(spread > 0.0, spread, 0.0)


def _candidate_alphas(logx: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """MLE exponent for the tail starting at each sorted index in ``idx`` (inf for a constant tail)."""
    n_tail = (logx.size - idx).astype(np.float64)
    with np.errstate(divide="ignore"):
        return 1.0 + n_tail / _tail_log_spreads(logx, idx)


def _ks_distances(
    logx: np.ndarray, idx: np.ndarray, alpha: np.ndarray, statistic: _Statistic, block_elements: int
) -> np.ndarray:
    """KS distance of the fitted tail for every candidate; ``idx`` must be increasing.

    With ``r = 0, 1, ...`` the rank of ``x_j`` in the tail of ``n`` values: ``"lower"`` is
    ``max_j |F(x_j) - r/n|``; ``"two_sided"`` is ``max_j max(F(x_j) - r/n, (r+1)/n - F(x_j))``, computed as
    ``max_j |F(x_j) - (r + 1/2)/n| + 1/(2n)`` (the same number, one pass fewer). With
    ``1 - F(x_j) = exp(-(alpha - 1) ln(x_j / xmin))`` and ``1 - (r + h)/n = (m - j - h)/n`` (``j`` the
    index among all ``m`` sorted values, ``n = m - cand``), each entry is ``|exp(...) - (m - j - h)/n|``:
    one ``exp`` and a few arithmetic passes, absolute error about ``1e-16``. Each entry depends only on
    its candidate and value, never on the block it was computed in.
    """
    m = logx.size
    half_step = 0.5 if statistic == "two_sided" else 0.0
    distances = np.empty(idx.size, dtype=np.float64)
    if idx.size == 0:
        return distances
    # Two scratch buffers reused by every block: fresh arrays per block would cost more in page
    # faults than the arithmetic done in them.
    capacity = max(block_elements, m - int(idx[0]))
    work_buffer, ecdf_buffer = np.empty(capacity), np.empty(capacity)
    start = 0
    while start < idx.size:
        first = int(idx[start])
        width = m - first
        rows = max(1, block_elements // width)
        block = slice(start, start + rows)
        cand, cand_alpha = idx[block], alpha[block]
        work = work_buffer[: cand.size * width].reshape(cand.size, width)
        survival = ecdf_buffer[: cand.size * width].reshape(cand.size, width)
        inv_n = 1.0 / (m - cand).astype(np.float64)
        exponent = cand_alpha - 1.0
        # work[c, j]: ln(x_j / xmin_c), then 1 - F(x_j) = exp(-exponent * ln(x_j / xmin_c)), for the
        # values from the block's first candidate on.
        np.subtract(logx[first:][None, :], logx[cand][:, None], out=work)
        constant = np.isinf(exponent)
        if constant.any():
            # A constant tail has alpha = inf: the CDF's limit is a step at xmin (0 at xmin, 1 above).
            at_xmin = work[constant] <= 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            np.multiply(work, -exponent[:, None], out=work)
            np.exp(work, out=work)
        if constant.any():
            work[constant] = at_xmin.astype(np.float64)
        # 1 - ECDF = (m - j - half_step) / n.
        np.multiply.outer(inv_n, (m - half_step) - np.arange(first, m, dtype=np.float64), out=survival)
        np.subtract(work, survival, out=work)
        np.abs(work, out=work)
        # Values below a candidate (j < cand) are not in its tail; they only occur in the first
        # columns of a block, up to its last candidate.
        span = int(cand[-1]) - first
        if span > 0:
            below = np.arange(first, first + span)[None, :] < cand[:, None]
            work[:, :span][below] = -np.inf
        distances[block] = work.max(axis=1) + half_step * inv_n
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
