"""The ``custom`` transform: a fixed permutation of the flattened per-sample input indices, given in
the task spec (``TaskSpec.input_permutation``) for a symmetry no built-in transform expresses.
It applies to every input kind; ``out.flatten()[i] = x.flatten()[permutation[i]]`` per sample."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from workers.transforms.base import ParameterFree, Transform


class CustomPermutation(ParameterFree, Transform):
    """``x -> x.flatten()[permutation].reshape(x.shape)`` for every input (deterministic, discrete)."""

    name = "custom"
    input_kinds = frozenset({"image", "tokens", "sequence", "tabular"})
    description = "the permutation of input indices given in the task spec"

    def __init__(self, sample_shape: tuple[int, ...], magnitude: float | None = None, *, permutation: Sequence[int]):
        """Raises ``ValueError`` if ``permutation`` is not a permutation of ``range(prod(sample_shape))``."""
        super().__init__(sample_shape, magnitude)
        size = math.prod(self.sample_shape)
        index = torch.as_tensor(list(permutation), dtype=torch.long)
        if index.ndim != 1 or index.numel() != size or not torch.equal(index.sort().values, torch.arange(size)):
            raise ValueError(f"needs a permutation of 0..{size - 1} (the flattened input of shape {list(sample_shape)})")
        self.permutation = index

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return flat[:, self.permutation.to(x.device)].reshape(x.shape)
