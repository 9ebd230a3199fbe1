"""Where the simplicity probe evaluates a function: regular grids in (flattened) input space.

A ``Grid`` is ``n_planes`` affine planes ``x(s, t) = origin + s u + t v`` (``u``, ``v`` orthonormal),
each sampled at ``G x G`` equispaced ``(s, t)`` with ``s`` in ``[-a, a]`` and ``t`` in ``[-b, b]``; a
1-D grid is one line ``origin + s u``. Three layouts, chosen by the input size ``D``:

- ``line`` (``D = 1``): the input axis itself.
- ``box`` (``D = 2``): the input plane itself, ``u, v`` the coordinate axes; one grid.
- ``planes`` (any ``D``): random planes through reference points, one per plane.

Spread: the half-widths are ``spread`` (default 2) standard deviations of the reference points along
each direction: of their projections onto ``u`` and ``v`` (planes), of each coordinate (box, line).
The reference points are the test inputs when there are any; without them they are the standard
normal distribution ``N(0, I)``, whose projections onto any unit vector have standard deviation
exactly 1, so half-widths are ``spread`` and plane origins are seeded ``N(0, I)`` draws. Along a
direction where the data do not vary the standard deviation 1 is used instead of 0.

Everything random comes from one CPU ``torch.Generator`` seeded with ``seed``, drawn in float64, so a
seed gives the same grid on every device. Points are produced in chunks (``Grid.points``) so a grid
over large inputs (images) never has to be held in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

GridKind = Literal["line", "box", "planes"]
DEFAULT_SPREAD = 2.0


@dataclass(frozen=True)
class Grid:
    """``n_planes`` grids of ``size ** dims`` points in a ``D``-dimensional input space (float64, CPU).

    Attributes:
        kind: ``"line"``, ``"box"`` or ``"planes"``.
        size: points per axis, G.
        origins: ``(P, D)``, the point at ``s = t = 0`` of each plane.
        directions: ``(P, dims, D)``, orthonormal rows ``u`` (and ``v``).
        half_widths: ``(P, dims)``, ``s`` spans ``[-a, a]`` and ``t`` spans ``[-b, b]``.
        through: what the origins are: ``"test_points"``, ``"standard_normal_points"`` (planes),
            ``"data_mean"`` or ``"origin"`` (box and line, with and without data).
    """

    kind: GridKind
    size: int
    origins: torch.Tensor
    directions: torch.Tensor
    half_widths: torch.Tensor
    through: str

    @property
    def dims(self) -> int:
        """1 for a line, 2 for boxes and planes."""
        return self.directions.shape[1]

    @property
    def n_planes(self) -> int:
        return self.origins.shape[0]

    @property
    def input_size(self) -> int:
        return self.origins.shape[1]

    @property
    def points_per_plane(self) -> int:
        return self.size**self.dims

    @property
    def n_points(self) -> int:
        return self.n_planes * self.points_per_plane

    def coordinates(self) -> torch.Tensor:
        """``(P, dims, G)``: the ``s`` (and ``t``) values of each plane, equispaced, endpoints included."""
        unit = torch.linspace(-1.0, 1.0, self.size, dtype=torch.float64)
        return self.half_widths[:, :, None] * unit

    def points(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Flat points ``start:stop`` (float64, ``(stop - start, D)``), ordered plane, then ``s``, then ``t``.

        So ``points().reshape(P, G, G, D)[p, i, j] = origin_p + s_i u_p + t_j v_p``; a function's values
        on all points reshape the same way into ``(P, G, G)`` (``(P, G)`` for a line).
        """
        stop = self.n_points if stop is None else stop
        if not 0 <= start <= stop <= self.n_points:
            raise ValueError(f"points {start}:{stop} outside 0:{self.n_points}")
        coords = self.coordinates()  # (P, dims, G)
        pieces = []
        first_plane, last_plane = start // self.points_per_plane, (max(stop, 1) - 1) // self.points_per_plane
        for plane in range(first_plane, min(last_plane, self.n_planes - 1) + 1):
            offset = plane * self.points_per_plane
            within = torch.arange(max(start, offset), min(stop, offset + self.points_per_plane)) - offset
            steps = [within] if self.dims == 1 else [within // self.size, within % self.size]
            # Elementwise, not a matmul: a point's rounding must not depend on how the points are chunked.
            piece = self.origins[plane].expand(within.numel(), -1).clone()
            for axis, step in enumerate(steps):
                piece += coords[plane, axis, step][:, None] * self.directions[plane, axis]
            pieces.append(piece)
        if not pieces:
            return torch.empty(0, self.input_size, dtype=torch.float64)
        return torch.cat(pieces)

    def describe(self) -> dict:
        """JSON summary: kind, size, planes, dims, what the planes pass through, their half-widths."""
        return {
            "kind": self.kind,
            "size": self.size,
            "planes": self.n_planes,
            "dims": self.dims,
            "through": self.through,
            "half_widths": self.half_widths.tolist(),
        }


def grid_kind(input_size: int) -> GridKind:
    """The layout for an input of ``input_size`` numbers: line (1), box (2), random planes (more)."""
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    return "line" if input_size == 1 else "box" if input_size == 2 else "planes"


def make_grid(
    input_size: int,
    size: int,
    n_planes: int,
    seed: int,
    data: torch.Tensor | None = None,
    spread: float = DEFAULT_SPREAD,
) -> Grid:
    """The grid the simplicity probe evaluates on (layout by ``grid_kind``; see the module docstring).

    Args:
        input_size: D, the number of input values (an image's ``C * H * W``).
        size: G, points per axis (>= 2).
        n_planes: planes for the ``planes`` layout (>= 1); the line and box layouts have one grid.
        seed: seeds the plane origins and directions.
        data: reference points ``(N, ...)`` whose flattened rows have D values (the test inputs), or
            None for ``N(0, I)``.
        spread: half-widths in standard deviations (default 2).

    Returns:
        a ``Grid`` in float64 on the CPU.
    """
    if size < 2:
        raise ValueError(f"grid size must be at least 2, got {size}")
    if n_planes < 1:
        raise ValueError(f"n_planes must be at least 1, got {n_planes}")
    kind = grid_kind(input_size)
    reference = None
    if data is not None:
        reference = data.detach().reshape(data.shape[0], -1).to(device="cpu", dtype=torch.float64)
        if reference.shape[1] != input_size:
            raise ValueError(f"data rows have {reference.shape[1]} values, expected {input_size}")
        if reference.shape[0] == 0:
            reference = None
    if kind == "planes":
        return _random_planes(input_size, size, n_planes, seed, reference, spread)
    axes = torch.eye(input_size, dtype=torch.float64)
    if reference is None:
        origin = torch.zeros(input_size, dtype=torch.float64)
        std = torch.ones(input_size, dtype=torch.float64)
    else:
        origin = reference.mean(dim=0)
        std = _nonzero_std(reference)
    return Grid(
        kind=kind,
        size=size,
        origins=origin[None],
        directions=axes[None],
        half_widths=(spread * std)[None],
        through="origin" if reference is None else "data_mean",
    )


def _random_planes(
    input_size: int, size: int, n_planes: int, seed: int, reference: torch.Tensor | None, spread: float
) -> Grid:
    generator = torch.Generator().manual_seed(seed)
    # Orthonormal (u, v) per plane: QR of a Gaussian matrix gives a uniformly random 2-frame.
    gaussian = torch.randn(n_planes, input_size, 2, generator=generator, dtype=torch.float64)
    frames, _ = torch.linalg.qr(gaussian)
    directions = frames.transpose(1, 2).contiguous()  # (P, 2, D)
    if reference is None:
        origins = torch.randn(n_planes, input_size, generator=generator, dtype=torch.float64)
        half_widths = torch.full((n_planes, 2), spread, dtype=torch.float64)
        through = "standard_normal_points"
    else:
        n = reference.shape[0]
        # Distinct test points while there are enough, then repeats (with new directions).
        order = torch.randperm(n, generator=generator)
        index = order[torch.arange(n_planes) % n]
        origins = reference[index]
        projections = torch.einsum("nd,pkd->pkn", reference, directions)  # (P, 2, N)
        half_widths = spread * _nonzero_std(projections, dim=-1)
        through = "test_points"
    return Grid(
        kind="planes", size=size, origins=origins, directions=directions, half_widths=half_widths, through=through
    )


def _nonzero_std(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Population standard deviation along ``dim``, with 1 where it is 0 (the data do not vary there)."""
    std = values.std(dim=dim, correction=0)
    return torch.where(std > 0, std, torch.ones_like(std))
