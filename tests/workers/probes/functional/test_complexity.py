"""Known answers and independent numpy references for the grid complexity metrics."""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre

from workers.probes.functional.complexity import (
    CALIBRATION_FREQUENCIES,
    binarize_at_median,
    calibration_signals,
    flatten_near_constant,
    frequency_radii,
    lz76_phrase_count,
    lz_complexity,
    max_radius,
    mean_frequency,
    poly_order,
)

# ----------------------------------------------------------------------------- references


def mean_frequency_reference(f: np.ndarray, window: str) -> float:
    """Plain numpy, one grid, coefficient by coefficient."""
    f = np.asarray(f, dtype=np.float64)
    if np.ptp(f) == 0:
        return 0.0
    f = f - f.mean()
    g = f.shape[0]
    if window == "hann":
        w = np.hanning(g)
        f = f * (w if f.ndim == 1 else np.outer(w, w))
    spectrum = np.abs(np.fft.fft(f) if f.ndim == 1 else np.fft.fft2(f))
    k = np.fft.fftfreq(g, 1.0 / g)
    if f.ndim == 1:
        radius = np.abs(k)
        r_max = g // 2
    else:
        radius = np.rint(np.sqrt(k[:, None] ** 2 + k[None, :] ** 2))
        r_max = np.rint(np.sqrt(2) * (g // 2))
    weights = spectrum[radius > 0]
    return float((weights * radius[radius > 0]).sum() / weights.sum() / r_max)


def poly_order_reference(f: np.ndarray, max_degree: int) -> float:
    """Full tensor design matrix and lstsq (no factorisation), energy = c^2 * mean(column^2)."""
    f = np.asarray(f, dtype=np.float64)
    x = np.linspace(-1, 1, f.shape[0])
    if f.ndim == 1:
        design = legendre.legvander(x, max_degree)
        degrees = np.arange(max_degree + 1)
    else:
        xx, yy = np.meshgrid(x, x, indexing="ij")
        design = legendre.legvander2d(xx.ravel(), yy.ravel(), [max_degree, max_degree])
        i, j = np.meshgrid(np.arange(max_degree + 1), np.arange(max_degree + 1), indexing="ij")
        degrees = (i + j).ravel()
    coefficients = np.linalg.lstsq(design, f.ravel(), rcond=None)[0]
    energy = coefficients**2 * (design**2).mean(axis=0)
    keep = degrees > 0
    return float((energy[keep] * degrees[keep]).sum() / energy[keep].sum())


def lz76_kaspar_schuster(s) -> int:
    """Kaspar & Schuster (1987), the textbook loop: independent of the bytes.find implementation."""
    s = list(s)
    n = len(s)
    if n < 2:
        return n
    i, k, l, c, k_max = 0, 1, 1, 1, 1
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                c += 1
                break
        else:
            k_max = max(k, k_max)
            i += 1
            if i == l:
                c += 1
                l += k_max
                if l + 1 > n:
                    break
                i, k, k_max = 0, 1, 1
            else:
                k = 1
    return c


def grid(g: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-1, 1, g)
    return np.meshgrid(x, x, indexing="ij")


def t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------- mean_frequency


@pytest.mark.parametrize("g", [16, 64])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_unwindowed_cosine_scores_k_over_r_max(g, k):
    n = np.arange(g)
    profile = np.cos(2 * np.pi * k * n / g)
    assert mean_frequency(t(profile), grid_dims=1, window="none").item() == pytest.approx(k / (g // 2), abs=1e-12)
    plane = np.outer(profile, np.ones(g))
    r_max = max_radius(g, 2)
    assert r_max == round(g / math.sqrt(2))
    assert mean_frequency(t(plane), window="none").item() == pytest.approx(k / r_max, abs=1e-12)
    # The same wave along the other axis, and the window moves it by less than one bin.
    assert mean_frequency(t(plane.T), window="none").item() == pytest.approx(k / r_max, abs=1e-12)
    assert abs(mean_frequency(t(plane)).item() * r_max - k) < 1.0


def test_windowed_ramp_is_low_and_the_unwindowed_ramp_leaks():
    x, y = grid(64)
    windowed = mean_frequency(t(1.0 + x)).item()
    unwindowed = mean_frequency(t(1.0 + x), window="none").item()
    assert windowed < 0.04
    assert unwindowed == pytest.approx(0.191, abs=0.002)  # the edge step's 1/k spectrum
    x256, _ = grid(256)
    assert mean_frequency(t(x256), window="none").item() == pytest.approx(0.145, abs=0.002)  # docs/methods.md §3: 0.145
    assert mean_frequency(t(x256)).item() < 0.01
    # A diagonal ramp too.
    assert mean_frequency(t(x + y)).item() < 0.04


def test_white_noise_scores_high():
    rng = np.random.default_rng(0)
    scores = mean_frequency(t(rng.standard_normal((8, 64, 64)))).numpy()
    assert np.all((scores > 0.52) & (scores < 0.57))
    line = mean_frequency(t(rng.standard_normal((8, 256))), grid_dims=1).numpy()
    assert np.all((line > 0.45) & (line < 0.55))


@pytest.mark.parametrize("window", ["hann", "none"])
def test_mean_frequency_matches_numpy_reference_batched(window):
    rng = np.random.default_rng(1)
    x, y = grid(32)
    smooth = np.sin(3 * x + 2 * y**2)[None, None] * rng.uniform(0.5, 2, (3, 2, 1, 1))
    values = smooth + 0.3 * rng.standard_normal((3, 2, 32, 32)) * rng.uniform(0, 1, (3, 2, 1, 1))
    got = mean_frequency(t(values), window=window).numpy()
    assert got.shape == (3, 2)
    expected = np.array([[mean_frequency_reference(values[a, b], window) for b in range(2)] for a in range(3)])
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    lines = values[:, :, 0, :]
    expected_1d = np.array([[mean_frequency_reference(lines[a, b], window) for b in range(2)] for a in range(3)])
    np.testing.assert_allclose(mean_frequency(t(lines), grid_dims=1, window=window).numpy(), expected_1d, rtol=1e-10)


def test_mean_frequency_ignores_offset_and_scale_and_takes_float32():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((16, 16))
    base = mean_frequency(t(f)).item()
    assert mean_frequency(t(5.0 - 3.0 * f)).item() == pytest.approx(base, rel=1e-12)
    assert mean_frequency(torch.tensor(f, dtype=torch.float32)).item() == pytest.approx(base, rel=1e-5)


def test_frequency_radii_bins():
    r = frequency_radii(8, 2).numpy()
    assert r[0, 0] == 0 and r[0, 3] == 3 and r[3, 4] == 5 and r[4, 4] == round(math.hypot(4, 4))
    assert r.max() == max_radius(8, 2)
    np.testing.assert_array_equal(frequency_radii(8, 1).numpy(), [0, 1, 2, 3, 4, 3, 2, 1])


# ----------------------------------------------------------------------------- poly_order


@pytest.mark.parametrize("degree", [1, 2, 5])
def test_single_legendre_polynomial_scores_its_degree(degree):
    x, y = grid(32)
    p = legendre.Legendre.basis(degree)
    assert poly_order(t(p(x))).item() == pytest.approx(degree, abs=1e-9)
    assert poly_order(t(3.0 + 2.0 * p(y))).item() == pytest.approx(degree, abs=1e-9)
    assert poly_order(t(p(x[:, 0])), grid_dims=1).item() == pytest.approx(degree, abs=1e-9)


def test_product_scores_total_degree_and_sum_scores_energy_weighted_mean():
    x, y = grid(32)
    p1, p2, p3 = (legendre.Legendre.basis(d) for d in (1, 2, 3))
    assert poly_order(t(p1(x) * p2(y))).item() == pytest.approx(3.0, abs=1e-9)
    f = p1(x) + p3(y)
    # Energies of the two terms on this grid (coefficients are exactly 1).
    e1, e3 = np.mean(p1(x[:, 0]) ** 2), np.mean(p3(x[:, 0]) ** 2)
    assert poly_order(t(f)).item() == pytest.approx((1 * e1 + 3 * e3) / (e1 + e3), abs=1e-9)


@pytest.mark.parametrize("max_degree", [4, 8])
def test_poly_order_matches_full_lstsq_reference(max_degree):
    rng = np.random.default_rng(3)
    x, y = grid(24)
    values = np.stack([np.tanh(3 * x * y + 1), np.exp(-4 * (x**2 + y**2)), rng.standard_normal((24, 24))])
    got = poly_order(t(values), max_degree=max_degree).numpy()
    np.testing.assert_allclose(got, [poly_order_reference(v, max_degree) for v in values], rtol=1e-9)
    lines = values[:, 5, :]
    np.testing.assert_allclose(
        poly_order(t(lines), grid_dims=1, max_degree=max_degree).numpy(),
        [poly_order_reference(v, max_degree) for v in lines],
        rtol=1e-9,
    )


def white_noise_expected_order(size: int, max_degree: int, grid_dims: int) -> float:
    """Energy-weighted degree of the *expected* energies: E[c_i^2] m_i = sigma^2 [(A^T A)^-1]_ii m_i."""
    design = legendre.legvander(np.linspace(-1, 1, size), max_degree)
    e = np.diag(np.linalg.inv(design.T @ design)) * (design**2).mean(axis=0)
    degree = np.arange(max_degree + 1)
    if grid_dims == 2:
        e, degree = np.outer(e, e).ravel(), np.add.outer(degree, degree).ravel()
    return float((e * degree)[degree > 0].sum() / e[degree > 0].sum())


def test_white_noise_poly_order_is_the_basis_mean_degree():
    rng = np.random.default_rng(4)
    score = poly_order(t(rng.standard_normal((32, 64, 64))), max_degree=8).numpy()
    # About equal energy per term: near 8, the mean of i + j over the (9 x 9) basis (8.23 on this grid).
    assert abs(score.mean() - white_noise_expected_order(64, 8, 2)) < 0.2
    assert np.all(np.abs(score - 8.0) < 1.5)
    lines = poly_order(t(rng.standard_normal((64, 256))), grid_dims=1, max_degree=8).numpy()
    assert abs(lines.mean() - white_noise_expected_order(256, 8, 1)) < 0.3  # 4.50; the mean of i over 0..8 is 4


def test_poly_order_rejects_degrees_the_grid_cannot_fit():
    with pytest.raises(ValueError, match="max_degree"):
        poly_order(torch.zeros(8, 8), max_degree=8)


# ----------------------------------------------------------------------------- lz_complexity


def test_lz76_matches_kaspar_schuster_reference():
    rng = np.random.default_rng(5)
    cases = [[], [0], [1], [0, 0], [0, 1], [0, 0, 0, 1], [0, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1, 0, 1, 1, 1, 0]]
    for n in (3, 7, 50, 300, 2000):
        cases += [rng.integers(0, 2, n), (rng.random(n) < 0.05).astype(int), (np.arange(n) % 7 < 3).astype(int)]
    for case in cases:
        assert lz76_phrase_count(np.asarray(case, dtype=np.uint8)) == lz76_kaspar_schuster(case), case
    # Kaspar & Schuster's worked example: 0 | 001 | 10 | 100 | 1000 | 101
    assert lz76_phrase_count(np.array([int(c) for c in "0001101001000101"], dtype=np.uint8)) == 6


def test_lz_of_constant_is_minimal_and_of_random_bits_near_one():
    n = 64 * 64
    constant = lz_complexity(torch.ones(3, 64, 64)).numpy()
    np.testing.assert_allclose(constant, 2 * math.log2(n) / n)
    rng = np.random.default_rng(6)
    random = lz_complexity(t(rng.standard_normal((4, 64, 64)))).numpy()
    assert np.all((random > 0.95) & (random < 1.12))
    smooth = lz_complexity(t(grid(64)[0] ** 2)).item()
    assert smooth < 0.05


def test_lz_complexity_reads_rows_in_order_and_binarises_at_the_median():
    rng = np.random.default_rng(7)
    values = rng.standard_normal((2, 16, 16))
    bits = binarize_at_median(t(values)).numpy()
    assert bits.shape == (2, 256)
    for b in range(2):
        flat = values[b].ravel()  # row-major
        np.testing.assert_array_equal(bits[b], flat > np.sort(flat)[127])  # lower median of 256
        expected = lz76_kaspar_schuster(bits[b].astype(int)) * 8 / 256
        assert lz_complexity(t(values))[b].item() == pytest.approx(expected)


# ----------------------------------------------------------------------------- conventions, calibration


def test_constant_and_non_finite_grids():
    values = torch.zeros(3, 16, 16, dtype=torch.float64)
    values[1] = torch.linspace(0, 1, 16)[:, None]
    values[2, 3, 4] = math.nan
    for metric in (mean_frequency, poly_order):
        out = metric(values)
        assert out[0].item() == 0.0 and out[1].item() > 0 and math.isnan(out[2].item())
    lz = lz_complexity(values)
    assert lz[0].item() == pytest.approx(2 * 8 / 256) and math.isnan(lz[2].item())


def test_flatten_near_constant_only_touches_float_noise():
    rng = np.random.default_rng(8)
    values = t(rng.standard_normal((2, 16, 16)))
    values[0] = 3.0 + 1e-9 * values[0]
    flattened = flatten_near_constant(values)
    assert torch.all(flattened[0] == flattened[0, 0, 0])
    assert torch.equal(flattened[1], values[1])
    assert mean_frequency(flattened)[0].item() == 0.0 and mean_frequency(values)[0].item() > 0.5


def test_calibration_signals_score_as_documented():
    signals = calibration_signals(64, 2)
    assert list(signals) == ["constant", "ramp", *(f"cos_{k}" for k in CALIBRATION_FREQUENCIES), "white_noise"]
    r_max = max_radius(64, 2)
    for k in CALIBRATION_FREQUENCIES:
        assert mean_frequency(signals[f"cos_{k}"][1], window="none").item() == pytest.approx(k / r_max, abs=1e-12)
    assert poly_order(signals["ramp"][1]).item() == pytest.approx(1.0)
    assert mean_frequency(signals["ramp"][1]).item() < mean_frequency(signals["cos_1"][1]).item() + 0.01
    assert mean_frequency(signals["white_noise"][1]).item() > 0.5
    assert torch.equal(calibration_signals(64, 2)["white_noise"][1], signals["white_noise"][1])  # fixed seed
    line = calibration_signals(16, 1)
    assert line["cos_8"][1].shape == (16,)
    assert mean_frequency(line["cos_8"][1], grid_dims=1, window="none").item() == pytest.approx(1.0)
