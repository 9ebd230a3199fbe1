"""Sequence transforms: inputs ``(n, L)`` token ids or ``(n, L, D)`` feature vectors.

All act on the position axis (axis 1), so the same draw also transforms per-position outputs
``(L, out_dim)`` of a sequence-to-sequence model (a transformer with ``pool='none'``): there the
probe measures equivariance, ``f(g x)`` against ``g f(x)``. All are discrete (no Lie derivative).
"""

from __future__ import annotations

import torch

from workers.transforms.base import (
    Magnitude,
    ParameterFree,
    Transform,
    gather_along,
    nonzero_offsets,
    random_permutations,
)


class _SequenceTransform(Transform):
    input_kinds = frozenset({"tokens", "sequence"})

    @property
    def length(self) -> int:
        return self.sample_shape[0]

    def acts_on(self, output_shape: tuple[int, ...]) -> bool:
        # A pooled output (out_dim,) whose width happens to equal L must not count as positions.
        return len(output_shape) >= 2 and output_shape[0] == self.length

    def equivariance_note(self, output_shape: tuple[int, ...]) -> str:
        return (
            f"outputs of shape {list(output_shape)} have no position axis of length {self.length} "
            f"(the model pools over positions), so '{self.name}' acts on inputs only"
        )


class CyclicShift(_SequenceTransform):
    """Roll the positions by ``s`` in ``[-m, m]``, ``s != 0 (mod L)``; default ``m = L - 1``: every
    non-zero shift equally likely."""

    name = "cyclic_shift"
    description = "cyclic shift (roll) of the positions"
    magnitude_spec = Magnitude("largest shift, in positions (default: L - 1, all shifts)", None, 1, 65_536, integer=True)

    def __init__(self, sample_shape: tuple[int, ...], magnitude: float | None = None):
        super().__init__(sample_shape, magnitude)
        if self.magnitude is None:
            self.magnitude = max(1, self.length - 1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # Beyond L - 1 a shift wraps onto one already in range, possibly onto 0 (the identity).
        radius = max(1, min(int(self.magnitude), self.length - 1))
        return nonzero_offsets(n, radius, 1, generator)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(self.length, device=x.device).unsqueeze(0)
        return gather_along(x, (positions - params[:, 0:1].to(x.device)) % self.length, axis=1)


class Reversal(ParameterFree, _SequenceTransform):
    """Reverse the order of the positions."""

    name = "reversal"
    description = "reverse the order of the positions"

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return x.flip(1)


class PositionPermutation(_SequenceTransform):
    """Reorder the positions by a uniform random permutation, one per input (a set's elements)."""

    name = "position_permutation"
    description = "random permutation of the positions (elements of a set)"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return random_permutations(n, self.length, generator)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return gather_along(x, params, axis=1)


SEQUENCE_TRANSFORMS: tuple[type[Transform], ...] = (CyclicShift, Reversal, PositionPermutation)
