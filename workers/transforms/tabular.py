"""Tabular (set-of-features) transforms: inputs ``(n, D)``. Both are discrete."""

from __future__ import annotations

import torch

from workers.transforms.base import Magnitude, Transform, gather_along, random_permutations


class _TabularTransform(Transform):
    input_kinds = frozenset({"tabular"})

    @property
    def width(self) -> int:
        return self.sample_shape[0]


class FeaturePermutation(_TabularTransform):
    """Reorder the features by a uniform random permutation, one per input."""

    name = "feature_permutation"
    description = "random permutation of the features"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return random_permutations(n, self.width, generator)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return gather_along(x, params, axis=1)


class SignFlip(_TabularTransform):
    """Flip the sign of each feature independently with probability ``p`` (``p = 1``: ``x -> -x``).

    A draw that would flip nothing flips one uniformly chosen feature instead, so no draw is the
    identity (which would only dilute the measurement).
    """

    name = "sign_flip"
    description = "flip the signs of random features"
    magnitude_spec = Magnitude("probability that a feature's sign flips", 0.5, 0, 1, low_exclusive=True)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        flips = torch.rand(n, self.width, generator=generator, dtype=torch.float64) < self.magnitude
        fallback = torch.randint(0, self.width, (n,), generator=generator)
        none_flipped = ~flips.any(dim=1)
        flips[none_flipped, fallback[none_flipped]] = True
        return 1.0 - 2.0 * flips.double()

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return x * params.to(dtype=x.dtype, device=x.device)


TABULAR_TRANSFORMS: tuple[type[Transform], ...] = (FeaturePermutation, SignFlip)
