import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from workers.probes.functional import invariance as F


def rng(seed=0):
    return np.random.default_rng(seed)


def test_derangement_is_a_permutation_without_fixed_points():
    for n in (2, 3, 10, 257):
        sigma = F.derangement(n, rng(n))
        assert sorted(sigma.tolist()) == list(range(n))
        assert not np.any(sigma == np.arange(n))
    with pytest.raises(ValueError):
        F.derangement(1, rng())


def test_bootstrap_counts_are_resamples_of_all_inputs():
    counts = F.bootstrap_counts(7, 300, rng())
    assert counts.shape == (300, 7) and np.all(counts.sum(axis=1) == 7)
    assert counts.mean() == pytest.approx(1.0, abs=0.05)


def test_ratio_estimate_matches_an_explicit_bootstrap_loop():
    r = rng(1)
    numerator, denominator = r.exponential(size=50), r.exponential(2.0, size=50)
    counts = F.bootstrap_counts(50, 400, rng(2))
    estimate = F.ratio_estimate(numerator, denominator, counts)
    assert estimate.value == pytest.approx(numerator.mean() / denominator.mean())
    resampled = []
    for row in counts:
        index = np.repeat(np.arange(50), row.astype(int))
        resampled.append(numerator[index].mean() / denominator[index].mean())
    assert estimate.ci95 == pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))
    assert estimate.ci95[0] < estimate.value < estimate.ci95[1]
    assert F.ratio_estimate(numerator, denominator, None).ci95 is None
    assert F.ratio_estimate(numerator, np.zeros(50), counts) == F.Estimate(None, None)


def test_mean_estimate_and_argmax_agreement():
    outputs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]]])  # (members=1, N=3, classes=2)
    changed = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [3.0, 1.0]]])
    agree = F.argmax_agreement(changed, outputs, 2)
    np.testing.assert_array_equal(agree, [[0.0, 1.0, 1.0]])
    per_position = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # (1, N=1, L=2, classes=2)
    np.testing.assert_array_equal(F.argmax_agreement(per_position.flip(-1), per_position, 2), [[0.0]])
    np.testing.assert_array_equal(F.argmax_agreement(per_position[..., [1, 1], :], per_position, 2), [[0.5]])
    counts = F.bootstrap_counts(3, 200, rng())
    estimate = F.mean_estimate(agree[0], counts)
    assert estimate.value == pytest.approx(2 / 3)
    assert estimate.ci95 == pytest.approx(tuple(np.percentile(counts @ agree[0] / 3, [2.5, 97.5])))


def test_total_variance_matches_numpy_also_per_resample():
    outputs = rng(3).normal(5.0, 2.0, size=(40, 3))
    assert float(F.total_variance(outputs)) == pytest.approx(outputs.var(axis=0).sum())
    counts = F.bootstrap_counts(40, 5, rng(4))
    for row, value in zip(counts, F.total_variance(outputs, counts)):
        resampled = np.repeat(outputs, row.astype(int), axis=0)
        assert value == pytest.approx(resampled.var(axis=0).sum())


def test_lie_estimate_normalises_by_the_output_variance():
    r = rng(5)
    squared, outputs = r.exponential(size=(2, 30)), r.normal(size=(30, 4))
    counts = F.bootstrap_counts(30, 300, rng(6))
    estimate, per_generator = F.lie_estimate(squared, outputs, counts)
    variance = outputs.var(axis=0).sum()
    assert estimate.value == pytest.approx(squared.mean() / variance)
    assert per_generator == pytest.approx([squared[0].mean() / variance, squared[1].mean() / variance])
    resampled = []
    for row in counts:
        index = np.repeat(np.arange(30), row.astype(int))
        resampled.append(squared[:, index].mean() / outputs[index].var(axis=0).sum())
    assert estimate.ci95 == pytest.approx(tuple(np.percentile(resampled, [2.5, 97.5])))
    constant, _ = F.lie_estimate(squared, np.ones((30, 4)), counts)
    assert constant.value is None


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def test_forward_mode_matches_double_backward_autograd_and_central_differences():
    net = small_net()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    tangents = torch.randn(2, 6, 5, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        forward = F.lie_derivative(net, x, tangents)
    assert forward.shape == (2, 6, 3) and not forward.requires_grad
    torch.testing.assert_close(F.lie_derivative_double_backward(net, x, tangents), forward)
    for k in range(2):
        _, reference = torch.autograd.functional.jvp(net, x, tangents[k])
        torch.testing.assert_close(forward[k], reference)
        h = 1e-6
        with torch.no_grad():
            central = (net(x + h * tangents[k]) - net(x - h * tangents[k])) / (2 * h)
        torch.testing.assert_close(forward[k], central, atol=1e-8, rtol=1e-6)


def test_lie_derivative_supports_functions_with_leading_ensemble_axes():
    nets = [small_net(), small_net()]
    with torch.no_grad():
        nets[1][0].weight.mul_(2)
    ensemble = lambda x: torch.stack([net(x) for net in nets])  # (2, N, 3)
    x = torch.randn(4, 5, dtype=torch.float64)
    tangents = torch.randn(3, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        out = F.lie_derivative(ensemble, x, tangents)
    assert out.shape == (3, 2, 4, 3)
    torch.testing.assert_close(out[:, 1], F.lie_derivative(nets[1], x, tangents).detach())
    torch.testing.assert_close(F.lie_derivative_double_backward(ensemble, x, tangents), out)


def test_squared_norms_sum_every_axis_after_the_sample_axes():
    difference = torch.arange(24.0).reshape(2, 3, 2, 2)
    expected = (difference.numpy() ** 2).reshape(2, 3, 4).sum(-1)
    np.testing.assert_array_equal(F.squared_norms(difference, 2), expected)


def test_linear_permutation_closed_form_matches_explicit_matrices_and_sampling():
    r = rng(7)
    weight = r.normal(size=(3, 6))
    perm = r.permutation(6)
    P = np.eye(6)[perm]  # (P x)_i = x_{perm[i]}
    x = r.normal(size=6)
    np.testing.assert_allclose(P @ x, x[perm])
    closed = F.linear_permutation_ratio(weight, perm)
    assert closed == pytest.approx(np.sum((weight @ (P - np.eye(6))) ** 2) / (2 * np.sum(weight**2)))
    assert F.linear_permutation_ratio(weight, np.arange(6)) == 0.0
    # Monte Carlo: E||W(Px - x)||^2 / E||W(x - x')||^2 over Gaussian inputs.
    X, X2 = r.normal(size=(200_000, 6)), r.normal(size=(200_000, 6))
    numerator = np.sum((X[:, perm] @ weight.T - X @ weight.T) ** 2, axis=1).mean()
    denominator = np.sum((X @ weight.T - X2 @ weight.T) ** 2, axis=1).mean()
    assert numerator / denominator == pytest.approx(closed, rel=0.02)


def test_member_spread_uses_t_prediction_then_percentiles():
    values = [1.0, 2.0, None, 4.0]
    spread = F.member_spread(values)
    defined = np.array([1.0, 2.0, 4.0])
    half = stats.t.ppf(0.975, 2) * defined.std(ddof=1) * np.sqrt(1 + 1 / 3)
    mean = defined.mean()
    assert (spread.mean, spread.low, spread.high) == pytest.approx((mean, mean - half, mean + half))
    assert spread.interval == "t_prediction" and spread.n == 3 and spread.values == tuple(values)
    many = list(np.linspace(0, 1, 25))
    spread = F.member_spread(many)
    assert spread.interval == "percentile"
    assert (spread.low, spread.high) == pytest.approx(tuple(np.percentile(many, [2.5, 97.5])))
    assert F.member_spread([3.0]).interval == "none" and F.member_spread([3.0]).low is None
    skewed = F.member_spread([0.01, 0.02, 1.0], bounds=(0.0, None))
    assert skewed.low == 0.0 and skewed.high == pytest.approx(F.member_spread([0.01, 0.02, 1.0]).high)
    logged = F.member_spread([0.01, 0.02, 1.0], log_scale=True)
    logs = np.log([0.01, 0.02, 1.0])
    half = stats.t.ppf(0.975, 2) * logs.std(ddof=1) * np.sqrt(1 + 1 / 3)
    assert logged.interval == "t_prediction_log" and logged.mean == pytest.approx(1.03 / 3)
    assert (logged.low, logged.high) == pytest.approx((np.exp(logs.mean() - half), np.exp(logs.mean() + half)))
    assert F.member_spread([0.0, 0.02, 1.0], log_scale=True).interval == "t_prediction"  # a zero: no logarithm
    assert F.member_spread([0.5, 0.9, 1.0], bounds=(0.0, 1.0)).high == 1.0
    assert F.member_spread([]).mean is None
