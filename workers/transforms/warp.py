"""Differentiable image resampling for the continuous spatial transforms (translate, rotate, scale).

``warp(x, rows, cols)`` reads ``x`` at real-valued source coordinates with Keys' cubic convolution
(a = -1/2, the Catmull-Rom kernel) and zero padding outside the image.

Why not ``torch.nn.functional.grid_sample``: it has no forward-mode derivative (``torch.func.jvp``
raises NotImplementedError for ``grid_sampler_2d``), and the Lie derivative is computed forward-mode.
Why cubic and not bilinear: at ``t = 0`` every sample point sits exactly on a pixel, where bilinear
interpolation has a kink, so ``d/dt`` would be a one-sided difference that disagrees with a central
finite difference. The Catmull-Rom interpolant is C1, passes through the pixel values, and its
derivative at a pixel is the central difference ``(x[i+1] - x[i-1]) / 2``: the generator of a
translation is therefore minus the central-difference image gradient (zero beyond the border), and
integer translations and 90-degree rotations are exact pixel moves.

Coordinates are in pixels: row ``i``, column ``j`` is the centre of pixel ``(i, j)``.
"""

from __future__ import annotations

import torch


def keys_weights(frac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Catmull-Rom weights of the 4 neighbours at offsets -1, 0, 1, 2 for a fractional position in [0, 1).

    They sum to 1 and give ``(0, 1, 0, 0)`` at 0; polynomials in ``frac``, so differentiable.
    """
    f2 = frac * frac
    f3 = f2 * frac
    return (
        (-f3 + 2 * f2 - frac) / 2,
        (3 * f3 - 5 * f2 + 2) / 2,
        (-3 * f3 + 4 * f2 + frac) / 2,
        (f3 - f2) / 2,
    )


def warp(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``out[i, c, p, q] = X_i(rows[i, p, q], cols[i, p, q])`` with ``X_i`` the cubic interpolant of ``x[i, c]``.

    Args:
        x: images ``(n, C, H, W)``, floating point.
        rows, cols: source coordinates ``(n, H, W)`` in pixel units, same dtype as ``x``; they may
            carry forward-mode tangents (``torch.func.jvp``), which propagate to the output.

    Returns:
        ``(n, C, H, W)``; neighbours outside the image count as 0 (zero padding).
    """
    n, channels, height, width = x.shape
    row0, col0 = torch.floor(rows), torch.floor(cols)
    row_w, col_w = keys_weights(rows - row0), keys_weights(cols - col0)
    row0, col0 = row0.long(), col0.long()
    flat = x.reshape(n, channels, height * width)
    out = torch.zeros_like(x)
    for a in range(4):
        r = row0 + (a - 1)
        r_inside = (r >= 0) & (r < height)
        for b in range(4):
            c = col0 + (b - 1)
            inside = r_inside & (c >= 0) & (c < width)
            index = (r.clamp(0, height - 1) * width + c.clamp(0, width - 1)).reshape(n, 1, height * width)
            values = torch.gather(flat, 2, index.expand(n, channels, height * width)).reshape(x.shape)
            weight = (row_w[a] * col_w[b] * inside.to(x.dtype)).unsqueeze(1)
            out = out + weight * values
    return out


def pixel_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates relative to the image centre, each ``(H, W)``."""
    rows = torch.arange(height, dtype=dtype, device=device) - (height - 1) / 2
    cols = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
    return torch.meshgrid(rows, cols, indexing="ij")


def affine_warp(x: torch.Tensor, inverse: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move the content of ``x`` by the affine map ``p -> A p + s`` about the image centre.

    Output pixel ``p`` (centred coordinates, ``(col, row)`` order) reads the input at
    ``A^-1 (p - s)``.

    Args:
        x: images ``(n, C, H, W)``.
        inverse: ``A^-1`` per image, ``(n, 2, 2)`` acting on ``(col, row)`` vectors.
        shift: ``s`` per image, ``(n, 2)`` as ``(col, row)`` pixels.
    """
    height, width = x.shape[-2:]
    rows, cols = pixel_grid(height, width, x.dtype, x.device)
    px = cols.unsqueeze(0) - shift[:, 0, None, None]
    py = rows.unsqueeze(0) - shift[:, 1, None, None]
    src_cols = inverse[:, 0, 0, None, None] * px + inverse[:, 0, 1, None, None] * py
    src_rows = inverse[:, 1, 0, None, None] * px + inverse[:, 1, 1, None, None] * py
    return warp(x, src_rows + (height - 1) / 2, src_cols + (width - 1) / 2)


def central_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d/drow, d/dcol)`` of images ``(..., H, W)`` by central differences, zero beyond the border.

    This is the exact derivative of ``warp``'s interpolant at the pixel centres, so moving the
    sample points with velocity ``(v_row, v_col)`` changes the image at rate
    ``v_row * d/drow + v_col * d/dcol`` there: the closed form of a spatial transform's generator.
    """
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    d_row = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    d_col = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    return d_row, d_col
