"""Multi-layer perceptron: ``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim``.

Each hidden layer computes ``act(norm(linear(h)))`` (``norm`` is a LayerNorm when
``spec.layernorm``, else nothing). With ``spec.residual`` the hidden->hidden layers add their
input back, ``h <- h + act(norm(linear(h)))``; the first layer changes the width and is never
residual. The output layer is a plain linear map, and ``hidden=[]`` makes the whole network one
linear map. Parameter names: ``layers.{i}.weight``/``.bias`` (``i`` counts Linear layers, the
output layer last) and ``norms.{i}.weight``/``.bias`` for the LayerNorm after hidden layer ``i``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.specs import MLPSpec
from models.zoo.activations import make_activation


class MLP(nn.Module):
    """See the module docstring. Input ``(..., in_dim)``, output ``(..., out_dim)``."""

    def __init__(self, spec: MLPSpec):
        super().__init__()
        widths = [spec.in_dim, *spec.hidden, spec.out_dim]
        self.layers = nn.ModuleList(
            nn.Linear(widths[i], widths[i + 1], bias=spec.bias) for i in range(len(widths) - 1)
        )
        # An empty ModuleList keeps the attribute present (and the state dict free of norms).
        self.norms = nn.ModuleList(nn.LayerNorm(w) for w in spec.hidden) if spec.layernorm else nn.ModuleList()
        self.act = make_activation(spec.activation)
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        hidden_layers = self.layers[:-1]
        for i, linear in enumerate(hidden_layers):
            z = linear(h)
            if len(self.norms):
                z = self.norms[i](z)
            z = self.act(z)
            h = h + z if (self.residual and i > 0) else z
        return self.layers[-1](h)


def build(spec: MLPSpec) -> MLP:
    """Build an MLP with PyTorch's default init (``models.registry.build_model`` seeds and re-inits)."""
    return MLP(spec)
