import math

import mpmath
import numpy as np
import pytest
from scipy import stats

from workers.probes.functional.generalized_chi2 import (
    SADDLEPOINT_MAX_CDF,
    exact_bits,
    generalized_chi2_mean,
    generalized_chi2_variance,
    imhof_cdf,
    log_cdf,
    saddlepoint_log_cdf,
)


def equal_weights(df: int, nc: float, scale: float) -> tuple[list[float], list[float]]:
    """``scale * ncx2(df, nc)`` as df equal-weight terms sharing the non-centrality."""
    return [scale] * df, [nc / df] * df


def mpmath_ncx2_logcdf(x: float, df: int, nc: float, scale: float) -> float:
    """log P(scale * ncx2(df, nc) <= x) from the Poisson mixture of regularised lower incomplete
    gammas, at 50 digits: a reference independent of both methods under test."""
    with mpmath.workdps(50):
        half_x, half_nc = mpmath.mpf(x) / scale / 2, mpmath.mpf(nc) / 2
        total, i = mpmath.mpf(0), 0
        while True:
            term = mpmath.exp(-half_nc) * half_nc**i / mpmath.factorial(i) * mpmath.gammainc(
                mpmath.mpf(df) / 2 + i, 0, half_x, regularized=True
            )
            total += term
            if i > 5 and term < total * mpmath.mpf(10) ** -30:
                return float(mpmath.log(total))
            i += 1


@pytest.mark.parametrize("df,nc,scale", [(3, 0.5, 1.0), (10, 5.0, 0.3), (30, 0.0, 2.0), (1, 2.0, 1.0)])
@pytest.mark.parametrize("quantile", [1e-3, 0.05, 0.5, 0.99])
def test_equal_weights_match_scipy_ncx2_at_moderate_quantiles(df, nc, scale, quantile):
    x = scale * stats.ncx2.ppf(quantile, df, nc) if nc > 0 else scale * stats.chi2.ppf(quantile, df)
    reference = stats.ncx2.logcdf(x / scale, df, nc) if nc > 0 else stats.chi2.logcdf(x / scale, df)
    result = log_cdf(x, *equal_weights(df, nc, scale))
    assert result.method == "imhof"
    assert result.log_cdf == pytest.approx(reference, abs=1e-7)


@pytest.mark.parametrize("df,nc,scale", [(20, 3.0, 0.5), (40, 10.0, 0.1), (8, 0.0, 1.0)])
@pytest.mark.parametrize("fraction_of_mean", [0.1, 0.03, 0.01])
def test_deep_lower_tail_matches_high_precision_series(df, nc, scale, fraction_of_mean):
    # CDFs from about e^-7 down to e^-75, where scipy's ncx2 and Imhof's inversion have no digits left.
    x = fraction_of_mean * scale * (df + nc)
    reference = mpmath_ncx2_logcdf(x, df, nc, scale)
    result = log_cdf(x, *equal_weights(df, nc, scale))
    if reference < math.log(SADDLEPOINT_MAX_CDF) - 0.5:
        assert result.method == "saddlepoint"
    # Lugannani-Rice's error in the CDF is a few tenths of a per cent for >= 8 terms at any depth:
    # at most 0.02 nats absolute, 0.1 % relative in the log-CDF.
    assert result.log_cdf == pytest.approx(reference, abs=0.02, rel=1e-3)
    assert math.isfinite(result.log_cdf)


def test_imhof_matches_monte_carlo_for_random_weights():
    rng = np.random.default_rng(11)
    weights = rng.uniform(0.05, 2.0, 8)
    noncentralities = rng.exponential(1.0, 8)
    n = 1_000_000
    # Each term sqrt(w) (z + sqrt(nc)), squared, is w * noncentral chi2_1(nc).
    draws = ((rng.standard_normal((n, 8)) + np.sqrt(noncentralities)) ** 2) @ weights
    ordered = np.sort(draws)
    for quantile in (0.01, 0.1, 0.5, 0.9):
        rank = int(quantile * n)
        x, empirical = float(ordered[rank]), (rank + 1) / n
        tolerance = 5.0 * math.sqrt(empirical * (1 - empirical) / n)
        assert imhof_cdf(x, weights, noncentralities) == pytest.approx(empirical, abs=tolerance)
    assert generalized_chi2_mean(weights, noncentralities) == pytest.approx(draws.mean(), rel=5e-3)
    assert generalized_chi2_variance(weights, noncentralities) == pytest.approx(draws.var(), rel=2e-2)


def test_saddlepoint_agrees_with_imhof_in_the_overlap():
    # 40 random terms: between 1 and 3.5 standard deviations below the mean (CDF 0.16 .. 4e-8)
    # both methods are trustworthy; they agree to 1e-3 nats in the log-CDF.
    rng = np.random.default_rng(1)
    weights, noncentralities = rng.uniform(0.1, 1.0, 40), rng.exponential(1.0, 40)
    mean = generalized_chi2_mean(weights, noncentralities)
    sd = math.sqrt(generalized_chi2_variance(weights, noncentralities))
    for z in (1.0, 2.0, 3.0, 3.5):
        x = mean - z * sd
        imhof = math.log(imhof_cdf(x, weights, noncentralities))
        assert saddlepoint_log_cdf(x, weights, noncentralities) == pytest.approx(imhof, abs=1e-3)


def test_offset_shifts_the_distribution():
    weights, noncentralities = [0.5, 1.0, 2.0], [0.3, 0.0, 1.5]
    for x in (0.5, 3.0, 8.0):
        shifted = log_cdf(x + 1.25, weights, noncentralities, offset=1.25)
        assert shifted.log_cdf == pytest.approx(log_cdf(x, weights, noncentralities).log_cdf, abs=1e-12)


def test_below_support_is_minus_infinity_and_bits_are_its_negative_log2():
    weights, noncentralities = [1.0, 2.0], [0.5, 0.5]
    below = log_cdf(0.3, weights, noncentralities, offset=0.3)
    assert below == type(below)(-math.inf, "below_support")
    assert exact_bits(0.3, weights, noncentralities, offset=0.3) == math.inf
    x = 2.0
    assert exact_bits(x, weights, noncentralities) == pytest.approx(-log_cdf(x, weights, noncentralities).log_cdf / math.log(2))
    # A known answer: chi2_2 has CDF 1 - exp(-x/2); at x = 2 ln 2 that is 1/2, i.e. 1 bit.
    assert exact_bits(2 * math.log(2), [1.0, 1.0], [0.0, 0.0]) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "weights,noncentralities,offset",
    [([1.0, 0.0], [0.0, 0.0], 0.0), ([1.0], [-0.1], 0.0), ([1.0, 2.0], [0.0], 0.0), ([], [], 0.0), ([1.0], [0.0], -1.0)],
)
def test_invalid_parameters_are_rejected(weights, noncentralities, offset):
    with pytest.raises(ValueError):
        log_cdf(1.0, weights, noncentralities, offset)


def test_saddlepoint_refuses_points_outside_the_lower_tail():
    with pytest.raises(ValueError, match="lower tail"):
        saddlepoint_log_cdf(10.0, [1.0, 1.0], [0.0, 0.0])
