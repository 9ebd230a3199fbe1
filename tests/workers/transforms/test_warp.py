import numpy as np
import pytest
import torch

from workers.transforms.warp import PADDINGS, affine_warp, central_gradient, keys_weights, padded_index, warp


def keys_kernel(s: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -1/2, written from its textbook definition."""
    s = np.abs(s)
    inner = 1.5 * s**3 - 2.5 * s**2 + 1
    outer = -0.5 * s**3 + 2.5 * s**2 - 4 * s + 2
    return np.where(s <= 1, inner, np.where(s < 2, outer, 0.0))


def reference_sample(image: np.ndarray, row: float, col: float) -> float:
    """Sum over every pixel of value * K(row - i) * K(col - j), zero outside the image."""
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(keys_kernel(row - rows) @ image @ keys_kernel(col - cols))


# np.pad's names for the same extensions: what lies beyond the border under each padding.
NUMPY_PAD_MODE = {"zeros": "constant", "border": "edge", "reflection": "reflect", "circular": "wrap"}


def reference_sample_padded(image: np.ndarray, row: float, col: float, padding: str, margin: int = 12) -> float:
    """The same kernel sum over an image first extended by ``margin`` pixels with ``np.pad``."""
    extended = np.pad(image, margin, mode=NUMPY_PAD_MODE[padding])
    return reference_sample(extended, row + margin, col + margin)


def test_weights_match_the_kernel_and_sum_to_one():
    frac = torch.linspace(0, 0.999, 17, dtype=torch.float64)
    weights = torch.stack(keys_weights(frac))
    expected = np.stack([keys_kernel(frac.numpy() - offset) for offset in (-1, 0, 1, 2)])
    np.testing.assert_allclose(weights.numpy(), expected, atol=1e-14)
    np.testing.assert_allclose(weights.sum(0).numpy(), 1.0, atol=1e-14)


def test_warp_matches_a_direct_kernel_sum_at_random_points():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 6, 7, generator=generator, dtype=torch.float64)
    rows = torch.rand(2, 6, 7, generator=generator, dtype=torch.float64) * 8 - 1  # some points outside
    cols = torch.rand(2, 6, 7, generator=generator, dtype=torch.float64) * 9 - 1
    out = warp(x, rows, cols).numpy()
    for i in range(2):
        for c in range(3):
            for p in range(6):
                for q in range(7):
                    expected = reference_sample(x[i, c].numpy(), rows[i, p, q].item(), cols[i, p, q].item())
                    assert out[i, c, p, q] == pytest.approx(expected, abs=1e-12)


def test_integer_coordinates_read_pixels_exactly():
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    axis = torch.arange(5.0, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    assert torch.equal(warp(x, rows[None], cols[None]), x)


def test_quadratic_images_are_reproduced_away_from_the_border():
    # Catmull-Rom reproduces polynomials up to degree 2 wherever all 4 neighbours are inside.
    i, j = np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij")
    image = torch.tensor(0.3 * i**2 - 0.2 * i * j + 0.1 * j + 1.0)[None, None]
    shift = torch.tensor([[0.37, -0.61]], dtype=torch.float64)
    out = affine_warp(image, torch.eye(2, dtype=torch.float64)[None], shift)[0, 0].numpy()
    si, sj = i - shift[0, 1].item(), j - shift[0, 0].item()
    expected = 0.3 * si**2 - 0.2 * si * sj + 0.1 * sj + 1.0
    np.testing.assert_allclose(out[2:-2, 2:-2], expected[2:-2, 2:-2], atol=1e-12)


def test_central_gradient_is_the_interpolant_derivative_at_pixels():
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    d_row, d_col = central_gradient(x)
    grid = torch.meshgrid(torch.arange(6.0, dtype=torch.float64), torch.arange(6.0, dtype=torch.float64), indexing="ij")
    h = 1e-6
    fd_col = (warp(x, grid[0][None], grid[1][None] + h) - warp(x, grid[0][None], grid[1][None] - h)) / (2 * h)
    fd_row = (warp(x, grid[0][None] + h, grid[1][None]) - warp(x, grid[0][None] - h, grid[1][None])) / (2 * h)
    torch.testing.assert_close(d_col, fd_col, atol=1e-5, rtol=0)
    torch.testing.assert_close(d_row, fd_row, atol=1e-5, rtol=0)


@pytest.mark.parametrize("padding", PADDINGS)
def test_each_padding_matches_a_kernel_sum_over_the_numpy_padded_image(padding):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 5, 4, generator=generator, dtype=torch.float64)
    # Points up to 3 pixels outside: the kernel then reaches 5 pixels beyond the border, more than
    # one period of the 4-pixel reflection, so the folding is exercised too.
    rows = torch.rand(1, 5, 4, generator=generator, dtype=torch.float64) * 11 - 3
    cols = torch.rand(1, 5, 4, generator=generator, dtype=torch.float64) * 10 - 3
    out = warp(x, rows, cols, padding).numpy()
    for c in range(2):
        for p in range(5):
            for q in range(4):
                expected = reference_sample_padded(x[0, c].numpy(), rows[0, p, q].item(), cols[0, p, q].item(), padding)
                assert out[0, c, p, q] == pytest.approx(expected, abs=1e-12), (c, p, q)


def test_padded_index_by_hand():
    index = torch.arange(-5, 9)
    assert padded_index(index, 4, "border").tolist() == [0] * 5 + [0, 1, 2, 3] + [3] * 5
    assert padded_index(index, 4, "circular").tolist() == [3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    # Mirrored about the edge pixels' centres (period 6): ... 2 1 | 0 1 2 3 | 2 1 0 1 ...
    assert padded_index(index, 4, "reflection").tolist() == [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert padded_index(index, 1, "reflection").tolist() == [0] * 14
    with pytest.raises(ValueError, match="padding"):
        padded_index(index, 4, "mirror")


@pytest.mark.parametrize("padding", PADDINGS)
def test_central_gradient_is_the_padded_interpolant_derivative_at_pixels(padding):
    x = torch.rand(1, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    d_row, d_col = central_gradient(x, padding)
    grid = torch.meshgrid(torch.arange(5.0, dtype=torch.float64), torch.arange(6.0, dtype=torch.float64), indexing="ij")
    h = 1e-6
    fd_col = (warp(x, grid[0][None], grid[1][None] + h, padding) - warp(x, grid[0][None], grid[1][None] - h, padding)) / (2 * h)
    fd_row = (warp(x, grid[0][None] + h, grid[1][None], padding) - warp(x, grid[0][None] - h, grid[1][None], padding)) / (2 * h)
    # Truncation error of the central difference ~ h^2 times the third derivative, rounding ~ eps / h.
    torch.testing.assert_close(d_col, fd_col, atol=1e-5, rtol=0)
    torch.testing.assert_close(d_row, fd_row, atol=1e-5, rtol=0)
