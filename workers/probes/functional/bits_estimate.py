"""The inductive-bias estimate from sampled losses: every number the report needs (docs/methods.md §1).

``bits = -log2 P(L <= epsilon)`` for the loss ``L`` of a random hypothesis, from ``S`` sampled losses:
fitted (scaled non-central chi-squared, ``noncentral_chi2``) with a percentile-bootstrap interval
(``intervals.bootstrap_bits``), and empirical (the fraction of losses at or below ``epsilon``) with
its Clopper-Pearson interval. Non-finite losses are hypotheses whose training diverged: they are
excluded from both and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from workers.probes.functional.intervals import bootstrap_bits, clopper_pearson
from workers.probes.functional.noncentral_chi2 import NcChi2Fit, bits_below, goodness_of_fit, mle_fit

MIN_FINITE_LOSSES = 30
FIT_ADEQUATE_PVALUE = 0.01
EXTRAPOLATION_THRESHOLD = 10  # fewer losses below epsilon than this: the bits rest on the fitted tail


def _bits(probability: float) -> float | None:
    """``-log2 p``; ``None`` for ``p = 0`` (infinitely many bits: no finite number to report)."""
    # 0.0 + ...: -log2(1) is -0.0, which would print as "-0".
    return None if probability <= 0 else 0.0 + max(-math.log2(probability), 0.0)


@dataclass(frozen=True)
class BitsEstimate:
    """The estimate at one target error; ``to_dict`` is the report's JSON-ready form.

    Fields: ``bits`` (fitted, base 2) and ``ci95`` ([low, high], 2.5 and 97.5 bootstrap percentiles);
    ``target_error`` (epsilon); ``n_hypotheses`` (finite losses used); ``n_below`` (losses <= epsilon);
    ``empirical_fraction`` (``n_below / n_hypotheses``) and ``empirical_ci95`` (Clopper-Pearson);
    ``empirical_bits`` (``-log2`` of the fraction, ``None`` when ``n_below = 0``) and
    ``empirical_bits_ci95`` (the fraction interval in bits, ``[-log2 high, -log2 low]``; the upper end
    is ``None`` when ``n_below = 0``: the data only bound the bits from below); ``extrapolated``
    (``n_below < 10``); ``fit`` (df, noncentrality, scale, loglik, converged, method, ks_statistic,
    ks_pvalue); ``diverged`` (non-finite losses excluded); ``histogram`` (``edges``, ``counts``);
    ``n_boot`` and ``seed`` of the bootstrap.
    """

    bits: float
    ci95: tuple[float, float]
    target_error: float
    n_hypotheses: int
    n_below: int
    empirical_fraction: float
    empirical_ci95: tuple[float, float]
    empirical_bits: float | None
    empirical_bits_ci95: tuple[float, float | None]
    extrapolated: bool
    fit: dict
    diverged: int
    histogram: dict
    n_boot: int
    seed: int
    fitted: NcChi2Fit = field(repr=False, compare=False)
    # The B bootstrap replicates of ``bits``: differences of two spaces' replicates give the
    # interval of their relative bias.
    bootstrap: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))

    def model_bits(self, model_loss: float) -> float:
        """``-log2 CDF(model_loss)`` under the fit: how far into the tail the given loss lies."""
        return bits_below(model_loss, self.fitted)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("fitted", "bootstrap")}
        out["ci95"], out["empirical_ci95"] = list(self.ci95), list(self.empirical_ci95)
        out["empirical_bits_ci95"] = list(self.empirical_bits_ci95)
        return out


def estimate_bits(
    losses, epsilon: float, *, n_boot: int = 200, seed: int = 0, histogram_bins: int = 40
) -> BitsEstimate:
    """Bits needed to reach test loss ``epsilon`` in the hypothesis space the losses were sampled from.

    Args:
        losses: the sampled test losses (1-D); non-finite entries are diverged hypotheses.
        epsilon: target error (positive, finite).
        n_boot: bootstrap resamples for ``ci95`` (default 200).
        seed: bootstrap seed (default 0); the result depends only on the losses and the arguments.
        histogram_bins: bins of the loss histogram over the finite losses (default 40).

    Returns:
        A ``BitsEstimate``.

    Raises:
        ValueError: losses not 1-D, more than half of them non-finite ("most hypotheses diverged"),
            fewer than 30 finite ones, a finite loss <= 0, or a bad epsilon / n_boot / bins.
    """
    values = np.asarray(losses, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"losses must be a 1-D array, got shape {values.shape}")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon}")
    if histogram_bins < 1:
        raise ValueError(f"histogram_bins must be at least 1, got {histogram_bins}")
    finite = values[np.isfinite(values)]
    diverged = int(values.size - finite.size)
    if diverged * 2 > values.size:
        raise ValueError(
            f"most hypotheses diverged ({diverged} of {values.size} losses are not finite): lower the "
            "learning rate or the number of epochs, or use a smaller init scale"
        )
    if finite.size < MIN_FINITE_LOSSES:
        raise ValueError(
            f"only {finite.size} finite losses; at least {MIN_FINITE_LOSSES} are needed to fit the "
            "loss distribution: sample more hypotheses"
        )
    if np.any(finite <= 0):
        raise ValueError(
            "losses must be positive: a zero loss cannot come from the non-central chi-squared model "
            "(use a continuous loss such as mse or cross_entropy)"
        )

    fit = mle_fit(finite)
    boot = bootstrap_bits(finite, epsilon, n_boot=n_boot, seed=seed, full_fit=fit)
    low, high = np.percentile(boot, [2.5, 97.5])
    ks_statistic, ks_pvalue = goodness_of_fit(finite, fit)

    n = int(finite.size)
    n_below = int(np.count_nonzero(finite <= epsilon))
    frac_low, frac_high = clopper_pearson(n_below, n)
    counts, edges = np.histogram(finite, bins=histogram_bins)
    return BitsEstimate(
        bits=bits_below(epsilon, fit),
        ci95=(float(low), float(high)),
        target_error=float(epsilon),
        n_hypotheses=n,
        n_below=n_below,
        empirical_fraction=n_below / n,
        empirical_ci95=(frac_low, frac_high),
        empirical_bits=_bits(n_below / n),
        empirical_bits_ci95=(_bits(frac_high), _bits(frac_low)),
        extrapolated=n_below < EXTRAPOLATION_THRESHOLD,
        fit={
            "df": fit.df, "noncentrality": fit.nc, "scale": fit.scale, "loglik": fit.loglik,
            "converged": fit.converged, "method": fit.method,
            "ks_statistic": ks_statistic, "ks_pvalue": ks_pvalue,
            # The KS p-value is optimistic (parameters fitted to the same data), so a small one is
            # strong evidence that the chi-squared model does not describe these losses.
            "adequate": bool(ks_pvalue >= FIT_ADEQUATE_PVALUE),
        },
        diverged=diverged,
        histogram={"edges": edges.tolist(), "counts": counts.tolist()},
        n_boot=int(n_boot),
        seed=int(seed),
        fitted=fit,
        bootstrap=np.asarray(boot, dtype=np.float64),
    )


# --- issue 13: losses exactly 0 (begin) -------------------------------------------------------
def empirical_estimate(losses, epsilon: float, *, histogram_bins: int = 40) -> BitsEstimate:
    """The model-free estimate, for samples no continuous tail can describe (losses exactly 0,
    e.g. ``zero_one`` on a small test set): ``bits = -log2(n_below / n)`` with the Clopper-Pearson
    interval as ``ci95``. Every zero loss is below any positive epsilon, so ``n_below >= 1`` and
    both ends are finite. ``fit`` says why there is none; ``fitted`` is ``None``; ``bootstrap`` is empty.

    Raises ``ValueError`` as ``estimate_bits`` does for divergence, too few losses and bad arguments,
    and when no loss is exactly 0 (use ``estimate_bits`` then).
    """
    values = np.asarray(losses, dtype=np.float64)
    if values.ndim != 1 or not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError("losses must be 1-D and epsilon positive and finite")
    finite = values[np.isfinite(values)]
    diverged = int(values.size - finite.size)
    if diverged * 2 > values.size or finite.size < MIN_FINITE_LOSSES:
        raise ValueError(f"{finite.size} finite losses of {values.size}: too few for an estimate")
    if not np.any(finite == 0):
        raise ValueError("no loss is exactly 0: use estimate_bits")
    n, n_below = int(finite.size), int(np.count_nonzero(finite <= epsilon))
    frac_low, frac_high = clopper_pearson(n_below, n)
    counts, edges = np.histogram(finite, bins=histogram_bins)
    bits = _bits(n_below / n)
    return BitsEstimate(
        bits=bits, ci95=(_bits(frac_high), _bits(frac_low)), target_error=float(epsilon), n_hypotheses=n,
        n_below=n_below, empirical_fraction=n_below / n, empirical_ci95=(frac_low, frac_high), empirical_bits=bits,
        empirical_bits_ci95=(_bits(frac_high), _bits(frac_low)), extrapolated=False,
        fit={"method": "none", "adequate": True, "ks_pvalue": None,
             "reason": f"{int(np.count_nonzero(finite == 0))} losses are exactly 0: no continuous tail family has an atom at 0"},
        diverged=diverged, histogram={"edges": edges.tolist(), "counts": counts.tolist()}, n_boot=0, seed=0,
        fitted=None,
    )
# --- issue 13: losses exactly 0 (end) ---------------------------------------------------------
