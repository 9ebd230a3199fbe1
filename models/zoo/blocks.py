"""Pre-norm transformer encoder block shared by ``vit`` and ``transformer``.

``x <- x + attn(norm1(x)); x <- x + mlp(norm2(x))`` with multi-head self-attention (no mask)
and a GELU feed-forward of width ``max(1, round(dim * mlp_ratio))``. Parameter names inside a
block: ``norm1``, ``attn.q``, ``attn.k``, ``attn.v``, ``attn.out``, ``norm2``, ``mlp.fc1``,
``mlp.fc2`` (each with ``.weight`` and ``.bias``).

Why attention is written out by hand rather than ``nn.MultiheadAttention``:
- q, k, v and the output projection are four separate ``nn.Linear`` layers, so the
  weight_spectrum probe sees each projection as its own matrix (MHA fuses q, k, v into one
  ``in_proj_weight``), and checkpoints name them readably.
- Attention is plain matmuls + softmax rather than ``F.scaled_dot_product_attention``: the probes
  run these models under ``torch.func.vmap`` over stacked parameters, ``torch.func.jvp`` (Lie
  derivative) and double backward (Hessian-vector products), and the fused SDPA kernels do not
  support all of those transforms on every backend. The probes use small models, where the
  O(L^2) memory of explicit scores does not matter.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def feedforward_width(dim: int, mlp_ratio: float) -> int:
    """Hidden width of the feed-forward sublayer, never zero even for tiny ``dim * mlp_ratio``."""
    return max(1, round(dim * mlp_ratio))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the second-to-last axis: ``(..., L, dim) -> (..., L, dim)``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        # (..., L, dim) -> (..., heads, L, head_dim)
        return t.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(self.q(x)), self._split_heads(self.k(x)), self._split_heads(self.v(x))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        mixed = torch.softmax(scores, dim=-1) @ v
        return self.out(mixed.transpose(-3, -2).flatten(start_dim=-2))


class FeedForward(nn.Module):
    """``fc2(gelu(fc1(x)))``, applied position-wise."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """One pre-norm encoder block; see the module docstring."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, feedforward_width(dim, mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
