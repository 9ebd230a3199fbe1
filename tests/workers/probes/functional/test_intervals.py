import numpy as np
import pytest
from scipy import stats

from workers.probes.functional.intervals import bootstrap_bits, clopper_pearson
from workers.probes.functional.noncentral_chi2 import NcChi2Fit, bits_below, mle_fit, moments_fit


def test_clopper_pearson_closed_forms_at_the_edges():
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    assert clopper_pearson(0, 200, level=0.9)[1] == pytest.approx(1 - 0.05 ** (1 / 200))


@pytest.mark.parametrize("k, n", [(1, 10), (7, 30), (500, 1000)])
def test_clopper_pearson_ends_are_where_the_binomial_tails_equal_alpha_over_two(k, n):
    low, high = clopper_pearson(k, n)
    assert stats.binom.sf(k - 1, n, low) == pytest.approx(0.025, rel=1e-8)  # P(X >= k | low)
    assert stats.binom.cdf(k, n, high) == pytest.approx(0.025, rel=1e-8)  # P(X <= k | high)


@pytest.mark.parametrize("k, n, level", [(-1, 10, 0.95), (11, 10, 0.95), (0, 0, 0.95), (1, 10, 1.0)])
def test_clopper_pearson_rejects_bad_arguments(k, n, level):
    with pytest.raises(ValueError):
        clopper_pearson(k, n, level)


def moments_as_fit(sample, start):
    return NcChi2Fit(*moments_fit(sample), 0.0, True, "moments")


def test_bootstrap_resamples_with_the_seeded_generator_and_refits_each():
    x = 0.5 * np.random.default_rng(0).noncentral_chisquare(4.0, 6.0, 300)
    got = bootstrap_bits(x, 1.0, n_boot=20, seed=3, fit_fn=moments_as_fit)
    rows = np.random.default_rng(3).integers(0, x.size, size=(20, x.size))
    expected = [bits_below(1.0, moments_as_fit(x[r], None)) for r in rows]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bootstrap_is_deterministic_per_seed():
    x = 0.5 * np.random.default_rng(1).noncentral_chisquare(4.0, 6.0, 300)
    fit = mle_fit(x)
    first = bootstrap_bits(x, 0.5, n_boot=15, seed=11, full_fit=fit)
    again = bootstrap_bits(x, 0.5, n_boot=15, seed=11, full_fit=fit)
    other = bootstrap_bits(x, 0.5, n_boot=15, seed=12, full_fit=fit)
    assert first.shape == (15,)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
