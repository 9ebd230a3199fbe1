"""Test loss of every hypothesis of an ensemble: the L_test(h) whose distribution ``inductive_bias`` fits.

Each loss is the exact mean over the whole test set (docs/methods.md §1; the reference code divides a
sum by the batch size instead, which is wrong whenever the last batch is short or there are
several batches):

- ``mse``: mean over test points and output units of the squared error, against one-hot targets
  for classification and against the targets themselves for regression;
- ``cross_entropy``: mean over test points of ``-log softmax(outputs)[target]`` (classification);
- ``zero_one``: the error rate, mean over test points of ``argmax(outputs) != target``
  (classification; ties go to the lowest class index, as ``torch.argmax``).

Sums are accumulated in float64 so that a loss deep in the left tail keeps its digits. A member
with a non-finite output gets a non-finite loss (inf or NaN from the arithmetic; NaN for
``zero_one``, where argmax would otherwise hide it), which the caller counts as diverged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from models.errors import InputError

TestLoss = Literal["mse", "cross_entropy", "zero_one"]
TEST_LOSSES: tuple[str, ...] = ("mse", "cross_entropy", "zero_one")


def test_losses(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    loss: TestLoss,
    task_type: Literal["classification", "regression"],
) -> torch.Tensor:
    """Per-member test loss.

    Args:
        outputs: ``(S, N, C)`` model outputs of S members on the N test points (any float dtype;
            regression outputs may also be ``(S, N)`` for one output unit).
        targets: ``(N,)`` int64 class indices (classification) or ``(N,)``/``(N, C)`` floats
            (regression), on the same device as ``outputs``.
        loss: ``"mse"``, ``"cross_entropy"`` or ``"zero_one"``.
        task_type: ``"classification"`` or ``"regression"``; regression allows only ``mse``.

    Returns:
        ``(S,)`` float64 tensor on ``outputs``' device.

    Raises:
        InputError at ``["task", "loss"]`` for a loss that the task type does not support.
    """
    if loss not in TEST_LOSSES:
        raise InputError.at(["task", "loss"], f"unknown loss {loss!r}; choose one of {list(TEST_LOSSES)}")
    if task_type == "regression" and loss != "mse":
        raise InputError.at(
            ["task", "loss"], f"loss {loss!r} needs class labels; a regression task supports only 'mse'"
        )
    n_members, n_points = outputs.shape[0], outputs.shape[1]
    if targets.shape[0] != n_points:
        raise ValueError(f"outputs have {n_points} test points, targets {targets.shape[0]}")
    out = outputs.to(torch.float64)
    if task_type == "regression":
        target = targets.to(torch.float64).reshape(out.shape[1:])
        return ((out - target) ** 2).reshape(n_members, -1).mean(dim=1)
    if out.ndim != 3:
        raise ValueError(f"classification outputs must be (S, N, n_classes), got {tuple(outputs.shape)}")
    labels = targets.to(torch.int64)
    if loss == "mse":
        one_hot = F.one_hot(labels, num_classes=out.shape[-1]).to(torch.float64)
        return ((out - one_hot) ** 2).reshape(n_members, -1).mean(dim=1)
    if loss == "cross_entropy":
        log_probs = torch.log_softmax(out, dim=-1)
        picked = log_probs.gather(-1, labels.view(1, -1, 1).expand(n_members, -1, 1)).squeeze(-1)
        return -picked.mean(dim=1)
    wrong = (out.argmax(dim=-1) != labels.unsqueeze(0)).to(torch.float64)
    rate = wrong.mean(dim=1)
    finite = torch.isfinite(out).reshape(n_members, -1).all(dim=1)
    return torch.where(finite, rate, torch.full_like(rate, float("nan")))
