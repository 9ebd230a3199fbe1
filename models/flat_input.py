"""``FlatInput``: a flat-vector model fed with structured samples (images, sequences), flattened.

An MLP of ``in_dim = C*H*W`` and a CNN can be probed on the same images (``task.input``,
``models.specs.data_signature``): the probe builds its inputs and transforms in the data's shape
and wraps the MLP so that it sees each sample as one vector, in C-order (``torch.flatten``).
"""

from __future__ import annotations

import torch
from torch import nn


class FlatInput(nn.Module):
    """``inner(x.flatten(start_dim=-sample_dims))``: the last ``sample_dims`` axes become one."""

    def __init__(self, inner: nn.Module, sample_dims: int):
        super().__init__()
        self.inner = inner
        self.sample_dims = sample_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.flatten(start_dim=-self.sample_dims))
