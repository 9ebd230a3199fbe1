"""Scaled non-central chi-squared fits of sampled losses and their lower tail (docs/methods.md §1).

Model: a loss is ``L = scale * X`` with ``X ~ ncx2(df, nc)`` (loc 0). For ``X ~ ncx2(k, l)`` the
mean is ``k + l``, the variance ``2(k + 2l)`` and the third central moment ``8(k + 3l)``; with the
scale ``s``: ``m1 = s(k + l)``, ``m2 = 2 s^2 (k + 2l)``, ``m3 = 8 s^3 (k + 3l)``.

Method of moments (closed form). ``a = m1/s``, ``b = m2/(2 s^2)``, ``c = m3/(8 s^3)`` are
``k + l``, ``k + 2l``, ``k + 3l``, so ``a + c = 2b``, i.e. ``8 m1 s^2 - 8 m2 s + m3 = 0`` and

    s = (m2 - sqrt(m2^2 - m1 m3 / 2)) / (2 m1),   l = m2/(2 s^2) - m1/s,   k = m1/s - l.

(the other root gives ``l < 0``). In terms of the shape ratio ``r = m1 m3 / m2^2`` the family covers
``1.5 < r <= 2`` only (``r = 2(1+3t)(1+t)/(1+2t)^2`` with ``t = l/k``: 2 for the central chi-squared,
1.5 as ``l/k -> inf``). Outside that range (sampling noise of ``m3`` puts nearly normal samples there
often):

- ``r > 2`` (more right-skewed than any member): the moment equations would need ``l < 0``; we fit the
  central chi-squared (``nc = 0``) to the first two moments, ``k = 2 m1^2 / m2``, ``s = m2 / (2 m1)``.
- ``r <= r_min`` (too little or negative skew): ``r`` is clamped to ``r_min``, the value at
  ``l/k = 100``, and the equations solved with it; mean and variance are still matched exactly.

Maximum likelihood starts there (``mle_fit``). The log-likelihood of a sample is evaluated through a
Chebyshev quadrature in ``u = ln x``: the log-density is computed at ``_NODES`` Chebyshev points of the
sample's range and the sum over the sample is a fixed weighted sum of those node values (exact for
polynomials of degree < ``_NODES`` in ``u``; the log-density is analytic in ``u``). This makes one
evaluation cost ``_NODES`` Bessel calls instead of ``n``, which is what makes refitting every
bootstrap resample affordable; the final log-likelihood is recomputed point by point and the fit is
redone point by point if the two disagree.

The CDF is the Poisson mixture ``F(x) = sum_j Pois(j; nc/2) P(df/2 + j, x/(2 scale))`` (``P`` the
regularised lower incomplete gamma), summed with logsumexp; ``log P`` comes from a power series in
log space where ``P`` is too small for floating point, so ``log_cdf`` is finite for every ``x > 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from workers.probes.functional._batched_newton import curvature_steps, minimise

# Shape ratio m1*m3/m2^2 at l/k = 100: the clamp for samples less skewed than the family allows.
_R_MIN = 2.0 * (1 + 300) * (1 + 100) / (1 + 200) ** 2
# Non-centralities below this are the central chi-squared: the likelihood is flat there.
_NC_FLOOR = 1e-8
# Bounds of df and nc for the likelihood search (the CDF's Poisson sum has ~nc/2 terms).
_PARAM_MAX = 1e5
_NODES = 32  # quadrature error ~1e-7 relative at worst seen (x over 25 e-folds)
# log P(a, z) from gammainc when P exceeds this; below it, from the log-space series.
_SERIES_BELOW = 1e-200
_LOG_TERM_CUTOFF = 40.0  # terms this far (in log) below the running sum are negligible (e^-40)


@dataclass(frozen=True)
class NcChi2Fit:
    """A fitted scaled non-central chi-squared: ``L = scale * ncx2(df, nc)``.

    ``loglik``: total log-likelihood of the sample it was fitted to; ``converged``: whether the
    optimiser reported convergence; ``method``: ``"mle"``, or the moment case (``"moments"``,
    ``"moments_central"``, ``"moments_clamped"``) when the likelihood search could not improve on it.
    """

    df: float
    nc: float
    scale: float
    loglik: float
    converged: bool
    method: str


def _sample(losses) -> np.ndarray:
    x = np.asarray(losses, dtype=np.float64).ravel()
    if x.size < 3:
        raise ValueError(f"need at least 3 losses to fit, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("losses must be finite (exclude diverged hypotheses first)")
    if np.any(x <= 0):
        raise ValueError("losses must be positive: a non-central chi-squared puts no mass at or below 0")
    return x


def _moments_case(losses) -> tuple[float, float, float, str]:
    x = _sample(losses)
    m1 = float(x.mean())
    d = x - m1
    m2 = float(np.mean(d * d))
    m3 = float(np.mean(d * d * d))
    if not m2 > 0:
        raise ValueError("all losses are equal: a distribution cannot be fitted to a point mass")
    r = m1 * m3 / (m2 * m2)
    if r >= 2.0:
        return 2.0 * m1 * m1 / m2, 0.0, m2 / (2.0 * m1), "moments_central" if r > 2.0 else "moments"
    case = "moments"
    if r <= _R_MIN:
        m3, case = _R_MIN * m2 * m2 / m1, "moments_clamped"
    s = (m2 - math.sqrt(max(m2 * m2 - m1 * m3 / 2.0, 0.0))) / (2.0 * m1)
    nc = max(m2 / (2.0 * s * s) - m1 / s, 0.0)
    return m1 / s - nc, nc, s, case


_DEBYE_MIN_ORDER = 50.0
# Above this Poisson mean (nc/2) the log-CDF uses the saddlepoint approximation (see there).
_SADDLEPOINT_ABOVE_LAMBDA = 1e4


def moments_fit(losses) -> tuple[float, float, float]:
    """Method-of-moments ``(df, nc, scale)`` from mean, variance and third central moment.

    Closed form and degenerate cases as in the module docstring. Raises ``ValueError`` for fewer than
    3 losses, non-finite or non-positive losses, or zero variance.
    """
    df, nc, scale, _ = _moments_case(losses)
    return df, nc, scale


def _log_bessel_iv_debye(v, z: np.ndarray) -> np.ndarray:
    """``log I_v(z)`` by Debye's uniform asymptotic expansion for large order ``v`` (two correction
    terms; relative error O(v^-3)). Used where ``ive`` under- or overflows, which happens exactly
    when ``v`` is large (very concentrated loss samples fit df in the thousands)."""
    t = z / v
    root = np.sqrt(1.0 + t * t)
    p = 1.0 / root
    eta = root + np.log(t / (1.0 + root))
    u1 = p * (3.0 - 5.0 * p * p) / 24.0
    u2 = p * p * (81.0 - 462.0 * p * p + 385.0 * p**4) / 1152.0
    return v * eta - 0.5 * np.log(2.0 * math.pi * v) - 0.5 * np.log(root) + np.log1p(u1 / v + u2 / (v * v))


def _logpdf_standard(x: np.ndarray, df, nc) -> np.ndarray:
    """log density of ncx2(df, nc) at x > 0 (chi2 where nc is below the floor).

    ``df`` and ``nc`` are numbers or arrays that broadcast against ``x`` (e.g. ``(lanes, 1)`` against
    ``(lanes, nodes)``): one array call evaluates many parameter sets at once.
    """
    x, df, nc = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, df, nc)))
    half = 0.5 * df
    central = nc < _NC_FLOOR
    safe_nc = np.where(central, 1.0, nc)
    z = np.sqrt(safe_nc * x)
    common = -math.log(2.0) - 0.5 * (x + safe_nc) + (0.5 * half - 0.5) * (np.log(x) - np.log(safe_nc))
    out = common + np.log(special.ive(half - 1.0, z)) + z
    if np.any(central):
        chi2 = special.xlogy(half - 1.0, x) - 0.5 * x - half * math.log(2.0) - special.gammaln(half)
        out = np.where(central, chi2, out)
    bad = ~np.isfinite(out) & ~central
    debye = bad & (half - 1.0 >= _DEBYE_MIN_ORDER)
    if np.any(debye):
        # ive under/overflows at large order: the asymptotic expansion is accurate there and,
        # unlike the library fallback, costs no more than the direct formula.
        out = np.array(out, copy=True)
        out[debye] = common[debye] + _log_bessel_iv_debye(half[debye] - 1.0, z[debye])
        bad = ~np.isfinite(out) & ~central
    if np.any(bad):  # remaining under/overflow at small order: the library routine handles it
        out = np.array(out, copy=True)
        out[bad] = stats.ncx2.logpdf(x[bad], df[bad], nc[bad])
    return out


def _logpdf(x: np.ndarray, df, nc, scale) -> np.ndarray:
    return _logpdf_standard(x / scale, df, nc) - np.log(scale)


class _Quadrature:
    """Weights ``q`` with ``sum_i f(ln x_i) ~= sum_g q_g f(u_g)`` over Chebyshev nodes ``u_g``.

    ``point_weights[i]`` is loss ``i``'s share of the node weights, so a resample that holds loss
    ``i`` ``c_i`` times has weights ``c @ point_weights`` on the same nodes: every bootstrap
    resample lies inside the full sample's range, so one set of nodes serves them all.
    """

    def __init__(self, x: np.ndarray, size: int = _NODES):
        u = np.log(x)
        lo, hi = float(u.min()), float(u.max())
        mid, half = 0.5 * (lo + hi), max(0.5 * (hi - lo), 1e-12)
        theta = np.pi * (np.arange(size) + 0.5) / size
        orders = np.arange(size)
        self.nodes = np.exp(mid + half * np.cos(theta))
        # c_m = sum_g coef[m, g] f(u_g); sum_i f(u_i) = sum_m c_m sum_i T_m(t_i).
        self.coef = np.cos(np.outer(orders, theta)) * (2.0 / size)
        self.coef[0] *= 0.5
        t = np.clip((u - mid) / half, -1.0, 1.0)
        self.point_weights = np.cos(np.outer(np.arccos(t), orders)) @ self.coef
        self.weights = self.point_weights.sum(axis=0)

    def smallest_for(self, x: np.ndarray, fit: NcChi2Fit) -> "_Quadrature":
        """The quadrature with the fewest nodes (of 8, 12, 16, 24) whose truncation error at ``fit``
        stays below 1e-12 per loss, judged from the Chebyshev coefficients on this one's nodes
        (the interpolant's error is at most twice the sum of the dropped coefficients); this one
        if none. Resamples' fits lie near ``fit``, and the result is checked pointwise anyway."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            coefficients = np.abs(self.coef @ _logpdf(self.nodes, fit.df, fit.nc, fit.scale))
        if not np.all(np.isfinite(coefficients)):
            return self
        for size in (8, 12, 16, 24):
            if size < self.nodes.size and 2.0 * coefficients[size:].sum() <= 1e-12:
                return _Quadrature(x, size)
        return self

    def loglik(self, df: float, nc: float, scale: float) -> float:
        return float(self.weights @ _logpdf(self.nodes, df, nc, scale))


def _pack(df: float, nc: float, scale: float) -> np.ndarray:
    """Search coordinates ``(ln mean, ln variance, ln(nc/df))``: the first two are pinned down by the
    data and nearly independent of the third, the weakly identified shape, so the simplex does not
    crawl along the df-nc ridge."""
    ratio = max(nc / df, 1e-2)  # a start on the nc floor sits in a flat region: begin above it
    return np.log([scale * (df + nc), 2.0 * scale * scale * (df + 2.0 * nc), ratio])


def _unpack(theta: np.ndarray) -> tuple[float, float, float]:
    df, nc, scale = _unpack_many(np.asarray(theta, dtype=np.float64)[None, :])
    return float(df[0]), float(nc[0]), float(scale[0])


def _unpack_many(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_pack``'s inverse for ``(m, 3)`` coordinates: ``(df, nc, scale)`` arrays of shape ``(m,)``."""
    mean, variance, ratio = np.exp(np.clip(theta, -700.0, 700.0)).T
    ratio = np.minimum(ratio, _PARAM_MAX)
    scale = variance * (1.0 + ratio) / (2.0 * mean * (1.0 + 2.0 * ratio))
    df = np.minimum(mean / (scale * (1.0 + ratio)), _PARAM_MAX)
    nc = df * ratio
    return df, np.where(nc >= _NC_FLOOR * df, nc, 0.0), scale


def _maximise(loglik, x0: np.ndarray, n: int):
    def objective(theta):
        value = loglik(*_unpack(theta)) / n
        return -value if np.isfinite(value) else np.inf

    # Steps of the first simplex: 2% in mean and variance (a few standard errors), 50% in shape.
    simplex = x0 + np.vstack([np.zeros(3), np.diag([0.02, 0.04, 0.5])])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return optimize.minimize(
            objective, x0, method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": 1e-2, "fatol": 1e-7, "maxfev": 2000},
        )


def mle_fit(losses, start: NcChi2Fit | tuple[float, float, float] | None = None) -> NcChi2Fit:
    """Maximum-likelihood scaled non-central chi-squared.

    Nelder-Mead over ``(ln mean, ln variance, ln(nc/df))`` (see ``_pack``) with ``df, nc/df <= 1e5``;
    ``nc < 1e-8 df`` is the central chi-squared (``nc = 0``). Tolerances: 1e-2 in the coordinates,
    1e-7 in the mean log-likelihood per loss (far below the bootstrap spread of any output).

    Args:
        losses: positive finite losses (any shape, flattened), at least 3.
        start: starting ``(df, nc, scale)`` or a previous fit (bootstrap refits start from the
            full-sample fit); default: ``moments_fit(losses)``.

    Returns:
        The fit (``method="mle"``); if no finite likelihood was found, the start itself with
        ``converged=False`` and ``method`` naming the moment case, or ``"start"`` for a given start.
    """
    x = _sample(losses)
    if start is None:
        df0, nc0, s0, start_method = _moments_case(x)
    elif isinstance(start, NcChi2Fit):
        df0, nc0, s0, start_method = start.df, start.nc, start.scale, "start"
    else:
        (df0, nc0, s0), start_method = start, "start"
    x0 = _pack(df0, nc0, s0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        quadrature = _Quadrature(x)
        result = _maximise(quadrature.loglik, x0, x.size)
        df, nc, scale = _unpack(result.x)
        loglik = float(_logpdf(x, df, nc, scale).sum())
        objective = _quadrature_objective(quadrature.nodes, quadrature.weights[None, :], x.size)
        if not abs(loglik - quadrature.loglik(df, nc, scale)) <= 1e-6 * max(1.0, abs(loglik)):
            # The quadrature failed for this sample (extreme range): search with pointwise sums.
            objective = _pointwise_objective(x)
            result = _maximise(lambda *p: float(_logpdf(x, *p).sum()), x0, x.size)
            df, nc, scale = _unpack(result.x)
            loglik = float(_logpdf(x, df, nc, scale).sum())
        if not np.isfinite(loglik):
            # Nelder-Mead never ends worse than its start, so this means the start itself is unusable.
            return NcChi2Fit(float(df0), float(nc0), float(s0), float(_logpdf(x, df0, nc0, s0).sum()), False, start_method)
        polished = _polish(x, result.x, loglik, objective)
        if polished is not None:
            return polished
    return NcChi2Fit(float(df), float(nc), float(scale), loglik, bool(result.success), "mle")


def _polish(x: np.ndarray, theta: np.ndarray, loglik: float, objective) -> NcChi2Fit | None:
    """Newton from Nelder-Mead's answer to the optimum itself.

    Nelder-Mead stops once its simplex is 1e-2 wide, which leaves the parameters about 1e-3 off the
    maximum; a few Newton steps on the same log-likelihood (``objective``: the quadrature's, or the
    pointwise one where the quadrature failed) converge to it, so a fit does not depend on how the
    search got there (and the bootstrap refits, which run Newton, start from the true maximum).
    ``None`` when Newton does not converge to a point at least as likely."""
    steps = curvature_steps(objective, theta, _H0)
    theta_new, value, converged = minimise(objective, 1, theta, steps, max_step=_MAX_STEP)
    if not converged[0]:
        return None
    df, nc, scale = _unpack(theta_new[0])
    polished = float(_logpdf(x, df, nc, scale).sum())
    return NcChi2Fit(df, nc, scale, polished, True, "mle") if polished >= loglik else None


# Coarse steps for measuring the curvature at a fit: 0.1% in mean and variance, 1% in shape.
_H0 = np.array([1e-3, 1e-3, 1e-2])
# Newton's moves per iteration, in the packed coordinates: at most a factor e in mean and variance
# and e^3 in the shape ratio.
_MAX_STEP = np.array([1.0, 1.0, 3.0])


def _pointwise_objective(x: np.ndarray):
    """Mean negative log-likelihood of the losses ``x`` at ``(m, 3)`` packed points (one lane)."""

    def objective(theta: np.ndarray, _lanes: np.ndarray) -> np.ndarray:
        df, nc, scale = _unpack_many(theta)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            value = -_logpdf(x[None, :], df[:, None], nc[:, None], scale[:, None]).mean(axis=1)
        return np.where(np.isfinite(value), value, np.inf)

    return objective


def _quadrature_objective(nodes: np.ndarray, weights: np.ndarray, n: int):
    """Mean negative log-likelihood of resample ``lane`` (node weights ``weights[lane]``) at
    ``(m, 3)`` packed points: the lanes' log-densities in one array call."""

    def objective(theta: np.ndarray, lanes: np.ndarray) -> np.ndarray:
        df, nc, scale = _unpack_many(theta)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logpdf = _logpdf(nodes[None, :], df[:, None], nc[:, None], scale[:, None])
            value = -np.einsum("mg,mg->m", weights[lanes], logpdf) / n
        return np.where(np.isfinite(value), value, np.inf)

    return objective


def mle_refits(losses, counts: np.ndarray, start: NcChi2Fit) -> list[NcChi2Fit]:
    """Maximum-likelihood fits of many resamples of ``losses`` at once (the bootstrap's refits).

    Resample ``b`` holds loss ``i`` ``counts[b, i]`` times. All resamples share the full sample's
    quadrature nodes (every resample lies in its range) and are fitted together by damped Newton
    from ``start`` (``_batched_newton``): each iteration evaluates every resample's log-likelihood in
    one array call. The optimum is the one ``mle_fit`` finds for the resample, to ~1e-9 in the
    mean log-likelihood per loss. The quadrature uses as few nodes as keep its error at the start
    below 1e-12 per loss (``_Quadrature.smallest_for``) and is checked pointwise at the resamples whose
    parameters lie furthest out; if it fails there every resample is checked, and any resample
    whose check fails or whose search does not converge is fitted by ``mle_fit`` alone.

    Args:
        losses: the full sample (positive, finite), ``n`` losses.
        counts: ``(B, n)`` non-negative integer counts, each row summing to ``n``.
        start: the full sample's fit.

    Returns:
        ``B`` fits; ``loglik`` is each resample's (quadrature) log-likelihood.
    """
    x = _sample(losses)
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[1] != x.size:
        raise ValueError(f"counts must have shape (B, {x.size}), got {counts.shape}")
    n = int(counts[0].sum()) if counts.shape[0] else x.size
    quadrature = _Quadrature(x).smallest_for(x, start)
    weights = counts @ quadrature.point_weights
    theta0 = _pack(start.df, start.nc, start.scale)
    objective = _quadrature_objective(quadrature.nodes, weights, n)
    full = _quadrature_objective(quadrature.nodes, quadrature.weights[None, :], x.size)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        steps = curvature_steps(full, theta0, _H0)
        theta, value, converged = minimise(objective, counts.shape[0], theta0, steps, max_step=_MAX_STEP)
    df, nc, scale = _unpack_many(theta)
    loglik = -value * n
    refit = ~converged
    checked = _furthest_lanes(theta, converged)
    if checked.size and not np.all(_quadrature_agrees(x, counts[checked], df[checked], nc[checked], scale[checked], loglik[checked])):
        everywhere = np.flatnonzero(converged)
        refit[everywhere] |= ~_quadrature_agrees(x, counts[everywhere], df[everywhere], nc[everywhere], scale[everywhere], loglik[everywhere])
    fits = [NcChi2Fit(float(a), float(b), float(c), float(d), True, "mle") for a, b, c, d in zip(df, nc, scale, loglik)]
    for lane in np.flatnonzero(refit):
        fits[lane] = mle_fit(np.repeat(x, counts[lane]), start)
    return fits


def _furthest_lanes(theta: np.ndarray, converged: np.ndarray) -> np.ndarray:
    """The converged lanes at the smallest and largest value of each coordinate."""
    idx = np.flatnonzero(converged)
    if idx.size == 0:
        return idx
    ends = np.concatenate([np.argmin(theta[idx], axis=0), np.argmax(theta[idx], axis=0)])
    return np.unique(idx[ends])


def _quadrature_agrees(x, counts, df, nc, scale, loglik) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pointwise = np.einsum("li,li->l", counts, _logpdf(x[None, :], df[:, None], nc[:, None], scale[:, None]))
    return np.abs(pointwise - loglik) <= 1e-6 * np.maximum(1.0, np.abs(pointwise))


def _log_regularized_lower_gamma(a: np.ndarray, z: np.ndarray, log_z: np.ndarray) -> np.ndarray:
    """``ln P(a, z)``, finite for z > 0 however small P is (broadcast arrays of equal shape)."""
    p = special.gammainc(a, z)
    with np.errstate(divide="ignore"):
        out = np.where(p > 0.5, np.log1p(-special.gammaincc(a, z)), np.log(p))
    tiny = p < _SERIES_BELOW
    if np.any(tiny):
        # P = z^a e^-z / Gamma(a+1) * sum_n prod_{m<=n} z/(a+m); here z < a, so the terms decrease.
        at, zt, lzt = a[tiny], z[tiny], log_z[tiny]
        log_sum = np.zeros_like(at)
        log_term = np.zeros_like(at)
        start, block = 1, 256
        active = np.ones(at.shape, dtype=bool)
        while np.any(active):
            m = np.arange(start, start + block)
            steps = lzt[active, None] - np.log(at[active, None] + m)
            terms = log_term[active, None] + np.cumsum(steps, axis=1)
            log_sum[active] = np.logaddexp(log_sum[active], special.logsumexp(terms, axis=1))
            log_term[active] = terms[:, -1]
            active &= log_term > log_sum - 37.0  # e^-37 < 1e-16: the rest changes nothing
            start += block
        out[tiny] = at * lzt - zt - special.gammaln(at + 1.0) + log_sum
    return out


def log_cdf(x, df: float, nc: float, scale: float):
    """Natural log of ``P(L <= x)`` for ``L = scale * ncx2(df, nc)``, computed in log space.

    Poisson mixture over ``j = 0..J`` with ``J >= nc/2 + 40 sqrt(nc/2) + 40`` (extended until the last
    term is ``e^-40`` below the sum) and logsumexp. Finite for every ``x > 0`` representable as a
    float64 (the log of the smallest such CDF is of order ``-df/2 * 745``, far inside float range);
    ``-inf`` for ``x <= 0``, where the CDF is exactly 0.

    Args:
        x: a number or array of numbers.
        df, nc, scale: the distribution (``df > 0``, ``nc >= 0``, ``scale > 0``).

    Returns:
        A float for scalar ``x``, else an array of ``x``'s shape.
    """
    if not (df > 0 and nc >= 0 and scale > 0):
        raise ValueError(f"need df > 0, nc >= 0, scale > 0; got df={df}, nc={nc}, scale={scale}")
    xs = np.asarray(x, dtype=np.float64)
    out = _log_cdf_elementwise(xs.ravel(), np.full(xs.size, float(df)), np.full(xs.size, float(nc)),
                               np.full(xs.size, float(scale))).reshape(xs.shape)
    return float(out) if out.ndim == 0 else out


def _log_cdf_elementwise(x: np.ndarray, df: np.ndarray, nc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``log_cdf`` of 1-D ``x[i]`` under its own ``(df[i], nc[i], scale[i])``: many fits in one call."""
    out = np.full(x.shape, -np.inf)
    positive = x > 0
    with np.errstate(divide="ignore"):
        log_z = np.log(np.where(positive, x, 1.0)) - np.log(2.0 * scale)  # not log(x / 2s): that could underflow
    z = np.exp(log_z)
    lam = 0.5 * nc
    central = positive & (lam == 0)
    saddle = positive & (lam > _SADDLEPOINT_ABOVE_LAMBDA)
    mixture = positive & ~central & ~saddle
    if np.any(central):
        out[central] = _log_regularized_lower_gamma(0.5 * df[central], z[central], log_z[central])
    if np.any(saddle):
        out[saddle] = _saddlepoint_log_cdf(x[saddle] / scale[saddle], df[saddle], nc[saddle])
    if np.any(mixture):
        out[mixture] = _log_poisson_mixture(df[mixture], lam[mixture], z[mixture], log_z[mixture])
    return out


def _saddlepoint_log_cdf(x: np.ndarray, df: float, nc: float) -> np.ndarray:
    """Lugannani-Rice saddlepoint ``ln P(ncx2(df, nc) <= x)``, in log space.

    Used when ``nc/2`` is so large that summing the Poisson mixture would take tens of thousands of
    terms per point; there the relative error of the approximation is O(1/nc), far below anything a
    bootstrap interval resolves. Cumulant generating function ``K(t) = -df/2 ln(1-2t) + nc t/(1-2t)``;
    with ``u = 1/(1-2t)`` the saddlepoint equation ``K'(t) = df u + nc u^2 = x`` has a closed form.
    """
    u = (-df + np.sqrt(df * df + 4.0 * nc * x)) / (2.0 * nc)
    t = 0.5 * (1.0 - 1.0 / u)
    cgf = 0.5 * df * np.log(u) + nc * t * u
    k2 = 2.0 * df * u * u + 4.0 * nc * u**3
    w = np.sign(t) * np.sqrt(np.maximum(2.0 * (t * x - cgf), 0.0))
    v = t * np.sqrt(k2)
    out = special.log_ndtr(w)
    away = np.abs(w) > 1e-4  # at the mean both w and v vanish; Phi(w) alone is exact to O(w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mills = np.exp(-0.5 * w * w - 0.5 * math.log(2.0 * math.pi) - out)  # phi(w) / Phi(w)
        factor = 1.0 + mills * (1.0 / w - 1.0 / v)
        corrected = out + np.log(factor)
        # Barndorff-Nielsen's form when the Lugannani-Rice factor loses its sign far in the tail.
        fallback = special.log_ndtr(w + np.log(v / w) / w)
    good = away & np.isfinite(corrected) & (factor > 0)
    out = np.where(good, corrected, np.where(away & np.isfinite(fallback), fallback, out))
    return out


def _log_mixture_terms(j: np.ndarray, df: np.ndarray, lam: np.ndarray, z: np.ndarray, log_z: np.ndarray) -> np.ndarray:
    """``ln Pois(j; lam) + ln P(df/2 + j, z)`` for ``j`` of shape (n_x, k) and the rest of shape (n_x,)."""
    shape = j.shape
    log_pois = j * np.log(lam)[:, None] - lam[:, None] - special.gammaln(j + 1.0)
    return log_pois + _log_regularized_lower_gamma(
        0.5 * df[:, None] + j, np.broadcast_to(z[:, None], shape), np.broadcast_to(log_z[:, None], shape)
    )


def _log_poisson_mixture(df: np.ndarray, lam: np.ndarray, z: np.ndarray, log_z: np.ndarray) -> np.ndarray:
    """``ln sum_j Pois(j; lam) P(df/2 + j, z)`` summed over a window around each x's largest term
    (the arguments broadcast to one 1-D shape: each point may have its own distribution).

    The terms are unimodal in ``j`` (a log-concave Poisson weight times a CDF that falls with j),
    so the peak is found by bisection on the sign of the forward difference and only the window
    where terms are within ``e^-40`` of it is summed. The window is never wider than the Poisson
    spread (about ``9 sqrt(lam)`` each side); summing ``0..lam + 40 sqrt(lam)`` instead costs
    millions of terms per point once ``nc`` is large, which the fit's search does visit.
    """
    df, lam, z, log_z = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(df, lam, z, log_z))
    upper = np.ceil(lam + 40.0 * np.sqrt(lam) + 40.0).astype(np.int64)
    lo, hi = np.zeros(z.shape, dtype=np.int64), upper.copy()
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        pair = np.stack([mid, mid + 1], axis=1).astype(np.float64)
        values = _log_mixture_terms(pair, df, lam, z, log_z)
        rising = values[:, 1] > values[:, 0]
        lo, hi = np.where(rising, mid + 1, lo), np.where(rising, hi, mid)
    peak = lo
    half_width = int(math.ceil(9.0 * math.sqrt(float(lam.max())) + 64.0))
    while True:
        offsets = np.arange(-half_width, half_width + 1)
        result = np.empty(z.shape)
        edge_ok = np.ones(z.shape, dtype=bool)
        # Chunk x so one (x, j) block stays around 4 million entries.
        rows = max(1, 4_000_000 // offsets.size)
        for i in range(0, z.size, rows):
            sl = slice(i, i + rows)
            j = peak[sl, None] + offsets[None, :]
            top = upper[sl, None]
            valid = (j >= 0) & (j <= top)
            terms = np.where(valid, _log_mixture_terms(np.clip(j, 0, top).astype(np.float64), df[sl], lam[sl], z[sl], log_z[sl]), -np.inf)
            result[sl] = special.logsumexp(terms, axis=1)
            left = np.where(j[:, 0] > 0, terms[:, 0], -np.inf)
            right = np.where(j[:, -1] < upper[sl], terms[:, -1], -np.inf)
            edge_ok[sl] = (np.maximum(left, right) < result[sl] - _LOG_TERM_CUTOFF)
        if np.all(edge_ok) or half_width > upper.max():
            return result
        half_width *= 2


def bits_below(epsilon: float, fit: NcChi2Fit) -> float:
    """``-log2 P(L <= epsilon)`` under the fit: the bits to reach loss ``epsilon`` (``epsilon > 0``)."""
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon}")
    return 0.0 + max(-log_cdf(epsilon, fit.df, fit.nc, fit.scale) / math.log(2.0), 0.0)


def bits_below_fits(epsilon: float, fits: list[NcChi2Fit]) -> np.ndarray:
    """``bits_below(epsilon, fit)`` for every fit, in one vectorised CDF evaluation."""
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon}")
    params = np.array([[f.df, f.nc, f.scale] for f in fits], dtype=np.float64).reshape(-1, 3)
    log_p = _log_cdf_elementwise(np.full(len(fits), float(epsilon)), params[:, 0], params[:, 1], params[:, 2])
    return 0.0 + np.maximum(-log_p / math.log(2.0), 0.0)


def cdf(x, fit: NcChi2Fit):
    """``P(L <= x)`` under the fit (scipy's routine: accurate in the bulk, for goodness of fit)."""
    x = np.asarray(x, dtype=np.float64) / fit.scale
    return stats.chi2.cdf(x, fit.df) if fit.nc == 0 else stats.ncx2.cdf(x, fit.df, fit.nc)


def goodness_of_fit(losses, fit: NcChi2Fit) -> tuple[float, float]:
    """Kolmogorov-Smirnov ``(statistic, p-value)`` of the losses against the fitted distribution.

    The p-value treats the fit as given, so with parameters fitted to the same losses it is
    conservative (too large); read it as a descriptive distance, not a calibrated test.
    """
    result = stats.kstest(_sample(losses), lambda v: cdf(v, fit))
    return float(result.statistic), float(result.pvalue)
