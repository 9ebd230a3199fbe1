"""Hand-derived training gradients of a stacked ensemble of plain MLPs (no autograd).

Idea: for the zoo's MLP without LayerNorm or residual connections and with a ReLU or tanh
activation, the backward pass is three batched products per layer, so we write it out instead of
recording a graph. Activations are feature-major, ``(S, features, B)``, as in
``ensemble._mlp_forward``: layer ``i`` computes ``z_i = W_i h_i + b_i`` and ``h_{i+1} = act(z_i)``.
With ``g_i = dLoss/dz_i``:

    dW_i = g_i h_i^T,   db_i = sum_B g_i,   g_{i-1} = act'(z_{i-1}) * (W_i^T g_i),

where ``act'`` is read from the saved output (ReLU: ``h > 0``; tanh: ``1 - h^2``). Each ``dW_i`` and
``db_i`` is written straight into its slice of one flat gradient buffer (``out=``), so the
optimizer then updates every parameter of every member in one pass. The gradient at the output
is that of the SUM over members of each member's own mean training loss
(``workers.training.member_training_losses``), so member ``j`` receives its own loss's gradient.

Compared with autograd on the same forward this saves the graph bookkeeping, the loss's forward
(its value is never used while training), the bias-gradient reductions through broadcasting, and
the gradient copies into ``.grad``: a visible share of a small network's step on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.zoo.mlp import MLP

_ACTIVATIONS = (nn.ReLU, nn.Tanh)


def has_hand_gradients(base: nn.Module) -> bool:
    """Whether ``mlp_gradients`` covers this architecture (the zoo's MLP exactly, no norms or
    residuals, ReLU or tanh)."""
    return type(base) is MLP and not len(base.norms) and not base.residual and type(base.act) in _ACTIVATIONS


def mlp_gradients(
    base: MLP,
    params: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    X_each: torch.Tensor,
    y_each: torch.Tensor,
    loss: str,
    task_type: str,
) -> None:
    """Write the gradients of ``sum_j loss_j`` into ``grads`` (same keys and shapes as ``params``).

    Args:
        base: the ensemble's (meta-device) MLP, for its structure.
        params: stacked ``(S, *shape)`` parameters.
        grads: preallocated contiguous ``(S, *shape)`` buffers, overwritten.
        X_each: ``(S, B, in_dim)`` each member's minibatch.
        y_each: ``(S, B)`` class labels or ``(S, B, ...)`` regression targets.
        loss: the task loss (``zero_one`` trains with cross-entropy, as ``training_loss`` does).
        task_type: ``"classification"`` or ``"regression"``.
    """
    n_layers = len(base.layers)
    h = X_each.transpose(1, 2)  # (S, in, B), a view
    saved = [h]
    for i in range(n_layers):
        weight, bias = params[f"layers.{i}.weight"], params.get(f"layers.{i}.bias")
        z = torch.baddbmm(bias.unsqueeze(2), weight, h) if bias is not None else torch.bmm(weight, h)
        if i < n_layers - 1:
            h = torch.relu_(z) if type(base.act) is nn.ReLU else torch.tanh_(z)
            saved.append(h)
        else:
            h = z
    g = _output_gradient(h, y_each, loss, task_type)
    for i in reversed(range(n_layers)):
        h_in = saved[i]
        torch.bmm(g, h_in.transpose(1, 2), out=grads[f"layers.{i}.weight"])
        if f"layers.{i}.bias" in grads:
            torch.sum(g, dim=2, out=grads[f"layers.{i}.bias"])
        if i == 0:
            break
        back = torch.bmm(params[f"layers.{i}.weight"].transpose(1, 2), g)
        if type(base.act) is nn.ReLU:
            g = torch.ops.aten.threshold_backward(back, h_in, 0)
        else:
            g = torch.ops.aten.tanh_backward(back, h_in)


def _output_gradient(out: torch.Tensor, y_each: torch.Tensor, loss: str, task_type: str) -> torch.Tensor:
    """``d sum_j mean_loss_j / d out`` for feature-major outputs ``(S, C, B)``."""
    S, C, B = out.shape
    if task_type == "classification":
        one_hot = torch.zeros_like(out).scatter_(1, y_each.unsqueeze(1), 1.0)
        if loss == "mse":
            # mean over B * C squared errors: 2 (out - onehot) / (B C).
            return out.sub_(one_hot).mul_(2.0 / (B * C))
        # Mean cross-entropy over B samples: (softmax - onehot) / B.
        return F.softmax(out, dim=1).sub_(one_hot).div_(B)
    targets = y_each.reshape(S, B, C).transpose(1, 2)
    return out.sub_(targets).mul_(2.0 / (B * C))
