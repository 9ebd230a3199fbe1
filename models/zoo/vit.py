"""Vision transformer: patches -> tokens -> pre-norm encoder -> mean pool -> LayerNorm -> head.

``patch_embed`` is a Conv2d with kernel = stride = ``patch_size`` (the same map as a Linear on
each flattened patch), giving ``(image_size / patch_size)^2`` tokens of width ``dim``; a learned
``pos_embed`` of shape ``(1, num_patches, dim)`` is added; ``blocks.{i}`` are the pre-norm blocks
of ``models.zoo.blocks``; the tokens are averaged, normalised by ``norm`` and mapped to
``out_dim`` by ``head``. Input ``(N, C, H, W)``, output ``(N, out_dim)``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.specs import ViTSpec
from models.zoo.blocks import Block


class ViT(nn.Module):
    """See the module docstring."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        num_patches = (spec.image_size // spec.patch_size) ** 2
        self.patch_embed = nn.Conv2d(spec.in_channels, spec.dim, kernel_size=spec.patch_size, stride=spec.patch_size)
        # A bare Parameter has no PyTorch default init; N(0, 0.02^2) is the usual ViT choice (timm).
        self.pos_embed = nn.Parameter(nn.init.normal_(torch.empty(1, num_patches, spec.dim), std=0.02))
        self.blocks = nn.ModuleList(Block(spec.dim, spec.heads, spec.mlp_ratio) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.dim)
        self.head = nn.Linear(spec.dim, spec.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(start_dim=-2).transpose(-2, -1)  # (N, patches, dim)
        h = tokens + self.pos_embed
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h.mean(dim=-2)))


def build(spec: ViTSpec) -> ViT:
    """Build a ViT with PyTorch's default init (``models.registry.build_model`` seeds and re-inits)."""
    return ViT(spec)
