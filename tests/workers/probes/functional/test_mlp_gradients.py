"""Hand-derived ensemble MLP gradients against autograd on the same members and minibatches."""

from __future__ import annotations

import pytest
import torch

from models.specs import parse_arch
from workers.data.builtin import load_builtin
from workers.probes.functional.ensemble import build_members, ensemble_forward_each, hypothesis_seed
from workers.probes.functional.mlp_gradients import has_hand_gradients, mlp_gradients
from workers.training import member_training_losses


def _arch(**extra):
    return parse_arch({"name": "mlp", "in_dim": 4, "hidden": [7, 5], "out_dim": 3, **extra})


@pytest.fixture(scope="module")
def clusters():
    return load_builtin("gaussian_clusters", {"n_train": 40, "n_test": 10, "in_dim": 4, "n_classes": 3}, 0)


@pytest.fixture(scope="module")
def teacher():
    return load_builtin("teacher", {"n_train": 40, "n_test": 10, "in_dim": 4, "out_dim": 3, "teacher_hidden": [4]}, 0)


@pytest.mark.parametrize(
    "activation, bias, loss, data",
    [
        ("relu", True, "mse", "clusters"),
        ("relu", True, "cross_entropy", "clusters"),
        ("relu", False, "zero_one", "clusters"),
        ("tanh", True, "mse", "teacher"),
        ("tanh", True, "cross_entropy", "clusters"),
    ],
)
def test_hand_gradients_equal_autograd(activation, bias, loss, data, request):
    dataset = request.getfixturevalue(data)
    arch = _arch(activation=activation, bias=bias)
    ensemble = build_members(arch, [hypothesis_seed(0, i) for i in range(5)])
    assert has_hand_gradients(ensemble.base)
    generator = torch.Generator().manual_seed(0)
    idx = torch.randint(0, dataset.X_train.shape[0], (5, 9), generator=generator)
    X_each, y_each = dataset.X_train[idx], dataset.y_train[idx]

    grads = {k: torch.full_like(v, float("nan")) for k, v in ensemble.params.items()}  # every entry overwritten
    mlp_gradients(ensemble.base, {k: v.detach() for k, v in ensemble.params.items()}, grads, X_each, y_each,
                  loss, dataset.task_type)
    outputs = ensemble_forward_each(ensemble, X_each)
    member_training_losses(loss, outputs, y_each, dataset).sum().backward()
    for key, value in ensemble.params.items():
        # The same sums in another order: float32 rounding, relative 1e-5 of the gradient's scale.
        torch.testing.assert_close(grads[key], value.grad, rtol=1e-5, atol=1e-5 * float(value.grad.abs().max()))


@pytest.mark.parametrize("extra", [{"layernorm": True}, {"residual": True, "hidden": [5, 5]}, {"activation": "gelu"}])
def test_other_mlps_are_left_to_autograd(extra):
    ensemble = build_members(_arch(**extra), [0])
    assert not has_hand_gradients(ensemble.base)
