"""Differentiable image resampling for the continuous spatial transforms (translate, rotate, scale).

``warp(x, rows, cols, padding)`` reads ``x`` at real-valued source coordinates with Keys' cubic
convolution (a = -1/2, the Catmull-Rom kernel). ``padding`` says what lies beyond the border, with
the names of ``torch.nn.functional.grid_sample`` (``PADDINGS``): ``zeros`` (the default), ``border``
(the edge pixel repeated), ``reflection`` (mirrored about the edge pixel's centre: pixel ``-1`` is
pixel ``1``, as ``F.pad(mode="reflect")`` and ``grid_sample(padding_mode="reflection",
align_corners=True)``), ``circular`` (wrap-around, as ``F.pad(mode="circular")``).

Why not ``torch.nn.functional.grid_sample``: it has no forward-mode derivative (``torch.func.jvp``
raises NotImplementedError for ``grid_sampler_2d``), and the Lie derivative is computed forward-mode.
Why cubic and not bilinear: at ``t = 0`` every sample point sits exactly on a pixel, where bilinear
interpolation has a kink, so ``d/dt`` would be a one-sided difference that disagrees with a central
finite difference. The Catmull-Rom interpolant is C1, passes through the pixel values, and its
derivative at a pixel is the central difference ``(x[i+1] - x[i-1]) / 2``: the generator of a
translation is therefore minus the central-difference image gradient (with the same padding beyond
the border), and integer translations and 90-degree rotations are exact pixel moves.

Coordinates are in pixels: row ``i``, column ``j`` is the centre of pixel ``(i, j)``.
"""

from __future__ import annotations

from typing import Literal

import torch

Padding = Literal["zeros", "border", "reflection", "circular"]
PADDINGS: tuple[str, ...] = ("zeros", "border", "reflection", "circular")


def padded_index(index: torch.Tensor, size: int, padding: Padding) -> torch.Tensor:
    """Where pixel ``index`` (any integer, also beyond ``[0, size)``) reads from under ``padding``.

    ``zeros`` clamps (the caller masks those reads to 0), ``border`` clamps, ``circular`` wraps,
    ``reflection`` folds back and forth about the edge pixels' centres (period ``2 (size - 1)``).
    """
    if padding in ("zeros", "border"):
        return index.clamp(0, size - 1)
    if padding == "circular":
        return index % size
    if padding == "reflection":
        if size == 1:
            return torch.zeros_like(index)
        period = 2 * (size - 1)
        folded = index % period
        return torch.where(folded >= size, period - folded, folded)
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


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


def warp(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, padding: Padding = "zeros") -> torch.Tensor:
    """``out[i, c, p, q] = X_i(rows[i, p, q], cols[i, p, q])`` with ``X_i`` the cubic interpolant of ``x[i, c]``.

    Args:
        x: images ``(n, C, H, W)``, floating point.
        rows, cols: source coordinates ``(n, H, W)`` in pixel units, same dtype as ``x``; they may
            carry forward-mode tangents (``torch.func.jvp``), which propagate to the output.
        padding: what neighbours outside the image hold (module docstring; default ``zeros``).

    Returns:
        ``(n, C, H, W)``.
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
            index = padded_index(r, height, padding) * width + padded_index(c, width, padding)
            values = torch.gather(flat, 2, index.reshape(n, 1, height * width).expand(n, channels, height * width))
            weight = row_w[a] * col_w[b]
            if padding == "zeros":
                weight = weight * (r_inside & (c >= 0) & (c < width)).to(x.dtype)
            out = out + weight.unsqueeze(1) * values.reshape(x.shape)
    return out


def pixel_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates relative to the image centre, each ``(H, W)``."""
    rows = torch.arange(height, dtype=dtype, device=device) - (height - 1) / 2
    cols = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
    return torch.meshgrid(rows, cols, indexing="ij")


def affine_warp(x: torch.Tensor, inverse: torch.Tensor, shift: torch.Tensor, padding: Padding = "zeros") -> torch.Tensor:
    """Move the content of ``x`` by the affine map ``p -> A p + s`` about the image centre.

    Output pixel ``p`` (centred coordinates, ``(col, row)`` order) reads the input at
    ``A^-1 (p - s)``.

    Args:
        x: images ``(n, C, H, W)``.
        inverse: ``A^-1`` per image, ``(n, 2, 2)`` acting on ``(col, row)`` vectors.
        shift: ``s`` per image, ``(n, 2)`` as ``(col, row)`` pixels.
        padding: beyond the border (``warp``; default ``zeros``).
    """
    height, width = x.shape[-2:]
    rows, cols = pixel_grid(height, width, x.dtype, x.device)
    px = cols.unsqueeze(0) - shift[:, 0, None, None]
    py = rows.unsqueeze(0) - shift[:, 1, None, None]
    src_cols = inverse[:, 0, 0, None, None] * px + inverse[:, 0, 1, None, None] * py
    src_rows = inverse[:, 1, 0, None, None] * px + inverse[:, 1, 1, None, None] * py
    return warp(x, src_rows + (height - 1) / 2, src_cols + (width - 1) / 2, padding)


def central_gradient(x: torch.Tensor, padding: Padding = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    """``(d/drow, d/dcol)`` of images ``(..., H, W)`` by central differences, ``padding`` beyond the border.

    This is the exact derivative of ``warp``'s interpolant (with the same ``padding``) at the pixel
    centres, so moving the sample points with velocity ``(v_row, v_col)`` changes the image at rate
    ``v_row * d/drow + v_col * d/dcol`` there: the closed form of a spatial transform's generator.
    """
    height, width = x.shape[-2:]
    if padding == "zeros":
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    else:
        rows = padded_index(torch.arange(-1, height + 1, device=x.device), height, padding)
        cols = padded_index(torch.arange(-1, width + 1, device=x.device), width, padding)
        padded = x[..., rows[:, None], cols]
    d_row = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    d_col = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    return d_row, d_col
