"""Pointwise activations named in the architecture specs (``models.specs.Activation``).

``gaussian`` and ``sin`` are not in ``torch.nn``; they matter for the simplicity probe because
their complexity grows with weight scale and depth, unlike ReLU's (docs/methods.md §3). Every
activation is a parameter-free module, so it never appears in a state dict.
"""

from __future__ import annotations

import torch
from torch import nn


class Gaussian(nn.Module):
    """``exp(-x^2)``: a bump, not a monotone squashing function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x * x)


class Sin(nn.Module):
    """``sin(x)``: periodic, as in SIREN-style networks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gaussian": Gaussian,
    "sin": Sin,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for a spec's ``activation`` name.

    Raises ``KeyError`` for an unknown name; specs are validated before they get here, so that
    means a programming error, not bad user input.
    """
    return ACTIVATIONS[name]()
