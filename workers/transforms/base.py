"""What an input transform is, for the invariance probe (docs/methods.md §2).

A ``Transform`` is a family of transformations ``g`` of one kind of input (image, sequence, tabular),
built for one per-sample shape and one ``magnitude`` (the width of its parameter range). It can

- ``sample(n, generator)``: draw one group element per input within the range (a tensor of
  parameters whose first axis is the input index);
- ``apply(x, params)``: transform a batch ``x`` of shape ``(n, *sample_shape)`` with those draws;
- ``acts_on(output_shape)``: say whether the same draws also act on the model's outputs (an
  image-to-image or sequence-to-sequence model), where equivariance is the right question;
- when continuous (``generators`` not empty): ``flow(x, t, seed)``, the one-parameter path
  ``g_t x`` with ``t`` of shape ``(n, K)`` (one coordinate per generator), equal to ``x`` at ``t = 0``
  and differentiable in ``t`` by forward-mode AD; and ``tangents(x, seed)``, its derivative at
  ``t = 0`` along each generator, ``(K, n, *sample_shape)``: the input direction of the Lie
  derivative ``d/dt f(g_t x)``.

Transforms never touch global RNG state: draws come from the ``torch.Generator`` passed in, or from
a generator seeded with ``seed``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class Magnitude:
    """The adjustable width of a transform's parameter range.

    ``meaning`` says what the number is ("largest shift, in pixels"); ``default`` is used when the
    user gives none (``None`` here means "computed from the input shape", see the transform);
    values must lie in ``(low, high]`` when ``low_exclusive`` else ``[low, high]``, and be whole
    numbers when ``integer``.
    """

    meaning: str
    default: float | None
    low: float
    high: float
    integer: bool = False
    low_exclusive: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is not allowed, or ``None`` if it is."""
        if self.integer and float(value) != int(value):
            return f"must be a whole number ({self.meaning})"
        below = value <= self.low if self.low_exclusive else value < self.low
        if below or value > self.high:
            opening = "(" if self.low_exclusive else "["
            return f"must be in {opening}{self.low:g}, {self.high:g}] ({self.meaning}); got {value:g}"
        return None


class Transform(ABC):
    """One family of input transformations; see the module docstring for the contract."""

    name: ClassVar[str]
    # Which ``models.specs.InputKind`` values it applies to.
    input_kinds: ClassVar[frozenset[str]]
    description: ClassVar[str]
    # ``None``: the transform has no adjustable range (flips, reversal, permutations).
    magnitude_spec: ClassVar[Magnitude | None] = None
    # Names of the Lie-algebra generators (e.g. ("x", "y") for translation); empty = discrete.
    generators: ClassVar[tuple[str, ...]] = ()
    # Unit of the flow parameter t, so a Lie derivative is "per <t_unit>".
    t_unit: ClassVar[str | None] = None
    # What the transform may read beyond the input's border (``warp.PADDINGS``; the first is the
    # default); empty for transforms that never read beyond it. ``padding`` is the instance's choice.
    paddings: ClassVar[tuple[str, ...]] = ()
    padding: str | None = None

    def __init__(self, sample_shape: tuple[int, ...], magnitude: float | None = None):
        """Args: sample_shape: the per-sample input shape; magnitude: the range width (default from
        ``magnitude_spec``). The caller validates ``magnitude`` with ``magnitude_spec.problem``."""
        self.sample_shape = tuple(int(s) for s in sample_shape)
        spec = self.magnitude_spec
        if spec is None:
            if magnitude is not None:
                raise ValueError(f"transform '{self.name}' takes no magnitude")
            self.magnitude: float | None = None
        else:
            chosen = magnitude if magnitude is not None else spec.default
            self.magnitude = None if chosen is None else (int(chosen) if spec.integer else float(chosen))

    @property
    def continuous(self) -> bool:
        return bool(self.generators)

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Parameters of ``n`` random group elements within the range (first axis: the input), on CPU."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``g x`` for a batch ``x`` of shape ``(n, *trailing)`` with ``n`` draws from ``sample``.

        Acts on the trailing axes the transform knows about (the whole sample for most transforms;
        the spatial or position axes for those that ``acts_on`` outputs too).
        """

    def acts_on(self, output_shape: tuple[int, ...]) -> bool:
        """Whether ``apply`` also transforms a model output of per-sample shape ``output_shape``."""
        return False

    def equivariance_note(self, output_shape: tuple[int, ...]) -> str:
        """Why equivariance is not measured for outputs of shape ``output_shape``."""
        return f"'{self.name}' does not act on model outputs; only invariance is measured"

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """``g_t x`` for ``t`` of shape ``(n, K)``; continuous transforms only."""
        raise NotImplementedError(f"'{self.name}' is discrete: it has no flow")

    def tangents(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """``d/dt g_t x`` at ``t = 0`` along each generator: ``(K, n, *x.shape[1:])``.

        Forward-mode AD (``torch.func.jvp``) through ``flow``, one pass per generator; subclasses
        with a closed form may override it (the tests check one against the other).
        """
        if not self.continuous:
            raise NotImplementedError(f"'{self.name}' is discrete: it has no generator")
        n, k = x.shape[0], len(self.generators)
        real = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        zero = torch.zeros(n, k, dtype=real, device=x.device)
        out = []
        for j in range(k):
            direction = torch.zeros_like(zero)
            direction[:, j] = 1.0
            _, tangent = torch.func.jvp(lambda t: self.flow(x, t, seed), (zero,), (direction,))
            out.append(tangent)
        return torch.stack(out)


def gather_along(x: torch.Tensor, index: torch.Tensor, axis: int) -> torch.Tensor:
    """``out[i, ..., j, ...] = x[i, ..., index[i, j], ...]``: a per-sample reindexing of one axis.

    ``index`` has shape ``(n, x.shape[axis])``; every other axis of ``x`` is carried along.
    """
    axis = axis % x.ndim
    shape = [1] * x.ndim
    shape[0], shape[axis] = index.shape[0], index.shape[1]
    return torch.gather(x, axis, index.to(x.device).view(shape).expand(x.shape))


def random_permutations(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` independent uniform permutations of ``range(size)``: ``(n, size)`` int64."""
    return torch.rand(n, size, generator=generator).argsort(dim=1)


def nonzero_offsets(n: int, radius: int, dims: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` integer offsets uniform over ``{-radius..radius}^dims`` without the zero offset.

    The identity would only dilute an invariance measurement, so it is never drawn.
    """
    side = 2 * radius + 1
    flat = torch.randint(0, side**dims - 1, (n,), generator=generator)
    centre = (side**dims - 1) // 2
    flat = flat + (flat >= centre).long()  # skip the all-zero offset
    digits = []
    for _ in range(dims):
        digits.append(flat % side - radius)
        flat = flat // side
    return torch.stack(digits[::-1], dim=1)


class ParameterFree:
    """Mixin for transforms with a single fixed group element (flips, reversal, a given
    permutation): every draw is the same, so ``sample`` returns no parameters. List it first among
    the bases so it provides ``sample``."""

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.empty(n, 0)


class FlowParameterised:
    """Mixin for continuous transforms whose sampled parameters are the flow time ``t`` itself:
    ``apply`` is ``flow``, and ``sample`` draws each generator's ``t`` uniform in ``[-r, r]`` with
    ``r = flow_range()``. List it first among the bases so it provides ``sample`` and ``apply``."""

    def flow_range(self) -> float:
        """Largest ``|t|`` a draw may take (in ``t_unit``)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = len(self.generators)  # type: ignore[attr-defined]
        return (2 * torch.rand(n, k, generator=generator, dtype=torch.float64) - 1) * self.flow_range()

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self.flow(x, params)  # type: ignore[attr-defined]
