"""The second tail family and the spanning interval, against scipy references."""

import math

import numpy as np
import pytest
from scipy import stats

from workers.probes.functional.tail_families import FamilyEstimate, data_depth, lognormal_estimate, span_interval


def test_lognormal_bits_match_scipy_and_recover_a_lognormal_law():
    rng = np.random.default_rng(0)
    losses = np.exp(rng.normal(-1.0, 0.5, size=5000))
    epsilon = math.exp(-1.0 - 0.5 * 3)  # 3 sigma below the log-mean
    estimate = lognormal_estimate(losses, epsilon, n_boot=200, seed=1)
    mu, sigma = np.mean(np.log(losses)), np.std(np.log(losses))
    assert estimate.bits == pytest.approx(-stats.lognorm.logcdf(epsilon, sigma, scale=math.exp(mu)) / math.log(2), rel=1e-9)
    truth = -stats.norm.logcdf(-3) / math.log(2)
    assert estimate.ci95[0] <= truth <= estimate.ci95[1]
    assert estimate.adequate


def test_lognormal_bootstrap_refits_each_resample():
    # The documented resamples (those of intervals.bootstrap_bits for the seed), refitted one by
    # one with scipy's log-normal maximum likelihood (loc fixed at 0).
    rng = np.random.default_rng(2)
    losses = rng.gamma(3.0, 0.2, size=80)
    epsilon = float(np.quantile(losses, 0.05))
    indices = np.random.default_rng(7).integers(0, losses.size, size=(200, losses.size))
    reference = []
    for row in indices:
        shape, _, scale = stats.lognorm.fit(losses[row], floc=0)
        reference.append(-stats.lognorm.logcdf(epsilon, shape, scale=scale) / math.log(2))
    estimate = lognormal_estimate(losses, epsilon, n_boot=200, seed=7)
    assert estimate.ci95 == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])), rel=1e-6)


def test_span_counts_adequate_families_and_always_the_reports_fit():
    a = FamilyEstimate("noncentral_chi2", 10.0, (9.0, 11.0), ks_pvalue=0.001)
    b = FamilyEstimate("lognormal", 14.0, (12.0, 16.0), ks_pvalue=0.5)
    c = FamilyEstimate("other", 30.0, (20.0, 40.0), ks_pvalue=0.0001)
    assert span_interval([a, b, c]) == (9.0, 16.0)


def test_data_depth_and_validation():
    assert data_depth(1000, 10) == (pytest.approx(math.log2(1000)), pytest.approx(math.log2(100)))
    with pytest.raises(ValueError):
        data_depth(5, 10)
    with pytest.raises(ValueError, match="positive"):
        lognormal_estimate([0.0, 1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="not all equal"):
        lognormal_estimate([1.0, 1.0, 1.0], 0.5)
