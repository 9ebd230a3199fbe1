"""The maths of the invariance probe (docs/methods.md §2), as pure functions.

Sample-based errors (Gruver et al., ICLR 2023, and the baselines that paper compares with), on
per-sample terms computed by the probe:

- ``invariance_ratio = E||f(gx) - f(x)||^2 / E||f(x) - f(x')||^2`` with ``x'`` an independent input
  (here: the input paired with ``x`` by a random derangement); 0 = invariant, about 1 = "as
  different as an unrelated input". The equivariance ratio is the same with ``g f(x)`` in place of
  ``f(x)`` in the numerator.
- ``consistency``: the fraction of inputs whose argmax class is unchanged.
- ``lie_derivative``: ``E_x ||d/dt f(g_t x)|_{t=0}||^2 / Var f(x)`` (total output variance,
  ``E||f(x) - E f(x)||^2``), averaged over the transform's generators; in ``1 / t_unit^2``.

Every estimate comes with a percentile bootstrap ``ci95`` over inputs: inputs are resampled with
replacement (as multinomial counts, so a statistic is a weighted mean), the statistic is recomputed
on each resample, and the 2.5th and 97.5th percentiles of the defined values form the interval.

The Lie derivative is forward-mode: ``torch.func.jvp`` vmapped over the generators' tangents;
``StackedEnsemble`` evaluates S random members as one function (vmap over stacked parameters).
``lie_derivative_double_backward`` computes the same Jacobian-vector products with reverse mode
twice (the classic trick), for the benchmark and as an independent reference in tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

# Shared with the other probes' "init" blocks; re-exported for the invariance probe's callers.
from workers.probes.functional.member_spread import MIN_MEMBERS_FOR_PERCENTILE, Spread, member_spread  # noqa: F401

@dataclass(frozen=True)
class Estimate:
    """A statistic over inputs: ``value`` (``None`` if undefined, e.g. constant outputs) and its
    bootstrap ``ci95`` (``None`` if the value is undefined or no resample was defined)."""

    value: float | None
    ci95: tuple[float, float] | None


def squared_norms(difference: torch.Tensor, sample_dims: int) -> np.ndarray:
    """``||difference||^2`` per sample in float64, summing every axis after the first ``sample_dims``."""
    flat = difference.detach().to(torch.float64).flatten(start_dim=sample_dims)
    return (flat * flat).sum(dim=-1).cpu().numpy()


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation ``sigma`` of ``range(n)`` with no fixed point (``n >= 2``): the partner
    ``x' = x[sigma[i]]`` of input ``i`` is always another input."""
    if n < 2:
        raise ValueError("a derangement needs n >= 2")
    order = rng.permutation(n)
    sigma = np.empty(n, dtype=np.int64)
    sigma[order] = np.roll(order, -1)  # each input's partner is the next one in a random cycle
    return sigma


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` multinomial counts: how often each input appears in each resample."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _percentile_interval(values: np.ndarray) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def ratio_of_means(numerator: np.ndarray, denominator: np.ndarray) -> float | None:
    """``mean(numerator) / mean(denominator)``; ``None`` when the denominator's mean is 0."""
    den = float(np.mean(denominator))
    return float(np.mean(numerator)) / den if den > 0 else None


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray, counts: np.ndarray | None) -> Estimate:
    """``ratio_of_means`` of per-input terms with its bootstrap interval (``counts`` from
    ``bootstrap_counts``; ``None`` for no interval). Used for invariance and equivariance ratios."""
    value = ratio_of_means(numerator, denominator)
    if value is None or counts is None:
        return Estimate(value, None)
    return Estimate(value, _percentile_interval(_safe_ratio(counts @ numerator, counts @ denominator)))


def mean_estimate(values: np.ndarray, counts: np.ndarray | None) -> Estimate:
    """The mean of per-input values (e.g. consistency) with its bootstrap interval."""
    value = float(np.mean(values))
    if counts is None:
        return Estimate(value, None)
    return Estimate(value, _percentile_interval(counts @ values / values.size))


def argmax_agreement(outputs: torch.Tensor, expected: torch.Tensor, sample_dims: int) -> np.ndarray:
    """Per sample, the fraction of output positions whose argmax over the last axis agrees.

    Pooled classifier outputs ``(..., N, classes)`` give 0 or 1 per input; per-position outputs
    ``(..., N, L, classes)`` give the share of positions that agree.
    """
    agree = (outputs.argmax(dim=-1) == expected.argmax(dim=-1)).to(torch.float64)
    return agree.reshape(*agree.shape[:sample_dims], -1).mean(dim=-1).cpu().numpy()


def total_variance(outputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``E||f - E f||^2`` of per-input outputs ``(N, D)``; with ``weights`` ``(B, N)`` one value per row.

    Centred on the plain mean first (the variance does not change), which keeps the float64
    difference of second moments accurate when outputs share a large offset.
    """
    centred = outputs - outputs.mean(axis=0)
    if weights is None:
        return np.asarray(np.mean(np.sum(centred * centred, axis=1)))
    total = weights.sum(axis=1)
    second = weights @ np.sum(centred * centred, axis=1) / total
    first = weights @ centred / total[:, None]
    return second - np.sum(first * first, axis=1)


def lie_estimate(
    squared: np.ndarray, outputs: np.ndarray, counts: np.ndarray | None
) -> tuple[Estimate, list[float | None]]:
    """Normalised Lie derivative from ``squared[k, i] = ||d/dt_k f(g_t x_i)||^2`` and outputs ``(N, D)``.

    Returns the estimate of ``mean_{k,i} squared / Var f`` with its bootstrap interval, and the
    per-generator values ``mean_i squared[k] / Var f``.
    """
    variance = float(total_variance(outputs))
    per_generator = [float(np.mean(row)) / variance if variance > 0 else None for row in squared]
    per_input = squared.mean(axis=0)
    if variance <= 0:
        return Estimate(None, None), per_generator
    value = float(np.mean(per_input)) / variance
    if counts is None:
        return Estimate(value, None), per_generator
    resampled = _safe_ratio(counts @ per_input / per_input.size, total_variance(outputs, counts))
    return Estimate(value, _percentile_interval(resampled)), per_generator


def lie_derivative(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
    """Jacobian-vector products ``J_f(x) v_k`` for every tangent, forward mode.

    Args:
        fn: a function of a batch of inputs (an ensemble may add leading axes to its output).
        x: the inputs ``(N, ...)``.
        tangents: ``(K, N, ...)``, one input direction per generator (``Transform.tangents``).

    Returns:
        ``(K, *fn(x).shape)``: ``d/dt fn(x + t v_k)`` at ``t = 0``. One ``torch.func.jvp`` (primal and
        tangent in a single forward pass) vmapped over the K generators.
    """
    return torch.func.vmap(lambda v: torch.func.jvp(fn, (x,), (v,))[1])(tangents)


def lie_derivative_double_backward(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tangents: torch.Tensor
) -> torch.Tensor:
    """The same products as ``lie_derivative`` by the double-backward trick (reverse mode twice).

    ``g(u) = J^T u`` is built with ``create_graph=True`` from a dummy cotangent ``u``; ``g`` is linear
    in ``u``, so the gradient of ``<g(u), v>`` with respect to ``u`` is ``J v``. The second backward
    is batched over the K tangents (``is_grads_batched``). Needs a graph through ``fn``: slower and
    heavier than forward mode, kept as the benchmark's baseline and as a test reference.
    """
    with torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        outputs = fn(inputs)
        cotangent = torch.zeros_like(outputs, requires_grad=True)
        (vjp,) = torch.autograd.grad(outputs, inputs, cotangent, create_graph=True)
        (products,) = torch.autograd.grad(vjp, cotangent, tangents, is_grads_batched=True)
    return products.detach()


class StackedEnsemble:
    """S same-architecture modules evaluated as one function with ``torch.func`` (vmap over members).

    Parameters and buffers are copied (``torch.func.stack_module_state``, detached); a copy of the
    first module on the meta device, in eval mode and without forward hooks, supplies the code. The
    modules themselves are never called or changed.
    """

    def __init__(self, modules: Sequence[torch.nn.Module]):
        params, buffers = torch.func.stack_module_state(list(modules))
        self.params = {k: v.detach() for k, v in params.items()}
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        self.base = copy.deepcopy(modules[0]).to("meta").eval()
        for module in self.base.modules():
            module._forward_hooks.clear()
            module._forward_pre_hooks.clear()

    def _member(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.base, (params, buffers), (x,))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(S, N, *out)`` for inputs ``(N, ...)``."""
        return torch.func.vmap(self._member, in_dims=(0, 0, None))(self.params, self.buffers, x)

    def lie_derivative(self, x: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
        """``J_s(x) v_k`` as ``(K, S, N, *out)``: ``functional.invariance.lie_derivative`` per member.

        The member vmap is outermost (each member's forward-mode pass vmapped over the K tangents
        inside it): measured faster than vmapping the generators around the whole ensemble.
        """

        def one(params: dict, buffers: dict) -> torch.Tensor:
            return lie_derivative(lambda inputs: self._member(params, buffers, inputs), x, tangents)

        return torch.func.vmap(one, in_dims=(0, 0), out_dims=1)(self.params, self.buffers)


def linear_permutation_ratio(weight: np.ndarray, permutation: Sequence[int]) -> float:
    """Closed form of ``invariance_ratio`` for ``f(x) = W x``, ``x ~ N(0, I)``, ``(Px)_i = x_{perm[i]}``:
    ``||W (P - I)||_F^2 / (2 ||W||_F^2)`` (docs/methods.md §2)."""
    weight = np.asarray(weight, dtype=np.float64)
    perm = np.asarray(permutation)
    permuted = np.zeros_like(weight)
    permuted[:, perm] = weight  # W P: column perm[i] of W P is column i of W
    difference = permuted - weight
    return float(np.sum(difference**2) / (2.0 * np.sum(weight**2)))


