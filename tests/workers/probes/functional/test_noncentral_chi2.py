import math

import mpmath
import numpy as np
import pytest
from scipy import stats

from workers.probes.functional import noncentral_chi2 as ncx
from workers.probes.functional.noncentral_chi2 import (
    NcChi2Fit,
    bits_below,
    goodness_of_fit,
    log_cdf,
    mle_fit,
    moments_fit,
)


def sample(df, nc, scale, n, seed):
    return scale * np.random.default_rng(seed).noncentral_chisquare(df, nc, n)


def fitted_moments(df, nc, scale):
    return scale * (df + nc), 2 * scale**2 * (df + 2 * nc), 8 * scale**3 * (df + 3 * nc)


def sample_moments(x):
    d = x - x.mean()
    return x.mean(), np.mean(d**2), np.mean(d**3)


def mpmath_log_cdf(x, df, nc, scale, dps=60):
    """Independent reference: the Poisson mixture summed term by term at high precision."""
    with mpmath.workdps(dps):
        lam, a, z = mpmath.mpf(nc) / 2, mpmath.mpf(df) / 2, mpmath.mpf(x) / (2 * mpmath.mpf(scale))
        total, j = mpmath.mpf(0), 0
        while True:
            pois = mpmath.exp(-lam) * lam**j / mpmath.factorial(j)
            term = pois * mpmath.gammainc(a + j, 0, z, regularized=True)
            total += term
            if j > lam and term < total * mpmath.mpf(10) ** (-dps + 5):
                break
            j += 1
        return float(mpmath.log(total))


def test_moments_fit_reproduces_the_three_sample_moments():
    x = sample(5.0, 12.0, 0.7, 4000, seed=0)
    df, nc, scale = moments_fit(x)
    assert nc > 0
    np.testing.assert_allclose(fitted_moments(df, nc, scale), sample_moments(x), rtol=1e-10)


def test_moments_fit_recovers_parameters_of_a_large_sample():
    df, nc, scale = moments_fit(sample(4.0, 10.0, 2.0, 400_000, seed=1))
    assert df == pytest.approx(4.0, rel=0.1)
    assert nc == pytest.approx(10.0, rel=0.1)
    assert scale == pytest.approx(2.0, rel=0.05)


def test_moments_fit_too_skewed_falls_back_to_central_chi2_on_two_moments():
    # A lognormal is more right-skewed than any ncx2 of the same mean and variance (r > 2).
    x = np.random.default_rng(2).lognormal(0.0, 1.0, 3000)
    m1, m2, m3 = sample_moments(x)
    assert m1 * m3 / m2**2 > 2
    df, nc, scale = moments_fit(x)
    assert nc == 0.0
    assert scale * df == pytest.approx(m1) and 2 * scale**2 * df == pytest.approx(m2)


def test_moments_fit_left_skewed_is_clamped_and_keeps_mean_and_variance():
    x = 10.0 - np.random.default_rng(3).chisquare(3.0, 3000) * 0.5
    df, nc, scale = moments_fit(x)
    m1, m2, _ = sample_moments(x)
    assert df > 0 and nc / df == pytest.approx(100.0, rel=1e-6)
    np.testing.assert_allclose(fitted_moments(df, nc, scale)[:2], [m1, m2], rtol=1e-10)


@pytest.mark.parametrize("bad", [[1.0, 2.0], [1.0, 2.0, np.nan], [1.0, 0.0, 2.0], [2.0, 2.0, 2.0]])
def test_fits_reject_unusable_samples(bad):
    with pytest.raises(ValueError):
        moments_fit(bad)


def test_quadrature_log_likelihood_matches_pointwise_sum():
    x = sample(0.5, 3.0, 1.0, 2000, seed=4)  # x spans ~25 e-folds: the hardest range for the nodes
    quadrature = ncx._Quadrature(x)
    for params in [(0.5, 3.0, 1.0), (0.9, 1.5, 1.3), (3.0, 0.0, 0.6)]:
        direct = np.sum(stats.ncx2.logpdf(x / params[2], params[0], params[1]) - math.log(params[2])) if params[1] else np.sum(stats.chi2.logpdf(x / params[2], params[0]) - math.log(params[2]))
        # mle_fit accepts the quadrature when it agrees to 1e-6 and recomputes pointwise otherwise.
        assert quadrature.loglik(*params) == pytest.approx(direct, rel=1e-6)


def test_mle_beats_truth_and_moments_and_recovers_mean_and_variance():
    df, nc, scale = 6.0, 15.0, 0.3
    x = sample(df, nc, scale, 2000, seed=5)
    fit = mle_fit(x)
    assert fit.method == "mle" and fit.converged

    def loglik(d, n, s):
        return np.sum(stats.ncx2.logpdf(x / s, d, n) - math.log(s))

    assert fit.loglik == pytest.approx(loglik(fit.df, fit.nc, fit.scale), rel=1e-12)
    assert fit.loglik >= loglik(df, nc, scale) - 1e-6
    assert fit.loglik >= loglik(*moments_fit(x)) - 1e-6
    mean, var, _ = fitted_moments(fit.df, fit.nc, fit.scale)
    true_mean, true_var, _ = fitted_moments(df, nc, scale)
    # Standard errors of mean and variance with S = 2000 are ~1.5% and ~4%: allow ~3 of them.
    assert mean == pytest.approx(true_mean, rel=0.05)
    assert var == pytest.approx(true_var, rel=0.15)


def test_mle_of_central_chi2_sample_is_at_least_as_likely_as_the_truth():
    # df and nc trade off along a flat ridge: the MLE need not land on nc = 0, but it must be at least
    # as likely as the true central chi2 and reproduce its mean and variance.
    x = sample(3.0, 1e-12, 2.0, 2000, seed=6)
    fit = mle_fit(x)
    assert fit.loglik >= np.sum(stats.chi2.logpdf(x / 2.0, 3.0) - math.log(2.0)) - 1e-6
    mean, var, _ = fitted_moments(fit.df, fit.nc, fit.scale)
    assert mean == pytest.approx(6.0, rel=0.05) and var == pytest.approx(24.0, rel=0.15)


@pytest.mark.parametrize(
    "x, df, nc, scale",
    [
        (1e-6, 5.0, 200.0, 1.0),  # large nc, deep lower tail
        (1e-30, 0.5, 50.0, 2.0),
        (0.2, 40.0, 100.0, 0.5),
        (3.0, 2.0, 0.0, 1.5),  # central
        (5.0, 3.0, 4.0, 1.0),  # bulk: log CDF near 0, computed through log1p
        (1e-3, 300.0, 1000.0, 0.1),
    ],
)
def test_log_cdf_matches_mpmath_in_log_space(x, df, nc, scale):
    assert log_cdf(x, df, nc, scale) == pytest.approx(mpmath_log_cdf(x, df, nc, scale), rel=1e-8)


def test_log_cdf_matches_scipy_in_the_bulk_and_is_vectorised():
    x = np.array([[0.5, 2.0], [8.0, 30.0]])
    expected = stats.ncx2.logcdf(x / 0.5, 4.0, 6.0)
    got = log_cdf(x, 4.0, 6.0, 0.5)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-8)  # scipy takes log(cdf): ~1e-10 near cdf=1


def test_log_cdf_is_finite_far_below_float_range_and_minus_inf_at_zero():
    value = log_cdf(1e-300, 100.0, 1000.0, 1.0)
    assert np.isfinite(value) and value < -30000  # the CDF itself is ~e^-35000, not a float64
    assert log_cdf(0.0, 2.0, 1.0, 1.0) == -np.inf


def test_bits_below_is_minus_log2_cdf():
    fit = NcChi2Fit(4.0, 6.0, 0.5, 0.0, True, "mle")
    assert bits_below(1.0, fit) == pytest.approx(-stats.ncx2.logcdf(2.0, 4.0, 6.0) / math.log(2), rel=1e-10)
    with pytest.raises(ValueError):
        bits_below(0.0, fit)


def test_goodness_of_fit_accepts_the_true_family_and_rejects_a_wrong_one():
    x = sample(4.0, 6.0, 0.5, 2000, seed=7)
    fit = mle_fit(x)
    statistic, pvalue = goodness_of_fit(x, fit)
    assert statistic == pytest.approx(stats.kstest(x, stats.ncx2(fit.df, fit.nc, scale=fit.scale).cdf).statistic)
    assert pvalue > 0.01
    # Two well separated modes: no unimodal ncx2 fits them.
    rng = np.random.default_rng(8)
    bimodal = np.concatenate([rng.uniform(1.0, 1.1, 1000), rng.uniform(5.0, 5.1, 1000)])
    assert goodness_of_fit(bimodal, mle_fit(bimodal))[1] < 1e-6



@pytest.mark.parametrize(("df", "nc"), [(5.0, 2.5e4), (100.0, 3e4), (1e3, 5e4)])
def test_saddlepoint_branch_matches_the_poisson_mixture(df, nc):
    from workers.probes.functional.noncentral_chi2 import _log_poisson_mixture, _saddlepoint_log_cdf

    mean, sd = df + nc, math.sqrt(2 * (df + 2 * nc))
    x = np.array([mean - 7 * sd, mean - 3 * sd, mean - sd, mean + sd])
    exact = _log_poisson_mixture(df, nc / 2, x / 2, np.log(x / 2))
    np.testing.assert_allclose(_saddlepoint_log_cdf(x, df, nc), exact, rtol=1e-6)


def _tight_pointwise_fit(x, starts):
    """Independent reference: Nelder-Mead on the pointwise log-likelihood with tolerances far
    below the batched search's, from each start, keeping the most likely."""
    from scipy import optimize

    def objective(theta):
        return -np.sum(ncx._logpdf(x, *ncx._unpack(theta))) / x.size

    best = min(
        (optimize.minimize(objective, ncx._pack(f.df, f.nc, f.scale), method="Nelder-Mead",
                           options={"xatol": 1e-10, "fatol": 1e-15, "maxfev": 20000}) for f in starts),
        key=lambda r: r.fun,
    )
    return NcChi2Fit(*ncx._unpack(best.x), -best.fun * x.size, True, "reference")


@pytest.mark.slow
@pytest.mark.parametrize("df, nc, n", [(5.0, 12.0, 300), (40.0, 0.5, 200)])
def test_batched_refits_equal_tightly_converged_pointwise_fits(df, nc, n):
    from workers.probes.functional.noncentral_chi2 import bits_below_fits, mle_refits

    x = sample(df, nc, 0.5, n, seed=4)
    full = mle_fit(x)
    B = 8
    idx = np.random.default_rng(0).integers(0, n, size=(B, n))
    counts = np.zeros((B, n), dtype=np.int64)
    np.add.at(counts, (np.arange(B)[:, None], idx), 1)
    fits = mle_refits(x, counts, full)
    epsilon = float(np.quantile(x, 0.1))
    bits = bits_below_fits(epsilon, fits)
    for b in range(B):
        resample = x[idx[b]]
        reference = _tight_pointwise_fit(resample, [fits[b], mle_fit(resample, full)])
        loglik = float(ncx._logpdf(resample, fits[b].df, fits[b].nc, fits[b].scale).sum())
        # The same maximum: the log-likelihood to 1e-9 relative, and the reported quantity, the
        # bits at epsilon, to 1e-6 relative (the shape is weakly identified, so df and nc alone
        # may move further along the likelihood's flat ridge without changing either).
        assert loglik == pytest.approx(reference.loglik, rel=1e-9)
        assert bits[b] == pytest.approx(bits_below(epsilon, reference), rel=1e-6)
        # The vectorised CDF is the scalar one evaluated elementwise (rounding only).
        assert bits[b] == pytest.approx(bits_below(epsilon, fits[b]), rel=1e-12)
