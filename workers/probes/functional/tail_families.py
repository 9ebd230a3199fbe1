"""The fitted tail's model error: a second tail family, the interval spanning both, and the depth
of the data (docs/methods.md §1, "Estimator").

Why: measured against exact answers, the scaled non-central chi-squared fit is biased low beyond
the sampled losses while its bootstrap interval shrinks with S (issue 13). The bootstrap carries
sampling noise only. A second family with a different left tail shows how much the answer depends
on the family:

- ``lognormal``: ``log L ~ N(mu, sigma^2)`` (maximum likelihood: mean and standard deviation of the
  log losses). Its left tail, ``P(L <= x) = Phi((log x - mu) / sigma)``, falls off like
  ``exp(-log(x)^2 / (2 sigma^2))``: much lighter than the non-central chi-squared's polynomial
  ``x^(df / 2)``, so the two families bracket tails in between. Its bootstrap refits are closed
  form and vectorised (the same resamples as ``intervals.bootstrap_bits`` for the same seed).

``span_interval`` is the smallest interval containing the 95% bootstrap intervals of every family
that describes the sample (Kolmogorov-Smirnov p >= 0.01; the non-central chi-squared always
counts, as the report's own fit). ``data_depth`` says how deep the sample itself reaches:
``deepest_observed_bits = log2(S)`` (the smallest of S losses) and ``validated_depth_bits =
log2(S / 10)`` (the depth with 10 samples at or below it, ``bits_estimate.EXTRAPOLATION_THRESHOLD``);
a headline deeper than that is an extrapolation and the report says by how many bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

ADEQUATE_PVALUE = 0.01


@dataclass(frozen=True)
class FamilyEstimate:
    """One family's bits at epsilon, its 95% percentile-bootstrap interval and its KS p-value."""

    family: str
    bits: float
    ci95: tuple[float, float]
    ks_pvalue: float

    @property
    def adequate(self) -> bool:
        return self.ks_pvalue >= ADEQUATE_PVALUE

    def to_dict(self) -> dict:
        return {"bits": self.bits, "ci95": list(self.ci95), "ks_pvalue": self.ks_pvalue, "adequate": self.adequate}


def _lognormal_bits(epsilon: float, mu, sigma):
    return np.maximum(-special.log_ndtr((math.log(epsilon) - mu) / sigma) / math.log(2.0), 0.0) + 0.0


def lognormal_estimate(losses, epsilon: float, n_boot: int = 200, seed: int = 0) -> FamilyEstimate:
    """The log-normal family's bits at ``epsilon`` with bootstrap ``ci95`` (module docstring).

    ``losses``: positive finite losses (at least 2 distinct values); the resamples are those of
    ``intervals.bootstrap_bits(losses, ..., n_boot, seed)``.
    """
    x = np.asarray(losses, dtype=np.float64).ravel()
    if x.size < 2 or np.any(x <= 0) or not np.all(np.isfinite(x)):
        raise ValueError("the log-normal family needs at least 2 positive finite losses")
    logs = np.log(x)
    mu, sigma = float(np.mean(logs)), float(np.std(logs))
    if not sigma > 0:
        raise ValueError("the log-normal family needs losses that are not all equal")
    indices = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    resampled = logs[indices]
    # A resample of identical values has sigma 0: its bits are 0 or infinite; keep it finite-safe.
    boot_sigma = np.maximum(np.std(resampled, axis=1), np.finfo(float).tiny)
    boot = _lognormal_bits(epsilon, np.mean(resampled, axis=1), boot_sigma)
    low, high = np.percentile(boot, [2.5, 97.5])
    ks_pvalue = float(stats.kstest(logs, stats.norm(mu, sigma).cdf).pvalue)
    return FamilyEstimate("lognormal", float(_lognormal_bits(epsilon, mu, sigma)), (float(low), float(high)), ks_pvalue)


def span_interval(families: list[FamilyEstimate], always: str = "noncentral_chi2") -> tuple[float, float]:
    """Smallest interval containing the ci95 of every adequate family (and of ``always``)."""
    counted = [f for f in families if f.adequate or f.family == always]
    if not counted:
        raise ValueError("no family to span")
    return min(f.ci95[0] for f in counted), max(f.ci95[1] for f in counted)


def data_depth(n_losses: int, extrapolation_threshold: int) -> tuple[float, float]:
    """``(deepest_observed_bits, validated_depth_bits)`` of a sample of ``n_losses`` (module docstring)."""
    if n_losses < extrapolation_threshold:
        raise ValueError(f"need at least {extrapolation_threshold} losses, got {n_losses}")
    return math.log2(n_losses), math.log2(n_losses / extrapolation_threshold)
