"""Complexity of a function sampled on a regular grid (docs/methods.md §3; Teney et al., "Neural Redshift:
Random Networks are not Random Functions", CVPR 2024, https://arxiv.org/abs/2403.02241).

Pure functions on tensors. A *grid* is the last axis (``grid_dims=1``: ``(..., G)``) or the last two
axes (``grid_dims=2``: ``(..., G, G)``) of ``values``; every leading axis is a batch axis, so one call
scores e.g. ``(members, channels, planes, G, G)`` at once. Each function returns a float64 tensor of
the leading shape. Three measures, each higher for more complex functions:

- ``mean_frequency``: where the function's Fourier energy sits, in ``[0, 1]``.
- ``poly_order``: the energy-weighted mean total degree of a Legendre fit, in ``[0, grid_dims * max_degree]``.
- ``lz_complexity``: Lempel-Ziv (1976) complexity of the sign pattern around the median, about 1
  for random bits.

Conventions for degenerate grids, the same in all three: a grid whose values are all equal scores 0
frequency and 0 degree (it has no non-constant part) and binarises to all zeros; a grid containing
NaN or inf scores NaN. Values that differ only by float rounding are *not* equal here: callers that
evaluate networks in float32 should first apply ``flatten_near_constant``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from numpy.polynomial import legendre

Window = Literal["hann", "none"]
GridDims = Literal[1, 2]

# float32 networks carry relative rounding noise of ~1e-7 per operation; a grid whose spread is below
# this fraction of its magnitude holds no signal the metrics should score (a dead ReLU net, say).
NEAR_CONSTANT_RTOL = 1e-5


def _check_grid(values: torch.Tensor, grid_dims: int) -> int:
    """The grid size G, after checking that the last ``grid_dims`` axes form a G or G x G grid."""
    if grid_dims not in (1, 2):
        raise ValueError(f"grid_dims must be 1 or 2, got {grid_dims}")
    if values.ndim < grid_dims:
        raise ValueError(f"values of shape {tuple(values.shape)} have fewer than {grid_dims} axes")
    size = values.shape[-1]
    if grid_dims == 2 and values.shape[-2] != size:
        raise ValueError(f"a 2-D grid must be square, got {tuple(values.shape[-2:])}")
    if size < 2:
        raise ValueError(f"a grid needs at least 2 points per axis, got {size}")
    return size


def _grid_axes(grid_dims: int) -> tuple[int, ...]:
    return (-1,) if grid_dims == 1 else (-2, -1)


def _is_constant(values: torch.Tensor, grid_dims: int) -> torch.Tensor:
    flat = values.flatten(start_dim=-grid_dims)
    return flat.amax(dim=-1) == flat.amin(dim=-1)


def _is_finite(values: torch.Tensor, grid_dims: int) -> torch.Tensor:
    return torch.isfinite(values).flatten(start_dim=-grid_dims).all(dim=-1)


def flatten_near_constant(
    values: torch.Tensor, grid_dims: GridDims = 2, rtol: float = NEAR_CONSTANT_RTOL
) -> torch.Tensor:
    """``values`` with every grid whose spread is float noise replaced by an exactly constant grid.

    A grid counts as near-constant when ``max - min <= rtol * max|value|`` over the grid (default
    ``rtol = 1e-5``, about 100 float32 ulps); it is replaced by its mean, so the metrics report the
    constant-grid values (0, 0, minimal LZ) instead of scoring rounding noise. Other grids, and grids
    with NaN or inf, are returned unchanged. Returns a new tensor of the same shape and dtype.
    """
    _check_grid(values, grid_dims)
    axes = _grid_axes(grid_dims)
    spread = values.amax(dim=axes) - values.amin(dim=axes)
    magnitude = values.abs().amax(dim=axes)
    flat = (spread <= rtol * magnitude) & torch.isfinite(spread)
    means = values.mean(dim=axes, keepdim=True).expand_as(values)
    mask = flat.reshape(flat.shape + (1,) * grid_dims).expand_as(values)
    return torch.where(mask, means, values)


def hann_window(
    size: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """The symmetric Hann window ``0.5 - 0.5 cos(2 pi n / (G - 1))``, zero at both ends (numpy's ``hanning``).

    Symmetric rather than periodic: zero at *both* grid edges, so a windowed ramp is continuous when
    the FFT wraps it around and no edge step leaks into high frequencies.
    """
    return torch.hann_window(size, periodic=False, dtype=dtype, device=device)


def frequency_radii(size: int, grid_dims: GridDims = 2, device: torch.device | str | None = None) -> torch.Tensor:
    """Radial bin of every FFT coefficient: ``round(|k|)`` for integer frequencies ``k`` (fftfreq order).

    Shape ``(G,)`` or ``(G, G)``, float64. The largest bin is ``max_radius(size, grid_dims)``.
    """
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64, device=device)
    if grid_dims == 1:
        return k.abs()
    return torch.round(torch.hypot(k[:, None], k[None, :]))


def max_radius(size: int, grid_dims: GridDims = 2) -> int:
    """Largest radial bin on a ``size``-point grid: ``G // 2`` in 1-D, ``round(G / sqrt 2)`` in 2-D (the corner)."""
    return size // 2 if grid_dims == 1 else int(round(math.hypot(size // 2, size // 2)))


def mean_frequency(values: torch.Tensor, grid_dims: GridDims = 2, window: Window = "hann") -> torch.Tensor:
    """Magnitude-weighted mean radial frequency of each grid, divided by the largest radius.

    Idea: smooth functions keep their Fourier magnitude near the origin, complex ones spread it out.
    Per grid: subtract the mean, multiply by the window (``"hann"``: the separable product of
    ``hann_window`` on each axis; ``"none"``: no window), take the FFT's magnitude ``|F(k)|``, bin each
    coefficient at radius ``r(k) = round(|k|)`` (integer frequencies, cycles per grid), drop the DC bin,
    and return ``sum_k r(k) |F(k)| / (r_max * sum_k |F(k)|)`` with ``r_max = max_radius(G, grid_dims)``.
    So ``cos(2 pi k n / G)`` along one axis scores exactly ``k / r_max`` without a window; white noise
    scores about 0.54 (2-D) or 0.5 (1-D).

    Why the window: the FFT treats the grid as periodic, so a function whose two edges differ (a plain
    ramp) has a jump at the wrap-around whose 1/k spectrum dominates: an unwindowed ramp scores about
    0.19 on a 64 x 64 grid (0.14 at 256) although it is the simplest non-constant function. The Hann
    window takes both edges to zero; the windowed ramp scores about 0.03 at G = 64 (Hann's own main
    lobe spans bins 0 and 1, which sets that floor).

    Args:
        values: real tensor ``(..., G)`` or ``(..., G, G)``.
        grid_dims: 1 or 2 (default 2).
        window: ``"hann"`` (default) or ``"none"``.

    Returns:
        float64 tensor of the leading shape, in ``[0, 1]``; 0 for constant grids, NaN for grids with
        NaN or inf.
    """
    size = _check_grid(values, grid_dims)
    if window not in ("hann", "none"):
        raise ValueError(f"window must be 'hann' or 'none', got {window!r}")
    x = values.to(torch.float64)
    axes = _grid_axes(grid_dims)
    finite = _is_finite(x, grid_dims)
    constant = _is_constant(x, grid_dims)
    x = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))
    x = x - x.mean(dim=axes, keepdim=True)
    if window == "hann":
        w = hann_window(size, device=x.device)
        x = x * (w if grid_dims == 1 else w[:, None] * w[None, :])
    magnitude = torch.fft.fftn(x, dim=axes).abs()
    radii = frequency_radii(size, grid_dims, device=x.device)
    magnitude = magnitude * (radii > 0)  # the DC bin carries the mean (and the window's), not shape
    total = magnitude.sum(dim=axes)
    weighted = (magnitude * radii).sum(dim=axes)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    result = torch.where(total > 0, weighted / safe_total, torch.zeros_like(total)) / max_radius(size, grid_dims)
    result = torch.where(constant, torch.zeros_like(result), result)
    return torch.where(finite, result, torch.full_like(result, math.nan))


def legendre_design(size: int, max_degree: int) -> np.ndarray:
    """Legendre polynomials ``P_0 .. P_max_degree`` at ``size`` equispaced points of ``[-1, 1]``: ``(G, D+1)``."""
    return legendre.legvander(np.linspace(-1.0, 1.0, size), max_degree)


def poly_order(values: torch.Tensor, grid_dims: GridDims = 2, max_degree: int = 8) -> torch.Tensor:
    """Energy-weighted mean total degree of a least-squares Legendre fit on each grid.

    Idea: a smooth function is mostly low-degree polynomial. The grid's axes are mapped to
    ``[-1, 1]`` (equispaced, endpoints included); the fit uses the tensor basis
    ``P_i(x) P_j(y)``, ``0 <= i, j <= max_degree`` (1-D: ``P_i(x)``). Because the basis is a tensor
    product, its least-squares solution factorises: ``C = A^+ F (A^+)^T`` with ``A = legendre_design``.
    The energy of term ``(i, j)`` is ``C_ij^2`` times the grid mean of ``(P_i(x) P_j(y))^2``; the result
    is ``sum (i + j) E_ij / sum E_ij`` over all terms but the constant. So ``P_2(x)`` alone gives
    exactly 2 and ``P_1(x) P_2(y)`` gives 3. Energy above ``max_degree`` is not seen: white noise,
    which puts about equal energy on every term, scores about the basis' mean degree, ``grid_dims *
    max_degree / 2`` (8.2 for the default 2-D fit at G = 64: the sampled basis is not exactly
    orthogonal); highly oscillating functions score near that too.

    Args:
        values: real tensor ``(..., G)`` or ``(..., G, G)``.
        grid_dims: 1 or 2 (default 2).
        max_degree: highest degree per axis (default 8); at most ``G - 1``. Keep it at most ``G // 2``:
            equispaced Legendre fits are well conditioned there (condition number < 10 for G >= 16)
            and grow ill-conditioned towards ``G - 1``.

    Returns:
        float64 tensor of the leading shape; 0 for constant grids, NaN for grids with NaN or inf.
    """
    size = _check_grid(values, grid_dims)
    if not 1 <= max_degree <= size - 1:
        raise ValueError(f"max_degree must be in [1, {size - 1}] for a grid of {size} points, got {max_degree}")
    design = legendre_design(size, max_degree)
    pinv = torch.as_tensor(np.linalg.pinv(design), dtype=torch.float64, device=values.device)  # (D+1, G)
    mean_square = torch.as_tensor((design**2).mean(axis=0), dtype=torch.float64, device=values.device)
    degrees = torch.arange(max_degree + 1, dtype=torch.float64, device=values.device)
    x = values.to(torch.float64)
    finite = _is_finite(x, grid_dims)
    constant = _is_constant(x, grid_dims)
    x = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))
    if grid_dims == 1:
        coefficients = x @ pinv.T
        energy = coefficients**2 * mean_square
        total_degree = degrees
    else:
        coefficients = pinv @ x @ pinv.T
        energy = coefficients**2 * (mean_square[:, None] * mean_square[None, :])
        total_degree = degrees[:, None] + degrees[None, :]
    axes = _grid_axes(grid_dims)
    non_constant = total_degree > 0
    total = (energy * non_constant).sum(dim=axes)
    weighted = (energy * total_degree).sum(dim=axes)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    result = torch.where(total > 0, weighted / safe_total, torch.zeros_like(total))
    result = torch.where(constant, torch.zeros_like(result), result)
    return torch.where(finite, result, torch.full_like(result, math.nan))


def lz76_phrase_count(bits: bytes | np.ndarray) -> int:
    """Number of phrases in the Lempel-Ziv (1976) parsing of a sequence.

    Each phrase is the shortest substring, starting where the previous phrase ended, that does not
    occur earlier: it extends the longest prefix of the rest that has an occurrence starting at an
    earlier position (overlap allowed) by one symbol; an unfinished last phrase counts as one. This is
    the count of Kaspar & Schuster (Phys. Rev. A 36, 842, 1987): ``0001`` parses as ``0 | 001`` (2).

    The search for the longest earlier occurrence walks the candidate start ``j`` forward and only
    calls ``bytes.find`` when the current candidate stops matching, so a phrase costs one C-level
    scan of the prefix instead of the algorithm's quadratic Python loop.

    Args:
        bits: the sequence as bytes, or a 1-D array of small non-negative integers (e.g. bools).

    Returns:
        the phrase count (0 for an empty sequence).
    """
    data = bits if isinstance(bits, bytes) else np.ascontiguousarray(bits, dtype=np.uint8).tobytes()
    n = len(data)
    find = data.find
    start = phrases = 0
    while start < n:
        length = 0  # data[j : j + length] == data[start : start + length] for the candidate j < start
        j = 0
        while start + length < n:
            if j < start and data[j + length] == data[start + length]:
                length += 1
                continue
            # Next earlier start whose window matches one symbol more; it must begin before `start`.
            j = find(data[start : start + length + 1], j + 1, start + length)
            if j == -1:
                break
            length += 1
        phrases += 1
        start += length + 1
    return phrases


def binarize_at_median(values: torch.Tensor, grid_dims: GridDims = 2) -> torch.Tensor:
    """``values > median`` per grid, flattened in row-major order: bool ``(..., G**grid_dims)``.

    The median is ``torch.median``'s, the lower of the two middle values for an even count.
    """
    _check_grid(values, grid_dims)
    flat = values.flatten(start_dim=-grid_dims) if grid_dims == 2 else values
    return flat > flat.median(dim=-1, keepdim=True).values


def lz_complexity(values: torch.Tensor, grid_dims: GridDims = 2) -> torch.Tensor:
    """Normalised Lempel-Ziv complexity of each grid's sign pattern around its median.

    Per grid: binarise at the median (``binarize_at_median``; 2-D grids are read row by row, i.e. the
    first grid axis is the slow one), count LZ76 phrases ``c`` (``lz76_phrase_count``) and return
    ``c log2(n) / n`` with ``n = G**grid_dims``. Random bits score about 1 (1.03 at n = 4096), a
    constant grid ``2 log2(n) / n`` (phrases ``0 | 00...0``), smooth functions little more than that.

    Args:
        values: real tensor ``(..., G)`` or ``(..., G, G)``; any device (the parse runs on the CPU).
        grid_dims: 1 or 2 (default 2).

    Returns:
        float64 tensor of the leading shape (on the CPU); NaN for grids with NaN or inf.
    """
    _check_grid(values, grid_dims)
    finite = _is_finite(values, grid_dims).cpu()
    bits = binarize_at_median(values, grid_dims).cpu().numpy().astype(np.uint8)
    n = bits.shape[-1]
    leading = bits.shape[:-1]
    rows = bits.reshape(-1, n)
    counts = np.fromiter((lz76_phrase_count(row.tobytes()) for row in rows), dtype=np.float64, count=rows.shape[0])
    result = torch.from_numpy(np.asarray(counts * (math.log2(n) / n)).reshape(leading))
    return torch.where(finite, result, torch.full_like(result, math.nan))


CALIBRATION_FREQUENCIES = (1, 2, 4, 8)
CALIBRATION_NOISE_SEED = 0


def calibration_signals(size: int, grid_dims: GridDims = 2) -> dict[str, tuple[str, torch.Tensor]]:
    """Reference functions on a ``size``-point grid, to read the metrics' scale against.

    Returns ``{name: (description, values)}`` with float64 values of shape ``(G,)`` or ``(G, G)``, all
    varying along the first grid axis only (except the noise), in this order: ``constant``; ``ramp``
    (``1 + x``, ``x`` in ``[-1, 1]``); ``cos_k`` for k in ``CALIBRATION_FREQUENCIES``
    (``cos(2 pi k n / G)``, k cycles over the grid, so unwindowed ``mean_frequency`` is ``k / r_max``);
    ``white_noise`` (standard normal, a fixed seed, so every report shows the same numbers).
    """
    if grid_dims not in (1, 2):
        raise ValueError(f"grid_dims must be 1 or 2, got {grid_dims}")
    shape = (size,) * grid_dims

    def along_first_axis(profile: torch.Tensor) -> torch.Tensor:
        return profile if grid_dims == 1 else profile[:, None].expand(shape).clone()

    n = torch.arange(size, dtype=torch.float64)
    x = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
    signals = {
        "constant": ("constant 1", torch.ones(shape, dtype=torch.float64)),
        "ramp": ("1 + x, a linear ramp along the first axis", along_first_axis(1.0 + x)),
    }
    for k in CALIBRATION_FREQUENCIES:
        if k <= size // 2:
            signals[f"cos_{k}"] = (
                f"cos(2 pi {k} n / G) along the first axis ({k} cycles)",
                along_first_axis(torch.cos(2 * math.pi * k * n / size)),
            )
    generator = torch.Generator().manual_seed(CALIBRATION_NOISE_SEED)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    signals["white_noise"] = ("i.i.d. standard normal values", noise)
    return signals
