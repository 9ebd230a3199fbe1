"""The ``kernel`` hypothesis space: samples of a Gaussian-process posterior, and their test losses.

Idea (docs/methods.md §1, "Samplers" and "Kernel space exactly"): a hypothesis is a function drawn from
the posterior of a zero-mean GP with RBF kernel

    k(a, b) = signal_variance * exp(-|a - b|^2 / (2 lengthscale^2))        (inputs flattened)

given the training set, observed with Gaussian noise ``noise_variance``. Each output column (one per
class for one-hot classification targets, one per regression output) is an independent GP sharing
the kernel, so every column has the same posterior covariance over the test inputs:

    mean = K_*t (K_tt + noise I)^-1 Y,       C = K_** - K_*t (K_tt + noise I)^-1 K_t*,

(the latent function, without observation noise on the test points). Defaults: ``lengthscale`` the
median pairwise Euclidean distance of the training inputs (of a seeded subsample of at most
``LENGTHSCALE_SUBSAMPLE = 1000`` points when there are more), ``signal_variance = 1``,
``noise_variance = 1e-3``.

Numerics, all in float64: ``K_tt + noise I`` is factored by Cholesky, adding escalating jitter to the
diagonal only if it fails (recorded). ``C`` is symmetrised and eigendecomposed, negative eigenvalues
(rounding) are clamped to 0; samples use the Cholesky factor ``L`` of the clamped ``C`` plus the
smallest scheduled jitter that factors (recorded; 0 or ``1e-12 .. 1e-10`` of the mean variance in
practice), so a sample is
``f = mean + L z`` with ``L L^T = U diag(lam + jitter) U^T``. No matrix square root of an indefinite
matrix is ever taken. The exact path (``kernel_mse_distribution``) uses those same eigenvalues
``lam + jitter``, so sampled and exact losses have the same law (up to directions of jitter-level
variance, which it treats as constant).

Hypothesis ``i`` draws its ``z`` from a Philox stream keyed by ``seed`` whose counter starts at
``i << 128``: its normals depend only on ``(seed, i)``, never on chunking or sharding. The product
``L z`` is one GEMM per chunk, and BLAS kernels may round a column differently depending on the
matrix width and thread split (1 ulp seen on AMD EPYC between chunk sizes). Losses are therefore
bit-identical for the same chunk boundaries, BLAS build, CPU and thread count, and otherwise agree
to float64 rounding (a 30-term dot product per value: about 1e-14 relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist, pdist

LENGTHSCALE_SUBSAMPLE = 1000
DEFAULT_SIGNAL_VARIANCE = 1.0
DEFAULT_NOISE_VARIANCE = 1e-3
# Largest problem the kernel sampler accepts: n_train + n_test points (dense float64 kernels; the
# test covariance is eigendecomposed, O(n_test^3)) and the memory estimate of kernel_memory_bytes.
MAX_KERNEL_POINTS = 20_000
MAX_KERNEL_MEMORY_BYTES = 8 * 2**30
# Posterior directions with less variance than this times the largest count as constant in the
# exact MSE distribution (kernel_mse_distribution).
DEGENERATE_RELATIVE_VARIANCE = 1e-10
# Jitter schedule, relative to the mean diagonal: 0, then 1e-12, 1e-11, ... up to 1e-2.
_JITTER_START, _JITTER_STOP = 1e-12, 1e-2

KernelLoss = Literal["mse", "cross_entropy", "zero_one"]


class KernelTooLargeError(ValueError):
    """The GP problem exceeds the documented maximum; ``n_train``/``n_test`` say how large it was."""

    def __init__(self, n_train: int, n_test: int, out_dim: int):
        self.n_train, self.n_test, self.out_dim = n_train, n_test, out_dim
        need = kernel_memory_bytes(n_train, n_test, out_dim)
        super().__init__(
            f"the kernel sampler handles at most n_train + n_test = {MAX_KERNEL_POINTS} points and "
            f"{MAX_KERNEL_MEMORY_BYTES / 2**30:.0f} GiB of kernel matrices; this task has n_train={n_train}, "
            f"n_test={n_test} (about {need / 2**30:.2f} GiB): use a smaller train or test split"
        )


def kernel_memory_bytes(n_train: int, n_test: int, out_dim: int) -> int:
    """Peak bytes of the dense float64 arrays ``gp_posterior`` holds at once (an estimate).

    Counted: ``K_tt`` and its Cholesky factor (``2 n_train^2``), ``K_t*`` and the solved ``V``
    (``2 n_train n_test``), ``K_**``/``C``, its eigenvectors, the sampling factor and one work copy
    (``4 n_test^2``), targets and means (``2 (n_train + n_test) out_dim``).
    """
    cells = 2 * n_train**2 + 2 * n_train * n_test + 4 * n_test**2 + 2 * (n_train + n_test) * out_dim
    return 8 * cells


def check_kernel_size(n_train: int, n_test: int, out_dim: int) -> None:
    """Raise ``KernelTooLargeError`` (a ``ValueError``) beyond ``MAX_KERNEL_POINTS`` or ``MAX_KERNEL_MEMORY_BYTES``."""
    if n_train + n_test > MAX_KERNEL_POINTS or kernel_memory_bytes(n_train, n_test, out_dim) > MAX_KERNEL_MEMORY_BYTES:
        raise KernelTooLargeError(n_train, n_test, out_dim)


def median_pairwise_distance(x, seed: int = 0, max_points: int = LENGTHSCALE_SUBSAMPLE) -> float:
    """Median Euclidean distance over distinct pairs of rows of ``x`` (flattened per row).

    With more than ``max_points`` rows, the median over a subsample of ``max_points`` rows drawn
    without replacement by ``numpy.random.default_rng(seed)``. Raises ``ValueError`` for fewer than 2
    rows or when the median is 0 (more than half the pairs are duplicates: no scale to read off).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[0] < 2:
        raise ValueError("the median pairwise distance needs at least 2 training points")
    if x.shape[0] > max_points:
        x = x[np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False)]
    median = float(np.median(pdist(x)))
    if not median > 0:
        raise ValueError("the median pairwise distance of the training inputs is 0: pass a lengthscale")
    return median


def rbf_kernel(a, b, lengthscale: float, signal_variance: float = DEFAULT_SIGNAL_VARIANCE) -> np.ndarray:
    """``signal_variance * exp(-|a_i - b_j|^2 / (2 lengthscale^2))`` for flattened rows, float64 ``(len(a), len(b))``."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    sq = cdist(a, b, "sqeuclidean")
    return signal_variance * np.exp(-sq / (2.0 * lengthscale**2))


def _cholesky_with_jitter(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of ``matrix + jitter I`` with the smallest scheduled jitter that factors."""
    scale = float(np.mean(np.diag(matrix))) or 1.0
    jitters = [0.0, *np.geomspace(_JITTER_START, _JITTER_STOP, 11) * scale]
    for jitter in jitters:
        try:
            return np.linalg.cholesky(matrix + jitter * np.eye(len(matrix))), float(jitter)
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError(f"matrix not positive definite even with jitter {jitters[-1]:.3g}")


@dataclass(frozen=True)
class GPPosterior:
    """GP posterior over the test inputs (module docstring for the model).

    ``mean``: ``(n_test, out_dim)``; ``covariance``: ``(n_test, n_test)``, symmetrised, eigenvalues
    clamped at 0; ``eigenvalues`` (ascending, ``>= 0``) and ``eigenvectors`` of it; ``cholesky``:
    lower factor with ``cholesky @ cholesky.T = covariance + sample_jitter I``; ``train_jitter``: added
    to ``K_tt + noise I`` beyond the noise to factor it (0 when not needed); the hyperparameters used.
    """

    mean: np.ndarray
    covariance: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    cholesky: np.ndarray
    sample_jitter: float
    train_jitter: float
    lengthscale: float
    signal_variance: float
    noise_variance: float

    @property
    def n_test(self) -> int:
        return self.mean.shape[0]

    @property
    def out_dim(self) -> int:
        return self.mean.shape[1]


def one_hot(labels, n_classes: int) -> np.ndarray:
    """Float64 one-hot rows ``(n, n_classes)`` of integer labels in ``[0, n_classes)``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("class labels must be a 1-D integer array")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"class labels must lie in [0, {n_classes})")
    return np.eye(n_classes, dtype=np.float64)[labels]


def gp_posterior(
    x_train,
    y_train,
    x_test,
    *,
    lengthscale: float | None = None,
    signal_variance: float = DEFAULT_SIGNAL_VARIANCE,
    noise_variance: float = DEFAULT_NOISE_VARIANCE,
    seed: int = 0,
) -> GPPosterior:
    """The GP posterior over ``x_test`` given ``(x_train, y_train)``.

    Args:
        x_train: ``(n_train, ...)`` inputs, flattened per row.
        y_train: ``(n_train, out_dim)`` float targets (``one_hot(labels, n_classes)`` for
            classification); a 1-D array is one output.
        x_test: ``(n_test, ...)`` inputs with the training inputs' per-row size.
        lengthscale: RBF lengthscale; default ``median_pairwise_distance(x_train, seed)``.
        signal_variance: prior variance of each output (default 1).
        noise_variance: observation noise on the training targets (default 1e-3), added to the
            training diagonal.
        seed: seeds only the lengthscale subsample (more than 1000 training points).

    Returns:
        ``GPPosterior``.

    Raises:
        KernelTooLargeError: beyond the documented maximum (``check_kernel_size``).
        ValueError: empty training set, mismatched shapes, non-positive hyperparameters.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    n_train, n_test = len(x_train), len(x_test)
    if n_train == 0 or n_test == 0:
        raise ValueError("the kernel sampler needs a non-empty training and test set")
    if y.ndim != 2 or len(y) != n_train:
        raise ValueError(f"y_train must have shape (n_train={n_train}, out_dim), got {tuple(y.shape)}")
    x_train, x_test = x_train.reshape(n_train, -1), x_test.reshape(n_test, -1)
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train and test inputs differ in size: {x_train.shape[1]} vs {x_test.shape[1]}")
    check_kernel_size(n_train, n_test, y.shape[1])
    if lengthscale is None:
        lengthscale = median_pairwise_distance(x_train, seed)
    for name, value in (("lengthscale", lengthscale), ("signal_variance", signal_variance)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and positive, got {value}")
    if not (math.isfinite(noise_variance) and noise_variance >= 0):
        raise ValueError(f"noise_variance must be finite and non-negative, got {noise_variance}")

    k_train = rbf_kernel(x_train, x_train, lengthscale, signal_variance)
    k_train[np.diag_indices(n_train)] += noise_variance
    chol_train, train_jitter = _cholesky_with_jitter(k_train)
    del k_train
    k_cross = rbf_kernel(x_train, x_test, lengthscale, signal_variance)  # (n_train, n_test)
    # V = L^-1 K_t*: mean = V^T L^-1 Y and C = K_** - V^T V, without forming an inverse.
    v = solve_triangular(chol_train, k_cross, lower=True)
    mean = v.T @ solve_triangular(chol_train, y, lower=True)
    del k_cross, chol_train
    cov = rbf_kernel(x_test, x_test, lengthscale, signal_variance)
    cov -= v.T @ v
    del v
    cov = 0.5 * (cov + cov.T)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    cov = (eigenvectors * eigenvalues) @ eigenvectors.T
    cov = 0.5 * (cov + cov.T)
    sample_factor, sample_jitter = _cholesky_with_jitter(cov)
    return GPPosterior(
        mean=mean,
        covariance=cov,
        eigenvalues=eigenvalues,
        eigenvectors=eigenvectors,
        cholesky=sample_factor,
        sample_jitter=sample_jitter,
        train_jitter=train_jitter,
        lengthscale=float(lengthscale),
        signal_variance=float(signal_variance),
        noise_variance=float(noise_variance),
    )


class _HypothesisNormals:
    """Standard normals of hypothesis ``i``: a Philox stream keyed by ``seed``, counter ``i << 128``.

    Philox is counter-based, so the streams are disjoint (2^128 blocks each) and need no state shared
    between hypotheses. One bit generator is re-positioned per hypothesis (setting its state is
    about 3x cheaper than constructing one); the result equals a fresh
    ``Generator(Philox(key=seed, counter=i << 128))``.
    """

    def __init__(self, seed: int):
        self._bits = np.random.Philox(key=seed)
        self._generator = np.random.Generator(self._bits)
        self._state = self._bits.state

    def __call__(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        state = self._state
        # The 256-bit counter as four little-endian 64-bit words: i << 128 is word 2 (and 3).
        state["state"]["counter"] = np.array([0, 0, index & 0xFFFFFFFFFFFFFFFF, index >> 64], dtype=np.uint64)
        state["buffer_pos"] = 4  # empty output buffer: the next draw starts at the new counter
        state["has_uint32"] = 0
        self._bits.state = state
        return self._generator.standard_normal(shape)


def _test_targets(posterior: GPPosterior, targets, loss: KernelLoss) -> tuple[np.ndarray, np.ndarray | None]:
    """``(dense (n_test, out_dim) targets, labels or None)`` from labels or a float matrix."""
    t = np.asarray(targets)
    if np.issubdtype(t.dtype, np.integer):
        if t.shape != (posterior.n_test,):
            raise ValueError(f"class labels must have shape ({posterior.n_test},), got {t.shape}")
        return one_hot(t, posterior.out_dim), t
    if loss != "mse":
        raise ValueError(f"loss {loss!r} needs integer class labels as targets")
    t = t.astype(np.float64)
    t = t[:, None] if t.ndim == 1 else t
    if t.shape != posterior.mean.shape:
        raise ValueError(f"targets must have shape {posterior.mean.shape}, got {t.shape}")
    return t, None


def kernel_functions_from_normals(posterior: GPPosterior, z: np.ndarray) -> np.ndarray:
    """``f = mean + L z`` for ``z`` of shape ``(n, n_test, out_dim)`` (standard normals), ``(n, n_test, out_dim)``.

    The map the sampler applies to its Philox normals, and the latent space of the rare-event
    estimator (``latent_spaces.kernel_latent``)."""
    n, shape = z.shape[0], (posterior.n_test, posterior.out_dim)
    if n == 0:
        return np.empty((0, *shape))
    z = np.ascontiguousarray(np.asarray(z, dtype=np.float64).transpose(1, 0, 2))  # (n_test, n, out_dim)
    # One GEMM over all hypotheses and outputs (a broadcast matmul would loop over hypotheses).
    correlated = (posterior.cholesky @ z.reshape(shape[0], -1)).reshape(shape[0], n, shape[1])
    return posterior.mean + correlated.transpose(1, 0, 2)


def sample_kernel_functions(posterior: GPPosterior, n: int, seed: int, *, first_index: int = 0) -> np.ndarray:
    """Posterior samples ``f_i = mean + L z_i`` over the test inputs, ``(n, n_test, out_dim)`` float64,
    for hypotheses ``first_index .. first_index + n - 1``; ``z_i`` depends only on ``(seed, i)``."""
    normals = _HypothesisNormals(seed)
    shape = (posterior.n_test, posterior.out_dim)
    if n == 0:
        return np.empty((0, *shape))
    return kernel_functions_from_normals(posterior, np.stack([normals(first_index + i, shape) for i in range(n)]))


def function_losses(f: np.ndarray, dense: np.ndarray, labels: np.ndarray | None, loss: KernelLoss) -> np.ndarray:
    """Test losses ``(n,)`` of functions ``f`` ``(n, n_test, out_dim)`` against dense targets / labels
    (``_test_targets``), as ``sample_kernel_losses`` documents them."""
    if loss == "mse":
        return np.mean((f - dense) ** 2, axis=(1, 2))
    if loss == "cross_entropy":
        log_probs = f - special.logsumexp(f, axis=2, keepdims=True)
        return -np.mean(log_probs[:, np.arange(f.shape[1]), labels], axis=1)
    return np.mean(np.argmax(f, axis=2) != labels, axis=1)


def dense_targets(posterior: GPPosterior, targets, loss: KernelLoss) -> tuple[np.ndarray, np.ndarray | None]:
    """``(dense (n_test, out_dim) targets, labels or None)`` from labels or a float matrix; validates ``loss``."""
    if loss not in ("mse", "cross_entropy", "zero_one"):
        raise ValueError(f"loss must be mse, cross_entropy or zero_one, got {loss!r}")
    return _test_targets(posterior, targets, loss)


def sample_kernel_losses(
    posterior: GPPosterior,
    targets,
    n: int,
    seed: int,
    loss: KernelLoss = "mse",
    chunk: int = 256,
    *,
    first_index: int = 0,
) -> np.ndarray:
    """Test losses of ``n`` posterior samples ``f = mean + L z``: hypotheses ``first_index ..
    first_index + n - 1``.

    Args:
        posterior: from ``gp_posterior``.
        targets: ``(n_test,)`` integer class labels (classification: one-hot for ``mse``), or
            ``(n_test, out_dim)`` float targets (regression; ``mse`` only).
        n: number of hypotheses.
        seed: non-negative integer; hypothesis ``i`` depends only on ``(seed, i)``.
        loss: ``mse`` (mean over test points and outputs of the squared error), ``cross_entropy``
            (mean over test points of ``-log softmax(f)[label]``) or ``zero_one`` (fraction of test
            points whose argmax is not the label), each the exact mean over the whole test set.
        chunk: hypotheses per batched matmul (memory). The same hypotheses for any chunk; their
            losses agree to float64 rounding, bit for bit only with the same chunk boundaries
            (module docstring).
        first_index: index of the first hypothesis (a shard's offset).

    Returns:
        ``(n,)`` float64 losses.
    """
    if n < 0 or chunk < 1 or first_index < 0 or seed < 0:
        raise ValueError("n, first_index and seed must be non-negative and chunk positive")
    dense, labels = dense_targets(posterior, targets, loss)
    losses = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        f = sample_kernel_functions(posterior, stop - start, seed, first_index=first_index + start)
        losses[start:stop] = function_losses(f, dense, labels, loss)
    return losses


def kernel_mse_distribution(posterior: GPPosterior, targets) -> tuple[np.ndarray, np.ndarray, float]:
    """The law of the test MSE of one posterior sample, as a generalised chi-squared.

    With ``C + jitter I = U diag(lam) U^T`` and ``d_o = U^T (mean_o - y_o)`` per output ``o``,
    ``MSE = (1/N) sum_o |mean_o + L z_o - y_o|^2 = sum_{o,j} (lam_j / N) chi2_1(d_oj^2 / lam_j)``
    with ``N = n_test * out_dim``. Directions whose variance is at jitter level
    (``lam_j <= DEGENERATE_RELATIVE_VARIANCE = 1e-10`` times the largest; e.g. a test point that is
    also a noise-free training point) are treated as constant: they add ``d_oj^2 / N`` to the offset.
    In the sampler they still carry their jitter-level variance; the difference in the loss has a
    standard deviation at most ``1e-5`` times that of the largest direction's term.

    Args:
        posterior: from ``gp_posterior``.
        targets: as for ``sample_kernel_losses`` (labels are one-hot encoded).

    Returns:
        ``(weights, noncentralities, offset)`` for ``generalized_chi2.log_cdf``.
    """
    dense, _ = _test_targets(posterior, targets, "mse")
    n_cells = dense.size
    lam = posterior.eigenvalues + posterior.sample_jitter
    d = posterior.eigenvectors.T @ (posterior.mean - dense)  # (n_test, out_dim)
    random = lam > DEGENERATE_RELATIVE_VARIANCE * float(np.max(lam))
    weights = np.repeat(lam[random] / n_cells, posterior.out_dim)
    noncentralities = (d[random] ** 2 / lam[random, None]).ravel()
    offset = float(np.sum(d[~random] ** 2)) / n_cells
    return weights, noncentralities, offset
