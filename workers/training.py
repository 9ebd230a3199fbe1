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
    fitted = fit_targets(loss, targets, dataset, outputs.shape[-1])
    return member_training_losses(loss, outputs.unsqueeze(0), fitted.unsqueeze(0), dataset)[0]


def fit_targets(loss: str, targets: torch.Tensor, dataset: Dataset, n_outputs: int) -> torch.Tensor:
    """What the outputs are fitted to: one-hot rows (in the outputs' float dtype) for ``mse`` on class
    labels, otherwise the targets as they are. Computed once per training set by batched trainers,
    which then gather rows per step instead of re-encoding every minibatch."""
    if dataset.task_type == "classification" and loss == "mse":
        return F.one_hot(targets, num_classes=n_outputs).to(torch.get_default_dtype())
    return targets


def member_training_losses(loss: str, outputs: torch.Tensor, fitted: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """``training_loss`` of each of S models at once: ``outputs`` ``(S, B, *out)`` against ``fitted``
    ``(S, B, ...)`` rows of ``fit_targets`` -> ``(S,)``, each the mean over its own batch."""
    S = outputs.shape[0]
    if dataset.task_type == "classification" and loss != "mse":
        per_sample = F.cross_entropy(outputs.flatten(0, 1), fitted.flatten(0, 1), reduction="none")
        return per_sample.view(S, -1).mean(dim=1)
    residual = outputs - fitted.to(outputs.dtype).reshape(outputs.shape)
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
