import math

import numpy as np
import pytest
from scipy import special, stats

from workers.probes.functional.generalized_chi2 import log_cdf
from workers.probes.functional.gp_kernel import (
    MAX_KERNEL_POINTS,
    KernelTooLargeError,
    check_kernel_size,
    gp_posterior,
    kernel_memory_bytes,
    kernel_mse_distribution,
    median_pairwise_distance,
    one_hot,
    rbf_kernel,
    sample_kernel_functions,
    sample_kernel_losses,
)


def classification_task(n_train: int = 50, n_test: int = 30, seed: int = 0):
    """Three classes from the signs of two of four Gaussian features."""
    rng = np.random.default_rng(seed)
    x_train, x_test = rng.normal(size=(n_train, 2, 2)), rng.normal(size=(n_test, 2, 2))
    label = lambda x: (x[:, 0, 0] > 0).astype(np.int64) + (x[:, 0, 1] > 0)  # noqa: E731
    return x_train, label(x_train), x_test, label(x_test)


def direct_posterior(x_train, y_train, x_test, lengthscale, signal_variance, noise_variance):
    """Textbook GP regression with explicit loops for the kernel and np.linalg.solve."""
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)

    def kernel(p, q):
        return np.array([[signal_variance * math.exp(-np.sum((u - v) ** 2) / (2 * lengthscale**2)) for v in q] for u in p])

    k_tt = kernel(a, a) + noise_variance * np.eye(len(a))
    k_st = kernel(b, a)
    mean = k_st @ np.linalg.solve(k_tt, y_train)
    cov = kernel(b, b) - k_st @ np.linalg.solve(k_tt, k_st.T)
    return mean, cov


def test_posterior_matches_direct_solve():
    x_train, y_train, x_test, _ = classification_task(20, 12)
    targets = one_hot(y_train, 3)
    posterior = gp_posterior(x_train, targets, x_test, lengthscale=1.7, signal_variance=2.0, noise_variance=0.05)
    mean, cov = direct_posterior(x_train, targets, x_test, 1.7, 2.0, 0.05)
    np.testing.assert_allclose(posterior.mean, mean, atol=1e-10)
    np.testing.assert_allclose(posterior.covariance, cov, atol=1e-10)
    assert posterior.train_jitter == 0.0
    np.testing.assert_allclose(
        posterior.cholesky @ posterior.cholesky.T, posterior.covariance + posterior.sample_jitter * np.eye(12), atol=1e-12
    )
    assert np.all(posterior.eigenvalues >= 0)


def test_default_hyperparameters():
    x_train, y_train, x_test, _ = classification_task()
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test)
    flat = x_train.reshape(50, -1)
    distances = [np.linalg.norm(flat[i] - flat[j]) for i in range(50) for j in range(i + 1, 50)]
    assert posterior.lengthscale == pytest.approx(np.median(distances))
    assert (posterior.signal_variance, posterior.noise_variance) == (1.0, 1e-3)
    np.testing.assert_allclose(rbf_kernel(flat[:3], flat[:2], 2.0), np.exp(-np.array(
        [[np.sum((u - v) ** 2) for v in flat[:2]] for u in flat[:3]]) / 8.0))


def test_lengthscale_subsample_is_seeded_and_close_to_the_full_median():
    x = np.random.default_rng(3).normal(size=(1500, 3))
    full = float(np.median([np.linalg.norm(x[i] - x[j]) for i in range(0, 1500, 7) for j in range(i + 1, 1500, 7)]))
    sub = median_pairwise_distance(x, seed=5)
    assert sub == median_pairwise_distance(x, seed=5)
    assert sub != median_pairwise_distance(x, seed=6)
    assert sub == pytest.approx(full, rel=0.03)
    with pytest.raises(ValueError, match="pass a lengthscale"):
        median_pairwise_distance(np.zeros((4, 2)))


def test_duplicate_inputs_without_noise_need_and_record_jitter():
    x_train, y_train, x_test, _ = classification_task(10, 6)
    x_dup = np.concatenate([x_train, x_train])
    posterior = gp_posterior(x_dup, one_hot(np.concatenate([y_train, y_train]), 3), x_test, noise_variance=0.0)
    assert posterior.train_jitter > 0
    reference = gp_posterior(x_train, one_hot(y_train, 3), x_test, lengthscale=posterior.lengthscale,
                             noise_variance=posterior.train_jitter / 2)
    # Two copies with noise j behave like one point with noise j / 2.
    np.testing.assert_allclose(posterior.mean, reference.mean, atol=1e-6)


def test_sample_moments_converge_to_the_posterior():
    x_train, y_train, x_test, _ = classification_task(15, 6)
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test, lengthscale=1.0)
    f = sample_kernel_functions(posterior, 20000, seed=4)
    scale = math.sqrt(float(np.max(np.diag(posterior.covariance))))
    # Standard errors are about scale / sqrt(20000 * 3) ~ 0.004 scale: 5 of them.
    np.testing.assert_allclose(f.mean(axis=0), posterior.mean, atol=0.03 * scale)
    centred = (f - posterior.mean).transpose(0, 2, 1).reshape(-1, 6)
    np.testing.assert_allclose(centred.T @ centred / len(centred), posterior.covariance, atol=0.03 * scale**2)


def test_losses_match_an_independent_computation_from_the_samples():
    x_train, y_train, x_test, y_test = classification_task()
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test)
    f = sample_kernel_functions(posterior, 40, seed=9)
    probabilities = special.softmax(f, axis=2)
    expected = {
        "mse": [np.sum((fi - np.eye(3)[y_test]) ** 2) / (30 * 3) for fi in f],
        "cross_entropy": [-np.mean([math.log(p[t, c]) for t, c in enumerate(y_test)]) for p in probabilities],
        "zero_one": [np.count_nonzero(fi.argmax(axis=1) != y_test) / 30 for fi in f],
    }
    for loss, values in expected.items():
        np.testing.assert_allclose(sample_kernel_losses(posterior, y_test, 40, 9, loss=loss), values, rtol=1e-12)


def test_regression_targets_use_mse_only():
    rng = np.random.default_rng(2)
    x_train, x_test = rng.normal(size=(25, 3)), rng.normal(size=(10, 3))
    y_train, y_test = np.sin(x_train[:, :2]), np.sin(x_test[:, :2])
    posterior = gp_posterior(x_train, y_train, x_test)
    f = sample_kernel_functions(posterior, 8, seed=1)
    np.testing.assert_allclose(sample_kernel_losses(posterior, y_test, 8, 1), ((f - y_test) ** 2).mean(axis=(1, 2)))
    with pytest.raises(ValueError, match="integer class labels"):
        sample_kernel_losses(posterior, y_test, 8, 1, loss="zero_one")


def test_deterministic_per_seed_and_chunk_aligned_shards_are_bit_identical():
    x_train, y_train, x_test, y_test = classification_task()
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test)
    whole = sample_kernel_losses(posterior, y_test, 50, seed=123, chunk=10)
    np.testing.assert_array_equal(whole, sample_kernel_losses(posterior, y_test, 50, seed=123, chunk=10))
    # Shards whose boundaries fall on chunk boundaries run the same GEMMs on the same normals: the
    # promise sharded runs rely on (README, "Sharded runs"), exact whenever
    # both run on one CPU with one BLAS build and thread count, as here.
    shards = [sample_kernel_losses(posterior, y_test, 20, 123, first_index=0, chunk=10),
              sample_kernel_losses(posterior, y_test, 30, 123, first_index=20, chunk=10)]
    np.testing.assert_array_equal(whole, np.concatenate(shards))
    assert not np.any(whole == sample_kernel_losses(posterior, y_test, 50, seed=124, chunk=10))
    assert len(np.unique(whole)) == 50


def test_other_chunks_and_shards_agree_to_float64_rounding():
    x_train, y_train, x_test, y_test = classification_task()
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test)
    whole = sample_kernel_losses(posterior, y_test, 50, seed=123)
    shards = np.concatenate([sample_kernel_losses(posterior, y_test, 20, 123, first_index=0, chunk=3),
                             sample_kernel_losses(posterior, y_test, 30, 123, first_index=20, chunk=16)])
    # Different GEMM widths may sum each 30-term dot product of L z in another order (1 ulp seen on
    # AMD EPYC): |df| <= 30 eps sum|L_ij z_j| ~ 1e-14 for unit-order values, so the losses (means of
    # squares of order 0.5) agree to ~1e-13 relative; 1e-12 leaves a margin and still catches any
    # change of hypothesis (those differ at the 1e-2 level).
    for losses in (sample_kernel_losses(posterior, y_test, 50, seed=123, chunk=7), shards):
        np.testing.assert_allclose(losses, whole, rtol=1e-12, atol=0)


def test_exact_log_cdf_matches_sampled_fraction():
    x_train, y_train, x_test, y_test = classification_task(50, 30)
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test)
    n = 20000
    losses = sample_kernel_losses(posterior, y_test, n, seed=0)
    weights, noncentralities, offset = kernel_mse_distribution(posterior, y_test)
    mean = offset + np.sum(weights * (1 + noncentralities))
    sd = math.sqrt(np.sum(2 * weights**2 * (1 + 2 * noncentralities)))
    assert losses.mean() == pytest.approx(mean, abs=5 * sd / math.sqrt(n))
    for z in (2.5, 1.5, 0.0):
        epsilon = mean - z * sd
        exact = math.exp(log_cdf(epsilon, weights, noncentralities, offset).log_cdf)
        k = int(np.count_nonzero(losses <= epsilon))
        # 99.9 % Clopper-Pearson interval for the fraction k / n.
        low = stats.beta.ppf(0.0005, k, n - k + 1) if k > 0 else 0.0
        high = stats.beta.ppf(0.9995, k + 1, n - k) if k < n else 1.0
        assert k >= 20 and low <= exact <= high


def test_mse_distribution_folds_degenerate_directions_into_the_offset():
    x_train, y_train, x_test, y_test = classification_task(12, 5)
    # A test point equal to a training point, with no noise: its posterior variance is ~0.
    x_test = np.concatenate([x_train[:1], x_test])
    y_test = np.concatenate([y_train[:1], y_test])
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test, noise_variance=0.0)
    assert posterior.eigenvalues[0] < 1e-12 * posterior.eigenvalues[-1]
    weights, noncentralities, offset = kernel_mse_distribution(posterior, y_test)
    assert weights.size == 3 * 5
    # Without noise the posterior mean interpolates the training target: that direction adds ~0.
    assert 0.0 <= offset < 1e-12
    # A test point off the training set with its own target, duplicated with a shifted target: the
    # direction where the two copies differ has zero variance and a known constant error.
    x_pair = np.concatenate([x_train[:1], x_train[:1], x_test[1:]])
    shifted = one_hot(np.concatenate([y_train[:1], (y_train[:1] + 1) % 3, y_test[1:]]), 3)
    posterior = gp_posterior(x_train[1:], one_hot(y_train[1:], 3), x_pair, lengthscale=1.0)
    weights, noncentralities, offset = kernel_mse_distribution(posterior, shifted)
    assert weights.size == 3 * 6
    # The mean is identical at the two copies, so the difference direction (e1 - e2)/sqrt(2) has
    # error |t1 - t2|^2 / 2 = 1 (two one-hot vectors differing in two places), over N = 7 * 3.
    assert offset == pytest.approx(1.0 / 21, rel=1e-9)
    losses = sample_kernel_losses(posterior, shifted, 4000, seed=1)
    assert losses.min() > offset
    assert losses.mean() == pytest.approx(offset + np.sum(weights * (1 + noncentralities)), rel=0.02)


def test_memory_guard():
    assert kernel_memory_bytes(100, 10, 3) == 8 * (2 * 100**2 + 2 * 100 * 10 + 4 * 10**2 + 2 * 110 * 3)
    check_kernel_size(MAX_KERNEL_POINTS // 2, MAX_KERNEL_POINTS // 4, 10)
    with pytest.raises(KernelTooLargeError, match=f"n_train \\+ n_test = {MAX_KERNEL_POINTS}") as caught:
        gp_posterior(np.zeros((MAX_KERNEL_POINTS, 1)), np.zeros(MAX_KERNEL_POINTS), np.zeros((1, 1)))
    assert isinstance(caught.value, ValueError)
    assert (caught.value.n_train, caught.value.n_test) == (MAX_KERNEL_POINTS, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lengthscale=-1.0), "lengthscale"),
        (dict(signal_variance=0.0), "signal_variance"),
        (dict(noise_variance=-1e-3), "noise_variance"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    x_train, y_train, x_test, _ = classification_task(10, 4)
    with pytest.raises(ValueError, match=match):
        gp_posterior(x_train, one_hot(y_train, 3), x_test, **kwargs)


def test_invalid_shapes_and_labels():
    x_train, y_train, x_test, y_test = classification_task(10, 4)
    with pytest.raises(ValueError, match="y_train"):
        gp_posterior(x_train, one_hot(y_train, 3)[:5], x_test)
    with pytest.raises(ValueError, match="differ in size"):
        gp_posterior(x_train, one_hot(y_train, 3), x_test.reshape(4, -1)[:, :3])
    posterior = gp_posterior(x_train, one_hot(y_train, 3), x_test)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        sample_kernel_losses(posterior, np.array([0, 1, 2, 3]), 2, 0)
    with pytest.raises(ValueError, match="loss must be"):
        sample_kernel_losses(posterior, y_test, 2, 0, loss="hinge")
