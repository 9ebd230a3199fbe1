"""Sequence transformer encoder over tokens or feature vectors.

``embed`` maps the input to width ``dim``: an ``nn.Embedding(vocab_size, dim)`` for
``TokenInput`` (input ``(N, seq_len)`` int64) or an ``nn.Linear(input.dim, dim)`` for
``FeatureInput`` (input ``(N, seq_len, input.dim)`` float). With ``pool='cls'`` a learned
``cls_token`` is prepended. A learned ``pos_embed`` of shape ``(1, seq_len [+1 for cls], dim)``
is added, then the pre-norm ``blocks.{i}`` of ``models.zoo.blocks`` and a final LayerNorm
``norm`` on every position. Pooling: ``mean`` averages the positions, ``cls`` takes the cls
position, ``none`` keeps every position; ``head`` maps ``dim -> out_dim``. Output ``(N, out_dim)``,
or ``(N, seq_len, out_dim)`` for ``pool='none'``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.specs import TokenInput, TransformerSpec
from models.zoo.blocks import Block


class Transformer(nn.Module):
    """See the module docstring."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        if isinstance(spec.input, TokenInput):
            self.embed: nn.Module = nn.Embedding(spec.input.vocab_size, spec.dim)
        else:
            self.embed = nn.Linear(spec.input.dim, spec.dim)
        self.pool = spec.pool
        # A bare Parameter has no PyTorch default init; N(0, 0.02^2) is the usual choice (BERT, timm).
        if spec.pool == "cls":
            self.cls_token = nn.Parameter(nn.init.normal_(torch.empty(1, 1, spec.dim), std=0.02))
        positions = spec.seq_len + (1 if spec.pool == "cls" else 0)
        self.pos_embed = nn.Parameter(nn.init.normal_(torch.empty(1, positions, spec.dim), std=0.02))
        self.blocks = nn.ModuleList(Block(spec.dim, spec.heads, spec.mlp_ratio) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.dim)
        self.head = nn.Linear(spec.dim, spec.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (N, seq_len, dim)
        if self.pool == "cls":
            cls = self.cls_token.expand(*h.shape[:-2], 1, h.shape[-1])
            h = torch.cat([cls, h], dim=-2)
        h = h + self.pos_embed
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        if self.pool == "mean":
            h = h.mean(dim=-2)
        elif self.pool == "cls":
            h = h[..., 0, :]
        return self.head(h)


def build(spec: TransformerSpec) -> Transformer:
    """Build a transformer with PyTorch's default init (``models.registry.build_model`` seeds and re-inits)."""
    return Transformer(spec)
