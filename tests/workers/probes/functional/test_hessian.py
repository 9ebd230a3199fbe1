"""Hessian-vector products, Lanczos, power iteration and Hutchinson against known Hessians.

References: ``torch.autograd.functional.hessian`` (the full Hessian by double backward) for products
on a tiny MLP; ``numpy.linalg.eigvalsh`` and ``numpy.trace`` of an explicit matrix for the quadratic
loss ``0.5 w^T A w + b^T w`` (Hessian ``A``), with ``A = Q diag(lambda) Q^T`` for chosen eigenvalues.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call

from workers.probes.functional.hessian import (
    FlatParameters,
    flat_hessian_operator,
    hessian_vector_product,
    hutchinson_trace,
    lanczos_top_eigenvalues,
    power_iteration_top_eigenvalues,
)

# Tiny models: Hessian-vector products run on one torch thread (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def symmetric(eigenvalues, seed: int) -> np.ndarray:
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal ``Q``."""
    n = len(eigenvalues)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (q * np.asarray(eigenvalues, dtype=np.float64)) @ q.T


def quadratic_operator(a: np.ndarray, seed: int = 0):
    """``H v`` of ``0.5 w^T A w + b^T w`` through the code under test, at a random point with a split
    parameter dict (two tensors of different shapes, so flattening is exercised)."""
    n = a.shape[0]
    rng = np.random.default_rng(seed)
    a_t, b_t = torch.from_numpy(a), torch.from_numpy(rng.standard_normal(n))
    split = n // 3
    params = {"w1": torch.from_numpy(rng.standard_normal(split)), "w2": torch.from_numpy(rng.standard_normal((n - split, 1)))}

    def loss(p):
        w = torch.cat([p["w1"], p["w2"].reshape(-1)])
        return 0.5 * w @ a_t @ w + b_t @ w

    return flat_hessian_operator(loss, params)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


@pytest.mark.parametrize("mode", ["forward-over-reverse", "reverse-over-reverse"])
def test_hvp_matches_full_hessian_on_a_tiny_mlp(mode):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyMLP().double()
    x = torch.randn(7, 3, dtype=torch.float64, generator=generator(1))
    y = torch.randint(0, 2, (7,), generator=generator(2))
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    flat = FlatParameters(params)

    def loss(p):
        return nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    full = torch.autograd.functional.hessian(lambda v: loss(flat.unflatten(v, params)), flat.flatten(params))
    assert full.shape == (flat.size, flat.size) == (32, 32)
    for seed in range(3):
        v = torch.randn(flat.size, dtype=torch.float64, generator=generator(seed))
        product = hessian_vector_product(loss, params, flat.unflatten(v, params), mode)
        assert list(product) == flat.names
        np.testing.assert_allclose(flat.flatten(product).numpy(), (full @ v).numpy(), rtol=1e-10, atol=1e-12)
    matvec, _ = flat_hessian_operator([(0.25, loss), (0.75, loss)], params, mode)
    np.testing.assert_allclose(matvec(v).numpy(), (full @ v).numpy(), rtol=1e-10, atol=1e-12)


def test_hvp_leaves_params_untouched_and_rejects_unknown_mode():
    params = {"w": torch.tensor([1.0, 2.0], dtype=torch.float64)}
    before = params["w"].clone()
    product = hessian_vector_product(lambda p: (p["w"] ** 3).sum(), params, {"w": torch.ones(2, dtype=torch.float64)})
    np.testing.assert_allclose(product["w"].numpy(), [6.0, 12.0])  # H = diag(6 w)
    assert torch.equal(params["w"], before) and params["w"].grad is None
    with pytest.raises(ValueError, match="mode"):
        hessian_vector_product(lambda p: p["w"].sum(), params, params, mode="finite-differences")


def test_flat_parameters_round_trip_keeps_dtype_and_shape():
    params = {"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.float64)}
    flat = FlatParameters(params)
    vector = torch.arange(10, dtype=torch.float64)
    back = flat.unflatten(vector, params)
    assert back["a"].shape == (2, 3) and back["a"].dtype == torch.float32 and back["b"].dtype == torch.float64
    assert torch.equal(flat.flatten(back), vector)


def test_lanczos_finds_the_top_eigenvalues_of_a_known_quadratic():
    # Indefinite spectrum: the largest algebraic eigenvalues are wanted, not the largest magnitudes.
    lam = np.concatenate([[9.0, 7.5, 6.0, 5.0, 4.2], np.linspace(-20.0, 3.0, 55)])
    a = symmetric(lam, seed=1)
    matvec, flat = quadratic_operator(a)
    estimate = lanczos_top_eigenvalues(matvec, flat.size, k=5, n_iter=40, generator=generator(0))
    expected = np.sort(np.linalg.eigvalsh(a))[::-1][:5]
    np.testing.assert_allclose(estimate.eigenvalues, expected, rtol=1e-8)
    assert estimate.n_matvecs == 40
    # The residual bounds are honest: each estimate lies within its residual of a true eigenvalue.
    for theta, residual in zip(estimate.eigenvalues, estimate.residuals):
        assert np.min(np.abs(lam - theta)) <= residual + 1e-12


def test_lanczos_sees_repeated_eigenvalues_and_stops_at_the_dimension():
    # A single Krylov sequence sees each distinct eigenvalue once; restarts must recover the copies.
    lam = [4.0, 4.0, 4.0, 2.0, 1.0, 1.0, 0.5, -1.0]
    a = symmetric(lam, seed=2)
    matvec, flat = quadratic_operator(a)
    estimate = lanczos_top_eigenvalues(matvec, flat.size, k=6, n_iter=30, generator=generator(1))
    np.testing.assert_allclose(estimate.eigenvalues, [4.0, 4.0, 4.0, 2.0, 1.0, 1.0], atol=1e-10)
    assert estimate.n_matvecs == 8  # capped at the dimension


def test_power_iteration_finds_the_largest_magnitudes_by_deflation():
    # The iteration only sees products: an explicit matrix keeps its hundreds of them fast.
    lam = np.concatenate([[-12.0, 10.0, 6.0], np.linspace(-2.0, 2.0, 30)])
    a = torch.from_numpy(symmetric(lam, seed=3))
    estimate = power_iteration_top_eigenvalues(lambda v: a @ v, 33, k=3, n_iter=500, generator=generator(0), rtol=1e-12)
    np.testing.assert_allclose(estimate.eigenvalues, [-12.0, 10.0, 6.0], rtol=1e-6)
    assert all(r < 1e-3 for r in estimate.residuals)
    assert estimate.n_matvecs < 3 * 500  # converged before the budget


def test_lanczos_and_power_iteration_agree_on_a_positive_definite_hessian():
    lam = np.concatenate([[50.0, 30.0, 20.0], np.geomspace(1e-3, 5.0, 40)])
    matvec, flat = quadratic_operator(symmetric(lam, seed=4))
    lanczos = lanczos_top_eigenvalues(matvec, flat.size, 3, 30, generator(0))
    power = power_iteration_top_eigenvalues(matvec, flat.size, 3, 60, generator(0), rtol=1e-10)
    np.testing.assert_allclose(lanczos.eigenvalues, [50.0, 30.0, 20.0], rtol=1e-9)
    np.testing.assert_allclose(power.eigenvalues, [50.0, 30.0, 20.0], rtol=1e-5)


def test_hutchinson_interval_contains_the_trace_and_its_error_matches_theory():
    lam = np.linspace(-1.0, 4.0, 40)
    a = symmetric(lam, seed=5)
    matvec, flat = quadratic_operator(a)
    estimate = hutchinson_trace(matvec, flat.size, n_probes=64, generator=generator(0))
    assert estimate.ci95[0] <= np.trace(a) <= estimate.ci95[1]
    assert estimate.n_probes == 64
    # Var(z^T A z) = 2 sum_{i != j} A_ij^2 for Rademacher z; the estimated standard error is a
    # sample sd over 64 probes (relative sd about 1 / sqrt(2 * 63) = 9%): within 30%.
    theory_se = np.sqrt(2.0 * (np.sum(a**2) - np.sum(np.diag(a) ** 2)) / 64)
    assert estimate.se == pytest.approx(theory_se, rel=0.3)
    half_width = stats.t.ppf(0.975, 63) * estimate.se
    assert estimate.ci95 == pytest.approx((estimate.mean - half_width, estimate.mean + half_width))


def test_hutchinson_interval_covers_the_trace_about_95_percent_of_the_time():
    # The estimator and its interval only see products: an explicit matrix keeps 4800 of them fast.
    a = torch.from_numpy(symmetric(np.linspace(0.0, 3.0, 12), seed=6))
    covered = [
        lo <= float(torch.trace(a)) <= hi
        for lo, hi in (hutchinson_trace(lambda v: a @ v, 12, 16, generator(seed)).ci95 for seed in range(300))
    ]
    # Binomial(300, 0.95): mean 285, sd 3.8; the t interval over non-normal values is approximate.
    assert 270 <= sum(covered) <= 297


def test_exact_on_a_diagonal_hessian_and_deterministic_per_generator():
    # z^T D z = tr(D) for every Rademacher z: zero variance.
    matvec, flat = quadratic_operator(np.diag(np.arange(1.0, 11.0)))
    estimate = hutchinson_trace(matvec, flat.size, 8, generator(3))
    assert estimate.mean == pytest.approx(55.0) and estimate.se == pytest.approx(0.0, abs=1e-12)
    again = hutchinson_trace(matvec, flat.size, 8, generator(3))
    assert again == estimate
    first = lanczos_top_eigenvalues(matvec, flat.size, 2, 6, generator(7))
    assert lanczos_top_eigenvalues(matvec, flat.size, 2, 6, generator(7)) == first


def test_batched_probes_equal_one_at_a_time_and_fall_back_when_vmap_fails():
    a = symmetric(np.linspace(-1.0, 2.0, 20), seed=7)
    matvec, flat = quadratic_operator(a)
    batched = hutchinson_trace(matvec, flat.size, 20, generator(1), block_size=8)
    looped = hutchinson_trace(matvec, flat.size, 20, generator(1), block_size=8, batched=False)
    assert batched.mean == pytest.approx(looped.mean, rel=1e-12) and batched.se == pytest.approx(looped.se, rel=1e-12)
    # Leaving torch for NumPy cannot be vmapped: the products are then taken one at a time.
    numpy_matvec = lambda v: torch.from_numpy(a @ v.numpy())  # noqa: E731
    fallback = hutchinson_trace(numpy_matvec, flat.size, 20, generator(1), block_size=8)
    assert fallback.mean == pytest.approx(looped.mean, rel=1e-12)


def test_rejects_bad_arguments():
    matvec, flat = quadratic_operator(np.eye(4))
    with pytest.raises(ValueError, match="k"):
        lanczos_top_eigenvalues(matvec, flat.size, k=5, n_iter=3, generator=generator(0))
    with pytest.raises(ValueError, match="k"):
        power_iteration_top_eigenvalues(matvec, flat.size, k=5, n_iter=3, generator=generator(0))
    with pytest.raises(ValueError, match="n_probes"):
        hutchinson_trace(matvec, flat.size, n_probes=1, generator=generator(0))
