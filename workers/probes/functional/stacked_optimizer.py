"""Adam and SGD over stacked ensemble parameters, without ``torch.optim``.

Idea: the members' parameters are disjoint and Adam/SGD are elementwise, so one update over the
stacked (or flattened) tensors is exactly S independent runs (docs/methods.md §1, Speed). This class
computes ``torch.optim.Adam`` / ``torch.optim.SGD`` with torch's defaults besides ``lr`` (no
momentum, weight decay or amsgrad), through the same kernels ``torch.optim`` uses (``aten::
_fused_adam_``: one pass over each tensor per step instead of about ten elementwise kernels).

Why not ``torch.optim`` itself: constructing the first ``torch.optim.Optimizer`` in a process
imports ``torch._dynamo`` (its methods are wrapped in ``torch._disable_dynamo``), about 1.3 s on the
project's 2-core machine, which a user of ``priorprobe run`` pays on every run. The update rule
is the same; ``tests/workers/probes/functional/test_stacked_optimizer.py`` checks it against
``torch.optim`` step by step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workers.runspec import TrainSpec

# torch.optim.Adam's defaults.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class StackedOptimizer:
    """Adam (``optimizer="adam"``) or plain SGD over ``params``, updated in place.

    Args:
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning rate.
        params: the tensors to update (leaf tensors, or plain tensors whose gradients are passed
            to ``step``).

    ``step(grads)`` applies one update with the given gradients (default: each tensor's ``.grad``);
    ``zero_grad`` drops the ``.grad`` of every tensor, as ``torch.optim`` does with
    ``set_to_none=True``.
    """

    def __init__(self, optimizer: str, lr: float, params: Sequence[torch.Tensor]):
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.optimizer, self.lr, self.params = optimizer, float(lr), list(params)
        if optimizer == "adam":
            self._exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            self._exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            # The fused kernel reads the step count from a float tensor, as torch.optim keeps it.
            self._steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor] | None = None) -> None:
        grads = [p.grad for p in self.params] if grads is None else list(grads)
        if any(g is None for g in grads):
            raise ValueError("every parameter needs a gradient for this step")
        if self.optimizer == "sgd":
            torch._foreach_add_(self.params, grads, alpha=-self.lr)
            return
        torch._foreach_add_(self._steps, 1.0)
        beta1, beta2 = ADAM_BETAS
        torch._fused_adam_(
            self.params, grads, self._exp_avg, self._exp_avg_sq, [], self._steps,
            lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False,
        )


def make_optimizer(train_spec: TrainSpec, params: list[torch.Tensor]) -> StackedOptimizer:
    """The optimizer ``workers.training.train_model`` uses (torch defaults besides ``lr``)."""
    return StackedOptimizer(train_spec.optimizer, train_spec.lr, params)
