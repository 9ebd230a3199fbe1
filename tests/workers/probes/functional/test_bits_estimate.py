import math

import numpy as np
import pytest
from scipy import stats

from workers.probes.functional.bits_estimate import estimate_bits
from workers.probes.functional.intervals import bootstrap_bits
from workers.probes.functional.noncentral_chi2 import mle_fit


def exact_bits(epsilon, df, nc, scale):
    return -stats.ncx2.logcdf(epsilon / scale, df, nc) / math.log(2)


def test_bulk_epsilon_matches_exact_bits_and_empirical_fraction():
    df, nc, scale = 4.0, 6.0, 0.5
    losses = scale * np.random.default_rng(0).noncentral_chisquare(df, nc, 2000)
    epsilon = scale * stats.ncx2.ppf(0.05, df, nc)  # ~100 samples below
    result = estimate_bits(losses, epsilon, n_boot=100, seed=0)
    exact = exact_bits(epsilon, df, nc, scale)
    assert result.ci95[0] <= exact <= result.ci95[1]
    assert result.bits == pytest.approx(exact, abs=0.3)  # bootstrap sd here is ~0.1 bit
    assert not result.extrapolated and result.n_hypotheses == 2000
    assert result.n_below == np.count_nonzero(losses <= epsilon)
    low, high = result.empirical_bits_ci95
    assert low <= exact <= high
    assert result.empirical_bits == pytest.approx(-math.log2(result.n_below / 2000))
    assert sum(result.histogram["counts"]) == 2000 and len(result.histogram["edges"]) == 41
    assert result.model_bits(epsilon) == pytest.approx(result.bits)


@pytest.mark.slow  # measured 3.0 s with one thread (--durations)
def test_ci_covers_exact_bits_in_the_deep_tail_for_most_seeds():
    # P(L <= epsilon) = 1e-9: no sample of 1000 reaches it. A 95% interval misses in 10 independent
    # seeds more than twice with probability 1.2% (binomial), so ">= 8 of 10" fails only if coverage is
    # really below nominal. B = 60 keeps the test fast; percentiles of 60 are coarse but unbiased.
    df, nc, scale = 4.0, 6.0, 0.5
    epsilon = scale * stats.ncx2.ppf(1e-9, df, nc)
    exact = exact_bits(epsilon, df, nc, scale)
    covered = 0
    for seed in range(10):
        losses = scale * np.random.default_rng(100 + seed).noncentral_chisquare(df, nc, 1000)
        assert np.count_nonzero(losses <= epsilon) == 0
        boot = bootstrap_bits(losses, epsilon, n_boot=60, seed=seed, full_fit=mle_fit(losses))
        low, high = np.percentile(boot, [2.5, 97.5])
        covered += low <= exact <= high
    assert covered >= 8


def test_linear_hypothesis_space_with_exactly_noncentral_chi2_test_mse():
    # f(x) = w.x, w ~ N(0, sigma^2 I_d); test inputs X (N x d) with X^T X = N c I and targets y = X beta.
    # MSE(w) = ||X (w - beta)||^2 / N = c ||w - beta||^2 = c sigma^2 * ncx2(d, ||beta||^2 / sigma^2).
    d, n_test, c, sigma = 6, 24, 0.5, 0.8
    rng = np.random.default_rng(42)
    q, _ = np.linalg.qr(rng.normal(size=(n_test, d)))
    inputs = q * math.sqrt(n_test * c)
    beta = rng.normal(size=d)
    beta *= math.sqrt(8.0) * sigma / np.linalg.norm(beta)  # non-centrality exactly 8
    targets = inputs @ beta
    weights = sigma * rng.normal(size=(2000, d))  # the sampled hypotheses
    losses = np.mean((weights @ inputs.T - targets) ** 2, axis=1)
    df, nc, scale = d, 8.0, c * sigma**2
    np.testing.assert_allclose(np.mean(losses), scale * (df + nc), rtol=0.03)

    epsilon = scale * stats.ncx2.ppf(0.02, df, nc)
    result = estimate_bits(losses, epsilon, n_boot=100, seed=1)
    assert result.ci95[0] <= exact_bits(epsilon, df, nc, scale) <= result.ci95[1]
    assert result.fit["ks_pvalue"] > 0.01
    deep = scale * stats.ncx2.ppf(1e-7, df, nc)
    assert result.model_bits(deep) > result.bits


def test_diverged_losses_are_counted_and_excluded():
    losses = 0.5 * np.random.default_rng(3).noncentral_chisquare(4.0, 6.0, 200)
    losses[:40] = np.inf
    losses[40:45] = np.nan
    result = estimate_bits(losses, 1.0, n_boot=10, seed=0)
    assert result.diverged == 45 and result.n_hypotheses == 155
    assert result.n_below == np.count_nonzero(losses[45:] <= 1.0)


def test_no_sample_below_epsilon_gives_a_lower_bound_in_bits():
    losses = 0.5 * np.random.default_rng(4).noncentral_chisquare(4.0, 6.0, 300)
    result = estimate_bits(losses, 1e-4, n_boot=10, seed=0)
    assert result.n_below == 0 and result.extrapolated and result.empirical_bits is None
    assert result.empirical_bits_ci95[0] == pytest.approx(-math.log2(1 - 0.025 ** (1 / 300)))
    assert result.empirical_bits_ci95[1] is None
    as_dict = result.to_dict()
    assert "fitted" not in as_dict and as_dict["empirical_bits_ci95"][1] is None
    assert np.isfinite(as_dict["bits"]) and as_dict["fit"]["method"] == "mle"


def test_same_seed_gives_the_same_estimate():
    losses = 0.5 * np.random.default_rng(5).noncentral_chisquare(4.0, 6.0, 200)
    assert estimate_bits(losses, 0.3, n_boot=20, seed=7).to_dict() == estimate_bits(losses, 0.3, n_boot=20, seed=7).to_dict()


@pytest.mark.parametrize(
    "losses, match",
    [
        (np.r_[np.full(60, np.inf), np.ones(40)], "most hypotheses diverged"),
        (np.linspace(1.0, 2.0, 29), "at least 30"),
        (np.r_[0.0, np.linspace(1.0, 2.0, 40)], "positive"),
        (np.ones((40, 2)), "1-D"),
    ],
)
def test_unusable_inputs_raise_clear_errors(losses, match):
    with pytest.raises(ValueError, match=match):
        estimate_bits(losses, 1.0, n_boot=5)


def test_losses_the_model_cannot_describe_are_flagged():
    # Two well separated clusters of losses (e.g. two basins): no chi-squared is bimodal.
    rng = np.random.default_rng(0)
    losses = np.concatenate([1.0 + 0.02 * rng.normal(size=500), 2.0 + 0.02 * rng.normal(size=500)])
    estimate = estimate_bits(losses, 0.9)
    assert estimate.fit["adequate"] is False and estimate.fit["ks_pvalue"] < 0.01
    clean = estimate_bits(0.1 * np.random.default_rng(1).noncentral_chisquare(5, 3, 1000), 0.3)
    assert clean.fit["adequate"] is True


def test_extremely_concentrated_losses_stay_fast_and_finite():
    # All losses within 0.05% of one value: the fit runs to nc ~ 1e8, where the log-CDF switches
    # from the Poisson mixture to the saddlepoint; the estimate stays finite and ordered.
    losses = 2.3 + 0.0005 * np.random.default_rng(0).normal(size=1000)
    estimate = estimate_bits(losses, 2.299)
    assert np.isfinite(estimate.bits) and estimate.ci95[0] <= estimate.bits <= estimate.ci95[1]
    assert estimate.empirical_ci95[0] <= estimate.empirical_fraction <= estimate.empirical_ci95[1]


# --- issue 13: losses exactly 0 (begin) -------------------------------------------------------
def test_empirical_estimate_for_losses_exactly_zero():
    from workers.probes.functional.bits_estimate import empirical_estimate
    from workers.probes.functional.intervals import clopper_pearson

    losses = np.array([0.0] * 10 + [0.25] * 20 + [0.5] * 70 + [np.nan] * 3)
    estimate = empirical_estimate(losses, 0.3)
    low, high = clopper_pearson(30, 100)
    assert (estimate.n_below, estimate.n_hypotheses, estimate.diverged) == (30, 100, 3)
    assert estimate.bits == pytest.approx(-np.log2(0.3))
    assert estimate.ci95 == pytest.approx((-np.log2(high), -np.log2(low)))
    assert estimate.fitted is None and "exactly 0" in estimate.fit["reason"]
    with pytest.raises(ValueError, match="use estimate_bits"):
        empirical_estimate(losses[10:], 0.3)
    with pytest.raises(ValueError, match="too few"):
        empirical_estimate(np.zeros(10), 0.3)
# --- issue 13: losses exactly 0 (end) ---------------------------------------------------------
