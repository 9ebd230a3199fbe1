"""Per-hypothesis test losses against a plain per-member numpy loop and hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

# Imported as a module: a bare ``test_losses`` name would be collected by pytest as a test.
from workers.probes.functional import hypothesis_loss
from models.errors import InputError


def _numpy_loss(outputs: np.ndarray, targets: np.ndarray, loss: str, task_type: str) -> np.ndarray:
    """One member at a time, float64, no shared code with the implementation."""
    result = []
    for out in outputs.astype(np.float64):
        if task_type == "regression":
            result.append(np.mean((out - targets.reshape(out.shape)) ** 2))
        elif loss == "mse":
            one_hot = np.eye(out.shape[1])[targets]
            result.append(np.mean((out - one_hot) ** 2))
        elif loss == "cross_entropy":
            result.append(np.mean(logsumexp(out, axis=1) - out[np.arange(len(targets)), targets]))
        else:
            result.append(np.mean(np.argmax(out, axis=1) != targets))
    return np.array(result)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "zero_one"])
def test_classification_losses_match_numpy_loop(loss):
    rng = np.random.default_rng(0)
    outputs = rng.normal(0, 2, (5, 37, 4)).astype(np.float32)
    targets = rng.integers(0, 4, 37)
    got = hypothesis_loss.test_losses(torch.from_numpy(outputs), torch.from_numpy(targets), loss, "classification")
    assert got.dtype == torch.float64 and got.shape == (5,)
    np.testing.assert_allclose(got.numpy(), _numpy_loss(outputs, targets, loss, "classification"), rtol=1e-12)


@pytest.mark.parametrize("out_dim", [1, 3])
def test_regression_mse_matches_numpy_loop(out_dim):
    rng = np.random.default_rng(1)
    outputs = rng.normal(size=(3, 29, out_dim)).astype(np.float32)
    targets = rng.normal(size=(29, out_dim)).astype(np.float32)
    got = hypothesis_loss.test_losses(torch.from_numpy(outputs), torch.from_numpy(targets), "mse", "regression")
    np.testing.assert_allclose(got.numpy(), _numpy_loss(outputs, targets, "mse", "regression"), rtol=1e-12)
    # A 1-D target vector against (S, N, 1) outputs is the same loss.
    if out_dim == 1:
        flat = hypothesis_loss.test_losses(torch.from_numpy(outputs), torch.from_numpy(targets[:, 0]), "mse", "regression")
        assert torch.equal(flat, got)


def test_exact_mean_over_all_points_known_answer():
    # 3 points, 2 classes, all-zero outputs: each point has squared error 1 on its true class and
    # 0 elsewhere, so mse = 3 / (3 * 2) = 0.5; a batch-size denominator would give something else.
    outputs = torch.zeros(1, 3, 2)
    targets = torch.tensor([0, 1, 1])
    assert hypothesis_loss.test_losses(outputs, targets, "mse", "classification").item() == 0.5
    # Uniform logits: cross-entropy is log 2 exactly per point.
    assert hypothesis_loss.test_losses(outputs, targets, "cross_entropy", "classification").item() == pytest.approx(
        np.log(2), abs=1e-15
    )
    # One of three points misclassified (argmax of tied zeros is class 0).
    assert hypothesis_loss.test_losses(outputs, targets, "zero_one", "classification").item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "zero_one"])
def test_non_finite_outputs_give_non_finite_loss_for_that_member_only(loss):
    outputs = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(2))
    outputs[1, 4, 2] = float("nan")
    outputs[2, 0, 0] = float("inf")
    got = hypothesis_loss.test_losses(outputs, torch.arange(10) % 4, loss, "classification")
    assert torch.isfinite(got[0])
    assert not torch.isfinite(got[1]) and not torch.isfinite(got[2])


@pytest.mark.parametrize("loss", ["cross_entropy", "zero_one"])
def test_regression_rejects_classification_losses(loss):
    with pytest.raises(InputError) as info:
        hypothesis_loss.test_losses(torch.zeros(1, 2, 1), torch.zeros(2, 1), loss, "regression")
    assert info.value.errors[0]["loc"] == ["task", "loss"]


def test_unknown_loss_and_mismatched_points_are_rejected():
    with pytest.raises(InputError):
        hypothesis_loss.test_losses(torch.zeros(1, 2, 2), torch.zeros(2, dtype=torch.int64), "hinge", "classification")
    with pytest.raises(ValueError, match="test points"):
        hypothesis_loss.test_losses(torch.zeros(1, 2, 2), torch.zeros(3, dtype=torch.int64), "mse", "classification")
