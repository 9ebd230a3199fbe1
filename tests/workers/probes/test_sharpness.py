"""``sharpness`` on models whose training-loss Hessian is known in closed form, and on a small MLP
against the full Hessian from ``torch.autograd.functional.hessian``.

Closed forms (``x~ = [x, 1]``, ``n`` samples): linear regression with MSE, ``H = 2/n X~^T X~``;
C-class one-hot MSE on a linear model, ``H = 2/(nC) I_C ⊗ X~^T X~`` (each eigenvalue C times);
softmax regression with cross-entropy, ``H = 1/n sum_i (diag(p_i) - p_i p_i^T) ⊗ x~_i x~_i^T``.
Eigenvalues and traces do not depend on how the parameters are ordered, so the references use their
own ordering.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.func import functional_call

from models.specs import MLPSpec
from workers.data.dataset import Dataset
from models.errors import InputError
from workers.probes.base import ProbeContext
from workers.probes.sharpness import Sharpness, loss_used, subsample_indices
from workers.runspec import TaskSpec

# Tiny models: Hessian-vector products run on one torch thread (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = MLPSpec(name="mlp", in_dim=4, hidden=[], out_dim=1)


def seeded(build, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def regression_data(n: int = 200, d: int = 4, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32) * np.arange(1, d + 1, dtype=np.float32))
    y = torch.from_numpy(rng.standard_normal((n, 1)).astype(np.float32))
    return Dataset("regression", x, y, x[:10], y[:10], "regression")


def classification_data(n: int = 150, d: int = 3, classes: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, classes, n))
    return Dataset("clusters", x, y, x[:10], y[:10], "classification", n_classes=classes)


def context(model: nn.Module, dataset: Dataset | None, loss: str = "mse", seed: int = 0, task: bool = True) -> ProbeContext:
    spec = TaskSpec.model_validate({"dataset": {"builtin": "teacher"}, "loss": loss, "target_error": 0.1}) if task else None
    return ProbeContext(
        arch=ARCH, model=model, has_uploaded_weights=True, make_member=lambda s: model, seed=seed,
        device=torch.device("cpu"), dataset=dataset, task=spec,
    )  # fmt: skip


def run(model, dataset, loss="mse", seed=0, **params):
    return Sharpness(Sharpness.Params(**params)).run(context(model, dataset, loss, seed))


def augmented(x: torch.Tensor) -> np.ndarray:
    x = x.double().numpy()
    return np.hstack([x, np.ones((x.shape[0], 1))])


def assert_matches(result, hessian: np.ndarray, k: int) -> None:
    expected = np.sort(np.linalg.eigvalsh(hessian))[::-1][:k]
    np.testing.assert_allclose(result.top_eigenvalues, expected, rtol=1e-8, atol=1e-10)
    assert result.trace.ci95[0] <= np.trace(hessian) <= result.trace.ci95[1]


def test_linear_regression_mse_hessian_is_two_x_transpose_x_over_n():
    data = regression_data()
    model = seeded(lambda: nn.Linear(4, 1), 0)
    result = run(model, data, top_k=5, n_lanczos_iter=5)
    xt = augmented(data.X_train)
    hessian = 2.0 * xt.T @ xt / xt.shape[0]
    assert_matches(result, hessian, 5)
    assert result.n_parameters == 5 and result.n_samples == result.n_train == 200
    assert result.loss.name == "mse" and result.loss.note is None and result.dtype == "float64"
    residual = (model(data.X_train).double() - data.y_train.double()).detach().numpy()
    assert result.loss.value == pytest.approx(np.mean(residual**2), rel=1e-6)
    assert all(r < 1e-6 * result.top_eigenvalues[0] for r in result.eigenvalue_residuals)


def test_power_iteration_agrees_on_the_positive_definite_regression_hessian():
    data = regression_data()
    result = run(seeded(lambda: nn.Linear(4, 1), 0), data, method="power", top_k=3, n_power_iter=2000)
    xt = augmented(data.X_train)
    expected = np.sort(np.linalg.eigvalsh(2.0 * xt.T @ xt / 200))[::-1][:3]
    np.testing.assert_allclose(result.top_eigenvalues, expected, rtol=1e-5)
    assert result.method == "power"


def test_classification_mse_repeats_each_eigenvalue_once_per_class():
    data = classification_data(classes=3)
    result = run(seeded(lambda: nn.Linear(3, 3), 1), data, loss="mse", top_k=6, n_lanczos_iter=12)
    xt = augmented(data.X_train)
    hessian = np.kron(np.eye(3), 2.0 * xt.T @ xt / (xt.shape[0] * 3))
    assert_matches(result, hessian, 6)
    # The top eigenvalue three times: Lanczos restarts find the copies.
    np.testing.assert_allclose(result.top_eigenvalues[:3], [result.top_eigenvalues[0]] * 3, rtol=1e-8)


def test_softmax_regression_cross_entropy_hessian_and_zero_one_surrogate():
    data = classification_data(classes=3)
    model = seeded(lambda: nn.Linear(3, 3), 2)
    result = run(model, data, loss="zero_one", top_k=4, n_lanczos_iter=12, hutchinson_probes=200)
    xt = augmented(data.X_train)
    p = torch.softmax(model(data.X_train).double(), dim=1).detach().numpy()
    hessian = sum(np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(xi, xi)) for pi, xi in zip(p, xt)) / xt.shape[0]
    assert_matches(result, hessian, 4)
    assert result.loss.name == "cross_entropy" and "zero_one" in result.loss.note
    assert result.loss.task_loss == "zero_one"


def test_small_mlp_matches_the_full_hessian_on_a_subsample():
    # Lanczos with as many steps as parameters is exact; the subsample is the probe's own draw.
    data = classification_data(n=400, d=2, classes=3, seed=3)
    model = seeded(lambda: nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.LayerNorm(6), nn.Linear(6, 3)), 3)
    model.train()  # the probe evaluates a copy in eval mode; LayerNorm behaves the same in both
    result = run(model, data, loss="cross_entropy", seed=11, max_train_samples=150, top_k=5, n_lanczos_iter=51)
    rows = subsample_indices(400, 150, seed=11)
    assert result.n_samples == 150 and result.n_train == 400

    reference = seeded(lambda: nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.LayerNorm(6), nn.Linear(6, 3)), 3).double()
    params = {name: p.detach() for name, p in reference.named_parameters()}
    names, shapes = list(params), [p.shape for p in params.values()]
    x, y = data.X_train[rows].double(), data.y_train[rows]

    def loss(flat):
        pieces = torch.split(flat, [int(np.prod(s)) for s in shapes])
        weights = {n: piece.reshape(s) for n, piece, s in zip(names, pieces, shapes)}
        return nn.functional.cross_entropy(functional_call(reference, weights, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss, torch.cat([p.reshape(-1) for p in params.values()])).numpy()
    assert hessian.shape == (51, 51) == (result.n_parameters,) * 2
    assert_matches(result, hessian, 5)


def test_subsample_is_deterministic_sorted_and_without_replacement():
    rows = subsample_indices(1000, 100, seed=4)
    assert torch.equal(rows, subsample_indices(1000, 100, seed=4))
    assert rows.numel() == 100 == rows.unique().numel() and torch.equal(rows, rows.sort().values)
    assert not torch.equal(rows, subsample_indices(1000, 100, seed=5))
    assert torch.equal(subsample_indices(50, 100, seed=4), torch.arange(50))


def test_model_is_left_untouched():
    model = seeded(lambda: nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.5), nn.Linear(5, 3)), 4)
    model.train()
    model[0].weight.requires_grad_(False)
    calls = []
    model[2].register_forward_hook(lambda *args: calls.append(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = [dict(m._forward_hooks) for m in model.modules()]
    requires = [p.requires_grad for p in model.parameters()]
    cpu_rng = torch.get_rng_state()

    first = run(model, classification_data(), loss="cross_entropy", hutchinson_probes=8)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == requires
    assert all(torch.equal(model.state_dict()[k], v) and model.state_dict()[k].dtype == v.dtype for k, v in state.items())
    assert [dict(m._forward_hooks) for m in model.modules()] == hooks
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), cpu_rng)
    # Dropout is off in the probe's eval-mode copy: the result is a function of the weights.
    assert run(model, classification_data(), loss="cross_entropy", hutchinson_probes=8) == first


def test_deterministic_per_seed():
    data, build = regression_data(), lambda: nn.Linear(4, 1)
    first = run(seeded(build, 0), data, seed=3, hutchinson_probes=10)
    assert run(seeded(build, 0), data, seed=3, hutchinson_probes=10) == first
    other = run(seeded(build, 0), data, seed=4, hutchinson_probes=10)
    assert other.trace.mean != first.trace.mean  # different probes
    np.testing.assert_allclose(other.top_eigenvalues, first.top_eigenvalues, rtol=1e-9)  # same Hessian
    params_seed = Sharpness(Sharpness.Params(seed=3, hutchinson_probes=10)).run(context(seeded(build, 0), data, seed=0))
    assert params_seed == first and first.seed == 3  # Params.seed wins over the run's seed


def test_result_and_metrics_are_json_ready_and_progress_is_reported():
    reports = []
    probe_context = context(seeded(lambda: nn.Linear(4, 1), 0), regression_data())
    probe_context.progress = lambda fraction, message: reports.append((fraction, message))
    result = Sharpness(Sharpness.Params(hutchinson_probes=8)).run(probe_context)
    fractions = [fraction for fraction, _ in reports]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result.n_hvp == 5 + 8  # Lanczos stops at the 5 parameters; one product per probe
    reloaded = Sharpness.Result.model_validate_json(result.model_dump_json())
    metrics = {metric.key: metric for metric in Sharpness.metrics(reloaded)}
    top = metrics["sharpness.top_eigenvalue"]
    assert top.value == result.top_eigenvalues[0] and top.ci95[0] <= top.value <= top.ci95[1]
    assert metrics["sharpness.trace"].ci95 == tuple(result.trace.ci95)
    assert metrics["sharpness.trace"].n == 8 and metrics["sharpness.training_loss"].value == result.loss.value


def test_no_training_split_or_no_task_is_an_input_error():
    data = regression_data()
    empty = Dataset("test-only", data.X_train[:0], data.y_train[:0], data.X_test, data.y_test, "regression")
    with pytest.raises(InputError) as error:
        Sharpness().run(context(nn.Linear(4, 1), empty))
    assert error.value.errors[0]["loc"] == ["task", "dataset"] and "training" in error.value.errors[0]["msg"]
    with pytest.raises(InputError) as error:
        Sharpness().check_dataset(empty.describe())
    assert error.value.errors[0]["loc"] == ["task", "dataset"]
    Sharpness().check_dataset(data.describe())
    with pytest.raises(InputError) as error:
        Sharpness().run(context(nn.Linear(4, 1), None, task=False))
    assert error.value.errors[0]["loc"] == ["task"]
    with pytest.raises(InputError):
        Sharpness().check_inputs(ARCH, None)


def test_non_finite_loss_is_an_input_error():
    model = nn.Linear(4, 1)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    with pytest.raises(InputError) as error:
        run(model, regression_data())
    assert error.value.errors[0]["loc"] == ["model", "weights"]


def test_params_are_validated():
    with pytest.raises(ValidationError, match="n_lanczos_iter"):
        Sharpness.Params(top_k=10, n_lanczos_iter=5)
    Sharpness.Params(method="power", top_k=10, n_lanczos_iter=5)  # Lanczos steps unused
    with pytest.raises(ValidationError):
        Sharpness.Params(hutchinson_probes=1)
    with pytest.raises(ValidationError):
        Sharpness.Params(unknown=1)


def test_loss_used_names_the_differentiable_loss():
    assert loss_used("mse", "classification") == {"name": "mse", "task_loss": "mse", "note": None}
    assert loss_used("cross_entropy", "classification")["name"] == "cross_entropy"
    assert loss_used("zero_one", "classification")["name"] == "cross_entropy"
    regression = loss_used("cross_entropy", "regression")
    assert regression["name"] == "mse" and "mean squared error" in regression["note"]
