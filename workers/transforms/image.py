"""Image transforms: inputs ``(n, C, H, W)``.

Spatial transforms (circular shift, translation, rotation, flips, scale) move pixels and also act on
image-shaped outputs ``(C', H, W)``; photometric ones (brightness, contrast, Gaussian noise) change
values only. Continuous transforms resample with the Catmull-Rom warp of
``workers.transforms.warp``, whose derivative at ``t = 0`` is exact and smooth; what they read
beyond the border is their ``padding`` option (``zeros`` by default; ``border``, ``reflection`` or
``circular``, as ``warp.PADDINGS`` defines them).
Row index grows downwards, column index to the right; ``(x, y)`` = (column, row).
"""

from __future__ import annotations

import math

import torch

from workers.transforms.base import FlowParameterised, Magnitude, ParameterFree, Transform, gather_along, nonzero_offsets
from workers.transforms.warp import PADDINGS, Padding, affine_warp, central_gradient, pixel_grid

_IMAGE = frozenset({"image"})


class _ImageTransform(Transform):
    input_kinds = _IMAGE

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return self.sample_shape[-2], self.sample_shape[-1]


class _SpatialTransform(_ImageTransform):
    """Moves pixels: the same draw transforms an output with the input's height and width."""

    def acts_on(self, output_shape: tuple[int, ...]) -> bool:
        return len(output_shape) == 3 and tuple(output_shape[-2:]) == self.spatial_shape

    def equivariance_note(self, output_shape: tuple[int, ...]) -> str:
        return (
            f"outputs of shape {list(output_shape)} have no {self.spatial_shape[0]}x{self.spatial_shape[1]} image "
            f"axes for '{self.name}' to act on; equivariance applies to image-to-image models"
        )


class _WarpTransform(_SpatialTransform):
    """A continuous spatial transform resampled by ``warp.affine_warp``.

    Its generators have a closed form: at ``t = 0`` output pixel ``p`` reads the input at a source
    point moving with velocity ``v_k(p)`` (``source_velocities``), so
    ``d/dt g_t x = v_row * d/drow x + v_col * d/dcol x`` with the central-difference gradient
    (``warp.central_gradient``). This equals forward-mode AD through ``flow`` (tested) at a fraction
    of the cost.

    ``padding`` (default ``zeros``) is what the warp reads beyond the border; the generator's
    central difference at the border pixels uses the same padding.
    """

    paddings = PADDINGS

    def __init__(self, sample_shape: tuple[int, ...], magnitude: float | None = None, padding: Padding = "zeros"):
        super().__init__(sample_shape, magnitude)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.padding = padding

    def source_velocities(self, dtype: torch.dtype, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per generator, ``(v_row, v_col)`` of shape ``(H, W)``: d(source point)/dt at ``t = 0``."""
        raise NotImplementedError

    def tangents(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        d_row, d_col = central_gradient(x, self.padding)
        return torch.stack([v_row * d_row + v_col * d_col for v_row, v_col in self.source_velocities(x.dtype, x.device)])


class _PhotometricTransform(_ImageTransform):
    def equivariance_note(self, output_shape: tuple[int, ...]) -> str:
        return f"'{self.name}' changes pixel values, not positions: only invariance is measured"


class CircularShift(_SpatialTransform):
    """Integer circular shift (wrap-around) by ``(dy, dx)``, each in ``[-m, m]``, never both 0."""

    name = "circular_shift"
    description = "integer circular shift of the image (wrap-around)"
    magnitude_spec = Magnitude("largest shift per axis, in whole pixels", 2, 1, 4096, integer=True)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return nonzero_offsets(n, int(self.magnitude), 2, generator)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        height, width = self.spatial_shape
        dy, dx = params[:, 0:1].to(x.device), params[:, 1:2].to(x.device)
        rows = (torch.arange(height, device=x.device).repeat_interleave(width).unsqueeze(0) - dy) % height
        cols = (torch.arange(width, device=x.device).repeat(height).unsqueeze(0) - dx) % width
        flat = x.reshape(*x.shape[:-2], height * width)
        return gather_along(flat, rows * width + cols, axis=-1).reshape(x.shape)


class Translate(FlowParameterised, _WarpTransform):
    """Translation by ``(tx, ty)`` pixels, each uniform in ``[-m, m]``, cubic resampling, ``padding`` beyond the border."""

    name = "translate"
    description = "translation (cubic resampling for sub-pixel shifts; zero padding unless the padding option says otherwise)"
    magnitude_spec = Magnitude("largest shift per axis, in pixels", 2.0, 0, 4096, low_exclusive=True)
    generators = ("x", "y")
    t_unit = "pixel"

    def flow_range(self) -> float:
        return self.magnitude

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        identity = torch.eye(2, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 2)
        return affine_warp(x, identity, t.to(dtype=x.dtype, device=x.device), self.padding)

    def source_velocities(self, dtype, device):
        zeros = torch.zeros(self.spatial_shape, dtype=dtype, device=device)
        return [(zeros, zeros - 1), (zeros - 1, zeros)]  # x: the source moves left; y: up


class Rotate(FlowParameterised, _WarpTransform):
    """Rotation about the image centre by an angle uniform in ``[-m, m]`` degrees, ``padding`` beyond the border.

    Positive angles turn the content clockwise as displayed (rows grow downwards); t is in radians.
    """

    name = "rotate"
    description = "rotation about the image centre (cubic resampling; zero padding unless the padding option says otherwise)"
    magnitude_spec = Magnitude("largest angle, in degrees", 15.0, 0, 180, low_exclusive=True)
    generators = ("angle",)
    t_unit = "radian"

    def flow_range(self) -> float:
        return math.radians(self.magnitude)

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        angle = t[:, 0].to(dtype=x.dtype, device=x.device)
        cos, sin = torch.cos(angle), torch.sin(angle)
        inverse = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        return affine_warp(x, inverse, torch.zeros(x.shape[0], 2, dtype=x.dtype, device=x.device), self.padding)

    def source_velocities(self, dtype, device):
        rows, cols = pixel_grid(*self.spatial_shape, dtype, device)
        return [(-cols, rows)]  # d/dt of R(-t) (col, row) at t = 0


class Scale(FlowParameterised, _WarpTransform):
    """Zoom about the centre by a factor log-uniform in ``[1/(1+m), 1+m]``; t = natural log of the factor."""

    name = "scale"
    description = "zoom in or out about the image centre (cubic resampling; zero padding unless the padding option says otherwise)"
    magnitude_spec = Magnitude("largest relative zoom m: factors in [1/(1+m), 1+m]", 0.2, 0, 10, low_exclusive=True)
    generators = ("log_scale",)
    t_unit = "log-scale unit (natural log of the zoom factor)"

    def flow_range(self) -> float:
        return math.log1p(self.magnitude)

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        shrink = torch.exp(-t[:, 0].to(dtype=x.dtype, device=x.device))
        inverse = shrink[:, None, None] * torch.eye(2, dtype=x.dtype, device=x.device)
        return affine_warp(x, inverse, torch.zeros(x.shape[0], 2, dtype=x.dtype, device=x.device), self.padding)

    def source_velocities(self, dtype, device):
        rows, cols = pixel_grid(*self.spatial_shape, dtype, device)
        return [(-rows, -cols)]  # d/dt of e^-t p at t = 0


class HorizontalFlip(ParameterFree, _SpatialTransform):
    """Mirror left-right (the column axis)."""

    name = "horizontal_flip"
    description = "mirror image left-right"

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)


class VerticalFlip(ParameterFree, _SpatialTransform):
    """Mirror top-bottom (the row axis)."""

    name = "vertical_flip"
    description = "mirror image top-bottom"

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return x.flip(-2)


class Brightness(FlowParameterised, _PhotometricTransform):
    """Add ``t`` to every pixel, ``t`` uniform in ``[-m, m]`` (in the input's own units)."""

    name = "brightness"
    description = "add a constant to every pixel"
    magnitude_spec = Magnitude("largest offset, in input units", 0.1, 0, 1000, low_exclusive=True)
    generators = ("brightness",)
    t_unit = "input intensity unit"

    def flow_range(self) -> float:
        return self.magnitude

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        return x + t[:, 0].to(dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))


class Contrast(FlowParameterised, _PhotometricTransform):
    """Scale deviations from each image's mean by ``e^t``, factor log-uniform in ``[1/(1+m), 1+m]``."""

    name = "contrast"
    description = "scale deviations from the image mean"
    magnitude_spec = Magnitude("largest relative change m: factors in [1/(1+m), 1+m]", 0.2, 0, 10, low_exclusive=True)
    generators = ("log_contrast",)
    t_unit = "log-contrast unit (natural log of the contrast factor)"

    def flow_range(self) -> float:
        return math.log1p(self.magnitude)

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        factor = torch.exp(t[:, 0].to(dtype=x.dtype, device=x.device)).reshape(mean.shape)
        return mean + factor * (x - mean)


class GaussianNoise(_PhotometricTransform):
    """Add i.i.d. Gaussian noise of standard deviation ``m``.

    Noise is not a group; its continuous path is ``x + t * eps`` with one fixed standard-normal
    direction ``eps`` per input (drawn from ``seed``), so the Lie derivative is the directional
    derivative ``J eps`` and its mean square estimates the squared Frobenius norm of the Jacobian.
    """

    name = "gaussian_noise"
    description = "add i.i.d. Gaussian noise"
    magnitude_spec = Magnitude("noise standard deviation, in input units", 0.1, 0, 1000, low_exclusive=True)
    generators = ("noise",)
    t_unit = "noise standard deviation"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.magnitude * torch.randn(n, *self.sample_shape, generator=generator, dtype=torch.float64)

    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return x + params.to(dtype=x.dtype, device=x.device)

    def flow(self, x: torch.Tensor, t: torch.Tensor, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        direction = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(dtype=x.dtype, device=x.device)
        return x + t[:, 0].to(dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1))) * direction


IMAGE_TRANSFORMS: tuple[type[Transform], ...] = (
    CircularShift, Translate, Rotate, HorizontalFlip, VerticalFlip, Scale, Brightness, Contrast, GaussianNoise,
)
