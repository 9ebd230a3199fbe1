"""Curvature of a loss from Hessian-vector products: top eigenvalues and trace (docs/methods.md §5).

Pure functions, no ``nn.Module``: the loss is any function of a parameter dict returning a scalar
(e.g. ``torch.func.functional_call`` of a model on fixed data), and the Hessian ``H`` is never
formed, only applied to vectors:

- ``hessian_vector_product``: ``H v`` by forward-over-reverse differentiation,
  ``torch.func.jvp(torch.func.grad(loss), (params,), (v,))`` (one forward-mode pass through the
  gradient computation: about the cost of two or three backward passes, no graph kept between calls),
  or by reverse-over-reverse (``vjp`` of ``grad``) for operations without forward-mode derivatives.
- ``FlatParameters`` and ``flat_hessian_operator``: the same operator on flat float64 vectors, so the
  linear algebra below works on plain 1-D tensors whatever the parameter shapes and dtype.
- ``lanczos_top_eigenvalues``: the largest (algebraic) eigenvalues by Lanczos with full
  reorthogonalisation, with a residual bound for each.
- ``power_iteration_top_eigenvalues``: the eigenvalues of largest magnitude, one at a time, by power
  iteration with deflation (what PyHessian computes; equal to the largest when ``H`` is positive
  semi-definite, e.g. near a minimum).
- ``hutchinson_trace``: ``tr(H) = E[z^T H z]`` over Rademacher ``z`` (Hutchinson 1989), the mean of
  the probes with a 95% Student-t interval from their standard error.

Every random draw comes from a ``torch.Generator`` the caller passes; global RNG state is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import linalg, stats

LossFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]
MatVec = Callable[[torch.Tensor], torch.Tensor]
HvpMode = Literal["forward-over-reverse", "reverse-over-reverse"]


def hessian_vector_product(
    loss_fn: LossFn,
    params: Mapping[str, torch.Tensor],
    vector: Mapping[str, torch.Tensor],
    mode: HvpMode = "forward-over-reverse",
) -> dict[str, torch.Tensor]:
    """``H v`` for the Hessian ``H`` of ``loss_fn`` at ``params``.

    Args:
        loss_fn: ``params -> scalar`` tensor, differentiable (``torch.func`` transforms it).
        params: the point, a dict of tensors (not modified).
        vector: ``v``, a dict with the same keys and shapes.
        mode: ``"forward-over-reverse"`` (default): ``jvp`` of ``grad``; ``"reverse-over-reverse"``:
            ``vjp`` of ``grad`` (slower, for operations that lack forward-mode derivatives). Both give
            ``H v`` (``H`` is symmetric) up to rounding.

    Returns:
        ``H v`` as a dict like ``params``.
    """
    params, vector = dict(params), dict(vector)
    if mode == "forward-over-reverse":
        _, product = torch.func.jvp(torch.func.grad(loss_fn), (params,), (vector,))
        return product
    if mode == "reverse-over-reverse":
        _, pullback = torch.func.vjp(torch.func.grad(loss_fn), params)
        (product,) = pullback(vector)
        return product
    raise ValueError(f"mode must be 'forward-over-reverse' or 'reverse-over-reverse', got {mode!r}")


class FlatParameters:
    """Maps a parameter dict to one flat vector and back (names in the dict's order)."""

    def __init__(self, params: Mapping[str, torch.Tensor]):
        self.names = list(params)
        self.shapes = [tuple(params[name].shape) for name in self.names]
        self.numels = [int(params[name].numel()) for name in self.names]
        self.size = sum(self.numels)

    def flatten(self, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.cat([tensors[name].reshape(-1).to(dtype) for name in self.names])

    def unflatten(self, vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Split ``vector`` into tensors with the shapes, dtypes and devices of ``like``."""
        pieces = torch.split(vector, self.numels)
        return {
            name: piece.reshape(shape).to(dtype=like[name].dtype, device=like[name].device)
            for name, shape, piece in zip(self.names, self.shapes, pieces)
        }


def flat_hessian_operator(
    loss_fns: LossFn | list[tuple[float, LossFn]],
    params: Mapping[str, torch.Tensor],
    mode: HvpMode = "forward-over-reverse",
) -> tuple[MatVec, FlatParameters]:
    """``v -> H v`` on flat float64 vectors, for one loss or a weighted sum of losses.

    Args:
        loss_fns: ``loss_fn``, or ``[(weight, loss_fn), ...]`` for ``H = sum weight * H_i`` (e.g. a
            mean over data evaluated in chunks, weights = chunk fractions).
        params: the point; products are computed in the parameters' own dtype and device.
        mode: see ``hessian_vector_product``.

    Returns:
        ``(matvec, flat)``: ``matvec`` takes and returns float64 vectors of length ``flat.size`` on
        the parameters' device.
    """
    terms = [(1.0, loss_fns)] if callable(loss_fns) else list(loss_fns)
    flat = FlatParameters(params)

    def matvec(vector: torch.Tensor) -> torch.Tensor:
        tangent = flat.unflatten(vector, params)
        total = None
        for weight, loss_fn in terms:
            product = flat.flatten(hessian_vector_product(loss_fn, params, tangent, mode)) * weight
            total = product if total is None else total + product
        assert total is not None
        return total

    return matvec, flat


@dataclass(frozen=True)
class EigenEstimate:
    """Estimated eigenvalues with a residual bound each.

    ``eigenvalues`` (descending for Lanczos, in the order found for power iteration) and
    ``residuals``: ``||H u - theta u||`` for the unit Ritz vector ``u`` of each ``theta``; ``H`` has an
    eigenvalue within that distance of ``theta`` (for symmetric ``H``). ``n_matvecs``: Hessian-vector
    products used.
    """

    eigenvalues: list[float]
    residuals: list[float]
    n_matvecs: int


def _random_unit(size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    vector = torch.randn(size, generator=generator, dtype=torch.float64).to(device)
    return vector / vector.norm()


def _orthogonalise(vector: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    # Classical Gram-Schmidt applied twice ("twice is enough", Giraud et al. 2005): orthogonal to
    # working precision even when the vector is nearly in the span.
    for _ in range(2):
        vector = vector - basis.T @ (basis @ vector)
    return vector


def lanczos_top_eigenvalues(
    matvec: MatVec, size: int, k: int, n_iter: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> EigenEstimate:
    """The ``k`` largest eigenvalues of a symmetric operator by Lanczos with full reorthogonalisation.

    Each step applies ``matvec`` once and orthogonalises the new vector against all previous ones
    (twice), so the basis stays orthonormal and no spurious copies of converged eigenvalues appear.
    When the new vector vanishes (an invariant subspace: e.g. repeated eigenvalues, which one Krylov
    sequence cannot see twice), the iteration restarts from a fresh random vector orthogonal to the
    basis, so multiplicities are found too. The eigenvalues of the tridiagonal matrix ``T`` (Ritz
    values) estimate those of ``H``; ``|beta_m * s_m|`` (last coefficient of the Ritz vector times the
    last off-diagonal) is each one's residual norm.

    Args:
        matvec: ``v -> H v`` on float64 vectors of length ``size``.
        size: dimension ``n``.
        k: how many eigenvalues (``1 <= k``).
        n_iter: Lanczos steps ``m`` (capped at ``size``; at least ``k``). Memory: ``m * size`` float64.
        generator: draws the start (and restart) vectors.
        device: where the vectors live (that of ``matvec``).

    Returns:
        ``EigenEstimate`` with ``min(k, m)`` eigenvalues, descending.
    """
    if k < 1 or n_iter < k:
        raise ValueError(f"need 1 <= k <= n_iter, got k={k}, n_iter={n_iter}")
    m = min(n_iter, size)
    device = torch.device(device)
    basis = torch.zeros(m, size, dtype=torch.float64, device=device)
    alphas, betas = [], []
    vector = _random_unit(size, generator, device)
    scale = 0.0
    residual_beta = 0.0
    for j in range(m):
        basis[j] = vector
        w = matvec(vector)
        alpha = float(vector @ w)
        w = _orthogonalise(w, basis[: j + 1])
        beta = float(w.norm())
        alphas.append(alpha)
        scale = max(scale, abs(alpha), beta)
        if j == m - 1:
            residual_beta = beta
            break
        # A vanishing vector: the Krylov space is invariant; continue from a fresh direction, which
        # decouples T there (off-diagonal 0).
        if beta <= np.finfo(np.float64).eps ** 0.5 * max(scale, np.finfo(np.float64).tiny):
            fresh = _orthogonalise(_random_unit(size, generator, device), basis[: j + 1])
            betas.append(0.0)
            vector = fresh / fresh.norm()
        else:
            betas.append(beta)
            vector = w / beta
    theta, vectors = linalg.eigh_tridiagonal(np.array(alphas), np.array(betas))
    order = np.argsort(theta)[::-1][:k]
    residuals = np.abs(residual_beta * vectors[-1, order])
    return EigenEstimate([float(t) for t in theta[order]], [float(r) for r in residuals], n_matvecs=len(alphas))


def power_iteration_top_eigenvalues(
    matvec: MatVec,
    size: int,
    k: int,
    n_iter: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    rtol: float = 1e-6,
) -> EigenEstimate:
    """The ``k`` eigenvalues of largest magnitude, one at a time, by power iteration with deflation.

    For the ``i``-th, iterate ``v <- P H P v / ||P H P v||`` with ``P`` the projector orthogonal to the
    eigenvectors already found, until the Rayleigh quotient changes by less than ``rtol`` relative
    or ``n_iter`` products are spent. Converges at rate ``|lambda_{i+1} / lambda_i|`` per step: slow
    for close eigenvalues, where Lanczos is the better choice.

    Args:
        matvec: ``v -> H v`` on float64 vectors of length ``size``.
        size: dimension ``n``.
        k: how many eigenvalues (``1 <= k <= size``).
        n_iter: most products per eigenvalue.
        generator: draws the start vectors.
        device: where the vectors live.
        rtol: convergence threshold on the Rayleigh quotient (default ``1e-6``).

    Returns:
        ``EigenEstimate`` in the order found (decreasing magnitude), residuals from the last step.
    """
    if not 1 <= k <= size or n_iter < 1:
        raise ValueError(f"need 1 <= k <= size and n_iter >= 1, got k={k}, size={size}, n_iter={n_iter}")
    device = torch.device(device)
    found = torch.zeros(0, size, dtype=torch.float64, device=device)
    eigenvalues, residuals, n_matvecs = [], [], 0
    for _ in range(k):
        vector = _orthogonalise(_random_unit(size, generator, device), found)
        vector = vector / vector.norm()
        theta = None
        for _ in range(n_iter):
            w = _orthogonalise(matvec(vector), found)
            n_matvecs += 1
            new_theta = float(vector @ w)
            residual = float((w - new_theta * vector).norm())
            norm = float(w.norm())
            converged = theta is not None and abs(new_theta - theta) <= rtol * abs(new_theta)
            theta = new_theta
            if converged or norm == 0.0:
                break
            vector = w / norm
        eigenvalues.append(float(theta))
        residuals.append(residual)
        found = torch.cat([found, vector[None]])
    return EigenEstimate(eigenvalues, residuals, n_matvecs)


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate: ``mean`` of the ``n_probes`` values ``z^T H z``, its standard error
    ``se = sd / sqrt(n_probes)``, and ``ci95 = mean ± t(0.975, n_probes - 1) * se``."""

    mean: float
    se: float
    ci95: tuple[float, float]
    n_probes: int


def hutchinson_trace(
    matvec: MatVec,
    size: int,
    n_probes: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    block_size: int = 16,
    batched: bool = True,
) -> TraceEstimate:
    """``tr(H)`` from ``n_probes`` Rademacher vectors ``z`` (entries ±1): ``E[z^T H z] = tr(H)``.

    Rademacher probes have the smallest variance among the usual choices:
    ``Var(z^T H z) = 2 sum_{i != j} H_ij^2`` (no diagonal term). The interval treats the probe values as
    a normal sample (Student t with ``n_probes - 1`` degrees of freedom).

    Probes are drawn ``block_size`` at a time and, with ``batched``, applied as one
    ``torch.func.vmap(matvec)`` call per block (several times faster for small models, where each
    product is mostly overhead; memory grows with the block). If ``vmap`` fails for this operator the
    products are taken one at a time; the probes, and so the estimate up to rounding, stay the same.

    Args:
        matvec: ``v -> H v`` on float64 vectors of length ``size``.
        size: dimension ``n``.
        n_probes: number of probes (at least 2).
        generator: draws the probes.
        device: where the vectors live.
        block_size: probes drawn (and batched) together (default 16).
        batched: try ``vmap`` over each block (default ``True``).

    Returns:
        ``TraceEstimate``.
    """
    if n_probes < 2:
        raise ValueError(f"n_probes must be at least 2 for an interval, got {n_probes}")
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    values = np.empty(n_probes)
    for start in range(0, n_probes, block_size):
        count = min(block_size, n_probes - start)
        signs = torch.randint(0, 2, (count, size), generator=generator, dtype=torch.int64)
        probes = (signs.to(torch.float64) * 2.0 - 1.0).to(device)
        products = None
        if batched:
            try:
                products = torch.func.vmap(matvec)(probes)
            except (RuntimeError, NotImplementedError, ValueError):
                batched = False  # an operation without a batching rule: one product at a time
        if products is None:
            products = torch.stack([matvec(z) for z in probes])
        values[start : start + count] = (probes * products).sum(dim=1).cpu().numpy()
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(n_probes))
    half_width = float(stats.t.ppf(0.975, n_probes - 1)) * se
    return TraceEstimate(mean=mean, se=se, ci95=(mean - half_width, mean + half_width), n_probes=n_probes)
