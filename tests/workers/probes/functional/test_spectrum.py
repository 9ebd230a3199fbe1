import numpy as np
import pytest
import torch

from tests.workers.probes.functional._reference import eigenvalues_numpy, fit_loop, fit_wwfit, metrics_reference
from workers.probes.functional.spectrum import (
    METRIC_NAMES,
    WW_FIT_THRESHOLD,
    spectra,
    spectral_metrics,
    svd_dtype,
    weight_matrices,
    weightwatcher_eigenvalue_scale,
    weightwatcher_skip_reason,
)


def matrix(kind: str, rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((rows, cols))
    return rng.standard_t(1.5, (rows, cols))  # heavy-tailed entries (tail index 1.5)


def metrics_of(w: np.ndarray, **kwargs):
    spectrum = spectra([torch.from_numpy(w).unsqueeze(0)])[0]
    return spectral_metrics(spectrum.eigenvalues, zero_tolerance=spectrum.zero_tolerance, **kwargs)


def assert_metrics_match(metrics, reference: dict, rtol: float) -> None:
    for key, expected in reference.items():
        got = getattr(metrics, key)
        if key == "n_tail":
            assert got == expected
        else:
            assert got == pytest.approx(expected, rel=rtol, abs=1e-12), key


CASES = [("gaussian", 120, 80, 0), ("gaussian", 300, 60, 1), ("student_t", 80, 150, 2), ("student_t", 200, 100, 3)]


@pytest.mark.parametrize("kind,rows,cols,seed", CASES)
def test_priorprobe_metrics_match_numpy_reference(kind, rows, cols, seed):
    w = matrix(kind, rows, cols, seed)
    lam = eigenvalues_numpy(w)
    reference = metrics_reference(lam, fit_loop(lam, min_tail=10))
    metrics = metrics_of(w, min_tail=10)
    assert metrics.n_eigs == min(rows, cols)
    assert metrics.skipped_reason is None
    assert_metrics_match(metrics, reference, rtol=1e-10)


@pytest.mark.parametrize("kind,rows,cols,seed", CASES)
def test_weightwatcher_metrics_match_numpy_reference(kind, rows, cols, seed):
    w = matrix(kind, rows, cols, seed)
    lam = eigenvalues_numpy(w)
    reference = metrics_reference(lam, fit_wwfit(lam[lam > WW_FIT_THRESHOLD]))
    assert_metrics_match(metrics_of(w, convention="weightwatcher"), reference, rtol=1e-10)


def test_known_answers_identity_and_rank_one():
    eye = metrics_of(np.eye(30))
    assert eye.stable_rank == pytest.approx(30.0)
    assert eye.entropy_rank == pytest.approx(30.0)
    assert eye.log_norm == pytest.approx(np.log10(30.0))
    assert eye.log_spectral_norm == pytest.approx(0.0, abs=1e-14)
    # A flat spectrum has no power-law tail: every tail is one repeated value.
    assert eye.alpha is None and eye.alpha_weighted is None and eye.log_alpha_norm is None
    assert "repeated value" in eye.skipped_reason

    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(40), rng.standard_normal(25)
    rank_one = metrics_of(np.outer(u, v))
    assert rank_one.stable_rank == pytest.approx(1.0)
    assert rank_one.entropy_rank == pytest.approx(1.0)
    assert rank_one.log_spectral_norm == pytest.approx(np.log10(u @ u * (v @ v)))
    assert rank_one.alpha is None and "1 non-zero eigenvalues" in rank_one.skipped_reason


def test_known_answers_diagonal_spectrum():
    # diag(sqrt(lambda)) has exactly the eigenvalues lambda.
    lam = np.geomspace(0.01, 100.0, 40)
    m = metrics_of(np.diag(np.sqrt(lam)), min_tail=5)
    p = lam / lam.sum()
    assert m.stable_rank == pytest.approx(lam.sum() / 100.0)
    assert m.entropy_rank == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert m.log_spectral_norm == pytest.approx(2.0)
    assert m.alpha_weighted == pytest.approx(2.0 * m.alpha)
    assert m.log_alpha_norm == pytest.approx(np.log10((lam**m.alpha).sum()))


def test_zero_matrix_has_no_metrics_and_says_why():
    m = metrics_of(np.zeros((20, 30)))
    assert m.n_eigs == 20
    assert all(getattr(m, name) is None for name in METRIC_NAMES)
    assert "zero" in m.skipped_reason


def test_too_few_eigenvalues_keep_norm_metrics():
    m = metrics_of(matrix("gaussian", 50, 15, 0), min_tail=10)
    assert m.alpha is None and m.n_tail is None and m.log_alpha_norm is None
    assert "2 * min_tail = 20" in m.skipped_reason
    assert m.log_norm is not None and m.stable_rank is not None and m.entropy_rank is not None


def test_gaussian_stable_rank_matches_marchenko_pastur():
    # W (N x M) with N(0,1) entries, q = M/N: eigenvalues of W^T W / N follow Marchenko-Pastur with
    # mean 1 and upper edge (1 + sqrt q)^2, so stable_rank -> M / (1 + sqrt q)^2 = 68.6 here.
    # At this size lambda_max sits a few percent below the edge (Tracy-Widom fluctuations of order
    # N^(-2/3), negative mean): observed 69.7-71.3 over seeds. Tolerance 10%.
    n, m = 400, 200
    metrics = metrics_of(matrix("gaussian", n, m, 0))
    assert metrics.stable_rank == pytest.approx(m / (1 + np.sqrt(m / n)) ** 2, rel=0.10)
    # sum(lambda) = ||W||_F^2, a chi-square with N*M degrees of freedom: relative sd 0.5%.
    assert metrics.log_norm == pytest.approx(np.log10(n * m), abs=0.01)


def test_heavy_tailed_entries_give_a_much_smaller_alpha():
    # Martin & Mahoney: entries with tail index mu < 2 give an ESD tail exponent about mu/2 + 1 = 1.75.
    gaussian = metrics_of(matrix("gaussian", 400, 200, 0))
    heavy = metrics_of(matrix("student_t", 400, 200, 0))
    assert heavy.alpha < 2.5
    assert gaussian.alpha > 3.0
    assert heavy.alpha < gaussian.alpha - 1.0


def test_conv2d_slices_pool_the_eigenvalues_of_every_kernel_position():
    w = torch.randn(8, 5, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = spectra([weight_matrices(w, "slices")])[0].eigenvalues
    per_slice = [np.linalg.svd(w[:, :, i, j].numpy(), compute_uv=False) ** 2 for i in range(3) for j in range(4)]
    np.testing.assert_allclose(got, np.sort(np.concatenate(per_slice)), rtol=1e-12)
    assert got.size == 3 * 4 * 5


def test_conv_reshape_mode_and_conv1d_slices():
    w = torch.randn(8, 5, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = spectra([weight_matrices(w, "reshape")])[0].eigenvalues
    np.testing.assert_allclose(got, np.sort(np.linalg.svd(w.reshape(8, 45).numpy(), compute_uv=False) ** 2), rtol=1e-12)
    k = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = spectra([weight_matrices(k, "slices")])[0].eigenvalues
    per_slice = [np.linalg.svd(k[:, :, i].numpy(), compute_uv=False) ** 2 for i in range(5)]
    np.testing.assert_allclose(got, np.sort(np.concatenate(per_slice)), rtol=1e-12)


def test_batched_spectra_equal_one_matrix_at_a_time():
    g = torch.Generator().manual_seed(3)
    stacks = [torch.randn(1, 20, 10, generator=g), torch.randn(3, 20, 10, generator=g), torch.randn(1, 7, 9, generator=g)]
    for stack, spectrum in zip(stacks, spectra(stacks)):
        expected = np.concatenate([eigenvalues_numpy(m.double().numpy()) for m in stack])
        np.testing.assert_allclose(spectrum.eigenvalues, np.sort(expected), rtol=1e-10, atol=1e-12)


def test_spectra_leave_the_input_untouched():
    w = torch.randn(12, 7, dtype=torch.float64, requires_grad=True)
    before = w.detach().clone()
    spectra([weight_matrices(w)])
    assert torch.equal(w.detach(), before) and w.grad is None


def test_svd_dtype_policy():
    assert svd_dtype(torch.zeros(2, 2, dtype=torch.float32)) == torch.float64
    assert svd_dtype(torch.zeros(2, 2, dtype=torch.float16)) == torch.float64
    # Off the CPU (the meta device stands in for an accelerator): float32, never fp16.
    assert svd_dtype(torch.zeros(2, 2, dtype=torch.float16, device="meta")) == torch.float32
    assert svd_dtype(torch.zeros(2, 2, dtype=torch.bfloat16, device="meta")) == torch.float32
    assert svd_dtype(torch.zeros(2, 2, dtype=torch.float64, device="meta")) == torch.float64


def test_weight_matrices_rejects_vectors():
    with pytest.raises(ValueError, match="2 dimensions"):
        weight_matrices(torch.zeros(5))


@pytest.mark.parametrize(
    "layer_type,shape,fragment",
    [
        ("linear", (100, 5), "M * rf = 5 eigenvalues < WeightWatcher's min_evals = 10"),
        ("linear", (20, 10), None),
        ("conv2d", (16, 1, 3, 3), "M * rf = 9"),
        ("conv2d", (16, 2, 3, 3), None),
        ("conv2d", (2000, 1000, 4, 4), "16000 eigenvalues > WeightWatcher's max_evals = 15000"),
        ("linear", (20000, 16000), "max_evals"),
        ("embedding", (60000, 16), "N = 60000 > WeightWatcher's max_N = 50000"),
        ("embedding", (50000, 16), None),
        ("conv1d", (32, 32, 5), "conv1d"),
        ("conv3d", (8, 8, 3, 3, 3), "conv3d"),
    ],
)
def test_weightwatcher_layer_size_limits(layer_type, shape, fragment):
    reason = weightwatcher_skip_reason(layer_type, shape)
    if fragment is None:
        assert reason is None
    else:
        assert fragment in reason


def test_weightwatcher_conv2d_scaling_halves_eigenvalues_and_keeps_alpha():
    assert weightwatcher_eigenvalue_scale("conv2d") == 0.5
    assert weightwatcher_eigenvalue_scale("linear") == weightwatcher_eigenvalue_scale("embedding") == 1.0
    lam = eigenvalues_numpy(matrix("student_t", 200, 100, 4))
    plain = spectral_metrics(lam, convention="weightwatcher")
    scaled = spectral_metrics(lam * 0.5, convention="weightwatcher")
    assert scaled.log_norm == pytest.approx(plain.log_norm - np.log10(2.0))
    assert scaled.log_spectral_norm == pytest.approx(plain.log_spectral_norm - np.log10(2.0))
    assert scaled.alpha == pytest.approx(plain.alpha, rel=1e-12)
    assert scaled.stable_rank == pytest.approx(plain.stable_rank)


def test_weightwatcher_fit_needs_ten_eigenvalues():
    m = spectral_metrics(np.arange(1.0, 10.0), convention="weightwatcher")
    assert m.alpha is None and "at least 10" in m.skipped_reason and m.log_norm is not None


def test_rejects_negative_eigenvalues_and_unknown_convention():
    with pytest.raises(ValueError, match="negative"):
        spectral_metrics(np.array([-1.0, 2.0]))
    with pytest.raises(ValueError, match="convention"):
        spectral_metrics(np.arange(1.0, 50.0), convention="other")
