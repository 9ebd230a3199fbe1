import pytest
import torch
import torch.nn.functional as F

from models.registry import build_model
from models.specs import parse_arch
from workers.data.dataset import Dataset
from workers.runspec import TrainSpec
from workers.training import member_training_losses, train_model, training_loss


def classification(n: int = 12, n_classes: int = 3, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return Dataset("toy", X, y, X[:4], y[:4], "classification", n_classes=n_classes)


def regression(n: int = 12, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = torch.randn(n, generator=g)
    return Dataset("toy", X, y, X[:4], y[:4], "regression")


def test_training_loss_known_values():
    outputs = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    targets = torch.tensor([0, 1])
    # MSE against one-hot rows: ((2-1)^2 + 0 + 0 + 0 + (0-1)^2 + 1^2) / 6.
    assert training_loss("mse", outputs, targets, classification()).item() == pytest.approx(3 / 6)
    expected_ce = F.cross_entropy(outputs, targets).item()
    assert training_loss("cross_entropy", outputs, targets, classification()).item() == pytest.approx(expected_ce)
    # zero_one trains with its cross-entropy surrogate.
    assert training_loss("zero_one", outputs, targets, classification()).item() == pytest.approx(expected_ce)
    reg = training_loss("mse", torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0]), regression())
    assert reg.item() == pytest.approx((1 + 4) / 2)


def test_mse_on_class_labels_compares_with_one_hot_rows():
    outputs = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 2.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    labels = torch.tensor([[2, 0], [0, 2]])  # member 1 fits its batch exactly
    losses = member_training_losses("mse", outputs, labels, classification())
    # Member 0: ((0.5)^2 + 1 + 1 + 2^2) / 6.
    torch.testing.assert_close(losses, torch.tensor([6.25 / 6, 0.0]))


@pytest.mark.parametrize("loss,make", [("mse", classification), ("cross_entropy", classification), ("mse", regression)])
def test_member_losses_equal_one_model_at_a_time(loss, make):
    dataset = make()
    g = torch.Generator().manual_seed(1)
    n_out = 3 if dataset.task_type == "classification" else 1
    outputs = torch.randn(5, 6, n_out, generator=g)
    idx = torch.randint(0, dataset.y_train.shape[0], (5, 6), generator=g)
    batched = member_training_losses(loss, outputs, dataset.y_train[idx], dataset)
    one_by_one = torch.stack([training_loss(loss, outputs[j], dataset.y_train[idx[j]], dataset) for j in range(5)])
    torch.testing.assert_close(batched, one_by_one)


def test_train_model_is_reproducible_and_lowers_the_loss():
    dataset = classification(n=64)
    arch = parse_arch({"name": "mlp", "in_dim": 4, "hidden": [16], "out_dim": 3})
    spec = TrainSpec(optimizer="adam", lr=1e-2, epochs=20, batch_size=16)
    before = training_loss("mse", build_model(arch, 0)(dataset.X_train), dataset.y_train, dataset).item()
    a = train_model(build_model(arch, 0), dataset, spec, "mse", seed=3)
    b = train_model(build_model(arch, 0), dataset, spec, "mse", seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    with torch.no_grad():
        after = training_loss("mse", a(dataset.X_train), dataset.y_train, dataset).item()
    assert after < 0.5 * before
    assert not a.training
