"""Input transforms for the invariance probe: one module per input kind, one catalogue.

``registry`` maps names to classes and input kinds to valid names; ``base.Transform`` is the
contract every transform meets (sample, apply, act on outputs, and for continuous ones a flow and
its generators).
"""

from workers.transforms.base import Magnitude, Transform
from workers.transforms.registry import (
    INPUT_KINDS,
    TRANSFORMS,
    TRANSFORMS_BY_KIND,
    build_transform,
    check_transform,
    default_transform_names,
)

__all__ = [
    "INPUT_KINDS",
    "TRANSFORMS",
    "TRANSFORMS_BY_KIND",
    "Magnitude",
    "Transform",
    "build_transform",
    "check_transform",
    "default_transform_names",
]
