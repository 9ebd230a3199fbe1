"""Convolutional network: stride-1 'same' convolutions, then global pooling or flattening.

Each conv (``convs.{i}``, kernel ``k`` odd, padding ``k // 2`` with ``padding_mode`` zeros or
circular) is followed by the activation. Then ``pool='global_avg'`` averages over H and W and
``head`` maps ``channels[-1] -> out_dim``; ``pool='flatten'`` flattens ``(C, H, W)`` and ``head``
maps ``channels[-1] * H * W -> out_dim``. Input ``(N, C, H, W)``, output ``(N, out_dim)``.

With circular padding every conv commutes with integer circular shifts of the image, and the
global mean forgets where things were, so ``circular + global_avg`` is exactly shift-invariant:
the known answer of the invariance probe (docs/methods.md §2).
"""

from __future__ import annotations

import torch
from torch import nn

from models.specs import CNNSpec
from models.zoo.activations import make_activation


class CNN(nn.Module):
    """See the module docstring."""

    def __init__(self, spec: CNNSpec):
        super().__init__()
        if spec.padding == "circular" and spec.kernel_size // 2 > spec.image_size:
            # torch would only fail at the first forward ("wrapping around more than once").
            raise ValueError(
                f"circular padding needs kernel_size // 2 <= image_size (got kernel_size={spec.kernel_size}, "
                f"image_size={spec.image_size})"
            )
        in_channels = [spec.in_channels, *spec.channels[:-1]]
        self.convs = nn.ModuleList(
            nn.Conv2d(
                c_in,
                c_out,
                kernel_size=spec.kernel_size,
                stride=1,
                padding=spec.kernel_size // 2,
                padding_mode=spec.padding,
            )
            for c_in, c_out in zip(in_channels, spec.channels)
        )
        self.act = make_activation(spec.activation)
        self.pool = spec.pool
        head_in = spec.channels[-1] * (spec.image_size**2 if spec.pool == "flatten" else 1)
        self.head = nn.Linear(head_in, spec.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = self.act(conv(h))
        # Reduce over explicit trailing dims so the same code runs under torch.func.vmap.
        h = h.mean(dim=(-2, -1)) if self.pool == "global_avg" else h.flatten(start_dim=-3)
        return self.head(h)


def build(spec: CNNSpec) -> CNN:
    """Build a CNN with PyTorch's default init (``models.registry.build_model`` seeds and re-inits)."""
    return CNN(spec)
