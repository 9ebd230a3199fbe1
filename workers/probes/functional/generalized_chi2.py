"""Log-CDF of a generalised chi-squared variable, computed without sampling.

The variable is ``Q = offset + sum_j w_j X_j`` with independent ``X_j ~ noncentral chi2_1(nc_j)``,
weights ``w_j > 0``, non-centralities ``nc_j >= 0`` and a constant ``offset >= 0``. The test MSE of
a Gaussian-process posterior sample has exactly this law (``gp_kernel.kernel_mse_distribution``).
Its cumulant generating function, for ``s < 1 / (2 max w)``, is

    K(s) = offset s + sum_j [ -1/2 log(1 - 2 w_j s) + nc_j w_j s / (1 - 2 w_j s) ].

Two methods, chosen by one rule (``log_cdf``):

- **Imhof** (1961), "Computing the distribution of quadratic forms in normal variables":
  ``P(Q <= x) = 1/2 - (1/pi) int_0^inf sin(theta(u)) / (u rho(u)) du`` with
  ``theta(u) = 1/2 sum_j [atan(w_j u) + nc_j w_j u / (1 + w_j^2 u^2)] - (x - offset) u / 2`` and
  ``log rho(u) = sum_j [1/4 log(1 + w_j^2 u^2) + nc_j w_j^2 u^2 / (2 (1 + w_j^2 u^2))]``, integrated
  with ``scipy.integrate.quad``: adaptive quadrature up to a point where the integrand is
  oscillating with a slowly varying envelope, then QUADPACK's Fourier-integral routine (QAWF) for
  the infinite tail, unless ``rho`` is already past ``e^40`` there. Its absolute error is about
  ``1e-12``; the ``1/2 - integral`` cancellation makes its *relative* error grow without bound in
  the lower tail.
- **Saddlepoint** (Lugannani & Rice 1980): solve ``K'(s) = x`` (``s < 0`` below the mean), set
  ``r = sign(s) sqrt(2 (s x - K(s)))``, ``v = s sqrt(K''(s))``; then
  ``P(Q <= x) ~ Phi(r) + phi(r) (1/r - 1/v)``, evaluated in log space as
  ``log_ndtr(r) + log1p(mills(r) (1/r - 1/v))`` with ``mills(r) = phi(r) / Phi(r)``. Where that
  correction is not positive (it can happen for very few terms) the Barndorff-Nielsen form
  ``Phi(r + log(v / r) / r)``, asymptotically equivalent, is used instead. Its relative error in the
  CDF is ``O(1 / number of terms)``, roughly constant however deep the tail, so its error in log-CDF
  stays small where Imhof's explodes.

**Rule.** Below the mean the saddlepoint is computed first (it is cheap); if it puts the CDF
below ``SADDLEPOINT_MAX_CDF = 1e-4`` it is the answer, otherwise (and always at or above the mean)
Imhof is. Deciding with the saddlepoint rather than with Imhof's own value matters: where inversion
has failed its value is off by its absolute error, which can itself exceed ``1e-4`` for one or two
terms (a single heavy-tailed envelope ``u^-3/2``), while the saddlepoint is never off by more than
a factor of about 1.2 even for one term. Above ``1e-4`` Imhof's relative error is below ``1e-5``
(tested against ``scipy.stats.ncx2``); below it the saddlepoint's relative error in the CDF is about
``0.15 / number of terms`` (the GP's MSE has ``n_test * out_dim`` terms). ``x <= offset`` lies below the
support: the CDF is exactly 0 and the log-CDF ``-inf`` (method ``"below_support"``); callers that
serialise the result must turn that into "unbounded", never a number.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import integrate, optimize, special

# Below this saddlepoint CDF the saddlepoint is the answer, above it Imhof (module docstring, "Rule").
SADDLEPOINT_MAX_CDF = 1e-4
# Imhof's integrand is dropped once rho(u) > e^_LOG_RHO_CUTOFF: the remaining integral is below
# 2 e^-40 / (number of terms), far under quad's own tolerance.
_LOG_RHO_CUTOFF = 40.0
_QUAD_EPSABS = 1e-13
_QUAD_LIMIT = 2000

Method = Literal["imhof", "saddlepoint", "below_support"]


@dataclass(frozen=True)
class LogCdf:
    """``log_cdf``: natural log of ``P(Q <= x)`` (``-inf`` only below the support);
    ``method``: which computation produced it (module docstring)."""

    log_cdf: float
    method: Method

    @property
    def bits(self) -> float:
        """``-log2 P(Q <= x)``."""
        return -self.log_cdf / math.log(2.0)


def _validated(weights, noncentralities, offset: float) -> tuple[np.ndarray, np.ndarray, float]:
    w = np.asarray(weights, dtype=np.float64).ravel()
    nc = np.asarray(noncentralities, dtype=np.float64).ravel()
    if w.shape != nc.shape:
        raise ValueError(f"weights and noncentralities must have the same length, got {w.size} and {nc.size}")
    if w.size == 0:
        raise ValueError("a generalised chi-squared needs at least one term")
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise ValueError("weights must be finite and positive (fold zero-weight terms into the offset)")
    if not (np.all(np.isfinite(nc)) and np.all(nc >= 0)):
        raise ValueError("noncentralities must be finite and non-negative")
    if not (math.isfinite(offset) and offset >= 0):
        raise ValueError(f"offset must be finite and non-negative, got {offset}")
    return w, nc, float(offset)


def generalized_chi2_mean(weights, noncentralities, offset: float = 0.0) -> float:
    """``E[Q] = offset + sum_j w_j (1 + nc_j)``."""
    w, nc, offset = _validated(weights, noncentralities, offset)
    return offset + float(np.sum(w * (1.0 + nc)))


def generalized_chi2_variance(weights, noncentralities, offset: float = 0.0) -> float:
    """``Var[Q] = sum_j 2 w_j^2 (1 + 2 nc_j)``."""
    w, nc, _ = _validated(weights, noncentralities, offset)
    return float(np.sum(2.0 * w**2 * (1.0 + 2.0 * nc)))


def imhof_cdf(x: float, weights, noncentralities, offset: float = 0.0) -> float:
    """``P(Q <= x)`` by Imhof's inversion of the characteristic function (module docstring).

    Accurate to about ``1e-12`` in absolute terms; returns a value clipped to ``[0, 1]``.
    """
    w, nc, offset = _validated(weights, noncentralities, offset)
    if x <= offset:
        return 0.0
    # Scale so the largest weight is 1: the integration variable then lives on a fixed scale.
    scale = float(np.max(w))
    w, y = w / scale, (x - offset) / scale

    def phase_and_log_rho(u: float) -> tuple[float, float]:
        wu = w * u
        q = 1.0 + wu * wu
        phase = 0.5 * float(np.sum(np.arctan(wu) + nc * wu / q))
        log_rho = float(np.sum(0.25 * np.log1p(wu * wu) + 0.5 * nc * wu * wu / q))
        return phase, log_rho

    def integrand(u: float) -> float:
        if u == 0.0:
            # Limit u -> 0 of sin(theta) / (u rho): theta'(0).
            return 0.5 * (float(np.sum(w * (1.0 + nc))) - y)
        phase, log_rho = phase_and_log_rho(u)
        return math.sin(phase - 0.5 * y * u) * math.exp(-log_rho) / u

    # Split point: ~30 oscillations of the carrier sin(y u / 2), beyond every weight's knee
    # (w_j u >> 1 makes the phase's non-carrier part flat), or where rho is already negligible.
    w_min = float(np.min(w))
    split = max(30.0 * 4.0 * math.pi / y, 20.0 / w_min)
    split = min(split, 1e7)
    if phase_and_log_rho(split)[1] > _LOG_RHO_CUTOFF:
        split = optimize.brentq(lambda u: phase_and_log_rho(u)[1] - _LOG_RHO_CUTOFF, 0.0, split)
        tail = 0.0
    else:
        tail = None
    # Breakpoints keep QUADPACK's bisection on track: the envelope changes on a log scale (the
    # weights' knees u ~ 1/w_j and the slow power-law decay after them), the carrier on a linear one.
    n_periods = min(int(split * y / (2.0 * math.pi)), 500)
    log_grid = np.geomspace(0.1, split, max(int(4 * math.log10(10.0 * split)), 2))
    points = np.unique(np.concatenate([np.linspace(0, split, n_periods + 2)[1:-1], log_grid]))
    points = points[(points > 0) & (points < split)]
    with warnings.catch_warnings():
        # Quadrature warnings report error estimates that the rule below already absorbs.
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        head, _ = integrate.quad(
            integrand, 0.0, split, points=points if points.size else None,
            epsabs=_QUAD_EPSABS, epsrel=1e-10, limit=_QUAD_LIMIT + points.size,
        )
        if tail is None:
            # sin(phi - y u / 2) = sin(phi) cos(y u / 2) - cos(phi) sin(y u / 2): Fourier integrals of
            # slowly varying, decaying envelopes, which QAWF handles on [split, inf).
            def envelope(u: float, part) -> float:
                phase, log_rho = phase_and_log_rho(u)
                return part(phase) * math.exp(-log_rho) / u

            cos_part, _ = integrate.quad(envelope, split, np.inf, args=(math.sin,), weight="cos", wvar=0.5 * y)
            sin_part, _ = integrate.quad(envelope, split, np.inf, args=(math.cos,), weight="sin", wvar=0.5 * y)
            tail = cos_part - sin_part
    return float(np.clip(0.5 - (head + tail) / math.pi, 0.0, 1.0))


def _cgf(s: float, w: np.ndarray, nc: np.ndarray, offset: float) -> tuple[float, float, float]:
    """``K(s), K'(s), K''(s)`` for ``s < 1 / (2 max w)``."""
    d = 1.0 - 2.0 * w * s
    k0 = offset * s + float(np.sum(-0.5 * np.log(d) + nc * w * s / d))
    k1 = offset + float(np.sum(w / d + nc * w / d**2))
    k2 = float(np.sum(2.0 * w**2 / d**2 + 4.0 * nc * w**2 / d**3))
    return k0, k1, k2


def saddlepoint_log_cdf(x: float, weights, noncentralities, offset: float = 0.0) -> float:
    """Natural log of ``P(Q <= x)`` by the Lugannani-Rice saddlepoint approximation, for ``x`` below
    the mean (the lower tail, where it is meant to be used; module docstring).

    Raises:
        ValueError: ``x`` is not strictly between ``offset`` and the mean.
    """
    w, nc, offset = _validated(weights, noncentralities, offset)
    mean = offset + float(np.sum(w * (1.0 + nc)))
    if not offset < x < mean:
        raise ValueError(f"the saddlepoint is used in the lower tail offset < x < mean ({offset}, {mean}), got {x}")
    # K'(s) increases from offset (s -> -inf) to the mean (s = 0): bracket the root in log(-s).
    def excess(log_minus_s: float) -> float:
        return _cgf(-math.exp(log_minus_s), w, nc, offset)[1] - x

    lo, hi = -math.log(float(np.max(w))) - 1.0, -math.log(float(np.max(w))) - 1.0
    while excess(lo) <= 0:
        lo -= 2.0
    while excess(hi) >= 0:
        hi += 2.0
    s = -math.exp(optimize.brentq(excess, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=500))
    k0, _, k2 = _cgf(s, w, nc, offset)
    r = -math.sqrt(max(2.0 * (s * x - k0), 0.0))
    v = s * math.sqrt(k2)
    if r > -1e-4:
        # Within rounding of the mean 1/r - 1/v cancels catastrophically; Phi(r) is the limit.
        return float(special.log_ndtr(r))
    log_phi_r = -0.5 * r * r - 0.5 * math.log(2.0 * math.pi)
    log_Phi_r = float(special.log_ndtr(r))
    correction = math.exp(log_phi_r - log_Phi_r) * (1.0 / r - 1.0 / v)
    if correction > -1.0:
        return log_Phi_r + math.log1p(correction)
    return float(special.log_ndtr(r + math.log(v / r) / r))


def log_cdf(x: float, weights, noncentralities, offset: float = 0.0) -> LogCdf:
    """Natural log of ``P(Q <= x)`` for ``Q = offset + sum_j w_j noncentral_chi2_1(nc_j)``.

    Args:
        x: the threshold (the target error epsilon for a test MSE).
        weights: the ``w_j``, positive (shape ``(m,)``).
        noncentralities: the ``nc_j``, non-negative (shape ``(m,)``).
        offset: the constant part, non-negative (default 0).

    Returns:
        ``LogCdf(log_cdf, method)`` with the method picked by the module docstring's rule.
    """
    w, nc, offset = _validated(weights, noncentralities, offset)
    if x <= offset:
        return LogCdf(-math.inf, "below_support")
    mean = offset + float(np.sum(w * (1.0 + nc)))
    saddlepoint = saddlepoint_log_cdf(x, w, nc, offset) if x < mean else 0.0
    if saddlepoint < math.log(SADDLEPOINT_MAX_CDF):
        return LogCdf(saddlepoint, "saddlepoint")
    cdf = imhof_cdf(x, w, nc, offset)
    if cdf <= 0.0:  # not seen in tests; inversion cannot have failed more gracefully than this
        return LogCdf(saddlepoint, "saddlepoint")
    return LogCdf(math.log(cdf), "imhof")


def exact_bits(epsilon: float, weights, noncentralities, offset: float = 0.0) -> float:
    """``-log2 P(Q <= epsilon)``: the bits of the kernel sampler computed without sampling.

    ``inf`` when ``epsilon`` is at or below the support's lower end ``offset`` (no hypothesis reaches it).
    """
    return log_cdf(epsilon, weights, noncentralities, offset).bits


def epsilon_for_bits(bits: float, weights, noncentralities, offset: float = 0.0) -> float:
    """The ``x`` with ``-log2 P(Q <= x) = bits`` (``bits > 0``): the target error whose exact answer
    is ``bits``, for calibrating estimators. Bracketed between the mean and ``offset + gap / 2^j``
    (halving towards the support until the bits exceed the target), then Brent's method."""
    if not bits > 0:
        raise ValueError(f"bits must be positive, got {bits}")
    mean = generalized_chi2_mean(weights, noncentralities, offset)
    high = low = mean
    while log_cdf(low, weights, noncentralities, offset).bits <= bits:
        high, low = low, offset + (low - offset) / 2
    return float(optimize.brentq(lambda x: log_cdf(x, weights, noncentralities, offset).bits - bits, low, high,
                                 xtol=1e-15 * offset + 1e-300, rtol=1e-14))
