"""Plain single-model training on a task's training split (the demo's example models, and the
per-hypothesis baseline that batched samplers are benchmarked against)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from workers.data.dataset import Dataset
from workers.runspec import TrainSpec


def training_loss(loss: str, outputs: torch.Tensor, targets: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """Differentiable loss used for training. ``zero_one`` is not differentiable, so a task whose
    evaluation loss is 0-1 trains with cross-entropy (the usual surrogate)."""
    return member_training_losses(loss, outputs.unsqueeze(0), targets.unsqueeze(0), dataset)[0]


def member_training_losses(loss: str, outputs: torch.Tensor, targets: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """``training_loss`` of each of S models at once: ``outputs`` ``(S, B, *out)`` against ``targets``
    ``(S, B, ...)`` -> ``(S,)``, each the mean over its own batch.

    ``mse`` on class labels compares with one-hot rows, built per batch (``S * B * classes``, never
    the whole training set: with many classes that would not fit) directly in the outputs' dtype.
    """
    S = outputs.shape[0]
    if dataset.task_type == "classification":
        if loss != "mse":
            per_sample = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(0, 1), reduction="none")
            return per_sample.view(S, -1).mean(dim=1)
        one_hot = torch.zeros_like(outputs).scatter_(-1, targets.unsqueeze(-1), 1.0)
        return ((outputs - one_hot) ** 2).reshape(S, -1).mean(dim=1)
    residual = outputs - targets.reshape(outputs.shape)
    return (residual**2).reshape(S, -1).mean(dim=1)


def train_model(
    model: torch.nn.Module,
    dataset: Dataset,
    train: TrainSpec,
    loss: str,
    seed: int,
    progress: Callable[[float, str], None] | None = None,
) -> torch.nn.Module:
    """Train ``model`` in place with ``train``'s optimizer, lr, epochs and batch size.

    The data order comes from a generator seeded with ``seed``, so a run is reproducible without
    touching the global RNG. Returns the model in eval mode.
    """
    if not dataset.has_train_split:
        raise ValueError("dataset has no training split")
    device = next(model.parameters()).device
    X, y = dataset.X_train.to(device), dataset.y_train.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer_cls = torch.optim.Adam if train.optimizer == "adam" else torch.optim.SGD
    optimizer = optimizer_cls(model.parameters(), lr=train.lr)
    model.train()
    n = X.shape[0]
    for epoch in range(train.epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, train.batch_size):
            batch = order[start : start + train.batch_size]
            optimizer.zero_grad(set_to_none=True)
            training_loss(loss, model(X[batch]), y[batch], dataset).backward()
            optimizer.step()
        if progress is not None:
            progress((epoch + 1) / train.epochs, f"epoch {epoch + 1}/{train.epochs}")
    model.eval()
    return model
