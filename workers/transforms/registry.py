"""The catalogue of invariance transforms, keyed by input kind (``models.specs.InputKind``).

``TRANSFORMS_BY_KIND[kind]`` lists the names that fit that kind, in report order; ``custom`` (a
permutation from the task spec) fits every kind but is never a default, since it needs that
permutation. Token inputs (integer ids) get the sequence transforms only: nothing continuous acts
on an id.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.errors import InputError
from workers.transforms.base import Transform
from workers.transforms.custom import CustomPermutation
from workers.transforms.image import IMAGE_TRANSFORMS
from workers.transforms.sequence import SEQUENCE_TRANSFORMS
from workers.transforms.tabular import TABULAR_TRANSFORMS

TRANSFORMS: dict[str, type[Transform]] = {
    cls.name: cls for cls in (*IMAGE_TRANSFORMS, *SEQUENCE_TRANSFORMS, *TABULAR_TRANSFORMS, CustomPermutation)
}
INPUT_KINDS = ("image", "sequence", "tokens", "tabular")
TRANSFORMS_BY_KIND: dict[str, tuple[str, ...]] = {
    kind: tuple(name for name, cls in TRANSFORMS.items() if kind in cls.input_kinds) for kind in INPUT_KINDS
}


def default_transform_names(kind: str) -> tuple[str, ...]:
    """Every transform that fits ``kind`` except ``custom``."""
    return tuple(name for name in TRANSFORMS_BY_KIND[kind] if name != CustomPermutation.name)


def check_transform(
    name: str, kind: str, magnitude: float | None, loc: Sequence[str | int], padding: str | None = None
) -> type[Transform]:
    """The class of transform ``name`` if it fits inputs of ``kind`` and takes ``magnitude`` and ``padding``.

    Raises ``InputError`` at ``loc`` (an unknown name, or one for another input kind; the message
    lists the valid choices for ``kind``), at ``[*loc, "magnitude"]`` (a magnitude out of range,
    or one given to a transform without a range) or at ``[*loc, "padding"]`` (a padding the
    transform does not offer, or one given to a transform that never reads beyond the border).
    """
    choices = list(TRANSFORMS_BY_KIND[kind])
    cls = TRANSFORMS.get(name)
    if cls is None:
        raise InputError.at(list(loc), f"unknown transform {name!r}; for {kind} inputs choose from {choices}")
    if kind not in cls.input_kinds:
        raise InputError.at(
            list(loc),
            f"transform {name!r} acts on {'/'.join(sorted(cls.input_kinds))} inputs, not {kind}; "
            f"for {kind} inputs choose from {choices}",
        )
    if magnitude is not None:
        spec = cls.magnitude_spec
        if spec is None:
            raise InputError.at([*loc, "magnitude"], f"transform {name!r} has no magnitude; remove it")
        problem = spec.problem(magnitude)
        if problem is not None:
            raise InputError.at([*loc, "magnitude"], problem)
    if padding is not None and padding not in cls.paddings:
        offered = f"choose from {list(cls.paddings)}" if cls.paddings else "it never reads beyond the border; remove it"
        raise InputError.at([*loc, "padding"], f"transform {name!r} has no padding {padding!r}: {offered}")
    return cls


def build_transform(
    name: str,
    kind: str,
    sample_shape: tuple[int, ...],
    magnitude: float | None = None,
    permutation: Sequence[int] | None = None,
    loc: Sequence[str | int] = ("transforms",),
    padding: str | None = None,
) -> Transform:
    """Construct transform ``name`` for inputs of ``kind`` and per-sample shape ``sample_shape``.

    ``permutation`` is the task's ``input_permutation``, needed by ``custom`` only; ``padding``
    (default: the transform's own, ``zeros`` for the warps) only for transforms that offer one.
    Raises ``InputError`` as ``check_transform`` does, and at ``loc`` when ``custom`` has no
    permutation or one of the wrong length.
    """
    cls = check_transform(name, kind, magnitude, loc, padding)
    if cls is CustomPermutation:
        if permutation is None:
            raise InputError.at(
                list(loc),
                "transform 'custom' needs a permutation of the input indices: set task.input_permutation",
            )
        try:
            return CustomPermutation(sample_shape, magnitude, permutation=permutation)
        except ValueError as exc:
            raise InputError.at(["task", "input_permutation"], f"{exc}") from None
    if padding is not None:
        return cls(sample_shape, magnitude, padding=padding)  # type: ignore[call-arg]
    return cls(sample_shape, magnitude)
