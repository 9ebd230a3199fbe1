"""Eigenvalue spectra of weight matrices and the heavy-tailed metrics built on them (docs/methods.md §4).

Pure functions on tensors and arrays, no ``nn.Module``: how a weight tensor becomes matrices, the
batched decomposition that turns matrices into eigenvalues, the per-layer metrics of Martin & Mahoney
(Nature Communications 2021) under the two conventions the probe offers, and WeightWatcher's
layer rules (which layers it analyses, how it scales Conv2d slices).

The eigenvalues of a layer are ``lambda = sigma^2`` for the singular values ``sigma`` of each of its
matrices: the ``min(rows, cols)`` eigenvalues of the smaller Gram matrix, i.e. of ``W^T W`` without
the ``|rows - cols|`` zeros that only the larger Gram matrix has (WeightWatcher keeps the same
``min(rows, cols)`` per matrix).

How they are computed (``spectra``): in float64, the eigenvalues of the smaller Gram matrix
(``W W^T`` or ``W^T W``; ``eigvalsh``), batched over all matrices of one shape (e.g. every kernel
position of a convolution): two to four times faster than an SVD on CPUs. Forming the Gram matrix
squares the condition number: its eigenvalues carry an absolute error of about
``c * eps * lambda_max`` (``c`` below ``k = min(rows, cols)``; measured 1 to 70, about ``2 sqrt(k)``),
harmless for large eigenvalues but not for small ones, which can lose every digit or go negative. So
a matrix keeps its Gram eigenvalues only when every eigenvalue that matters is resolved to a relative
error below about ``1e-6``, ``lambda >= k * eps * lambda_max / 1e-6`` (a condition number below about
``1e3`` to ``1e4``, depending on size). Which eigenvalues matter is the caller's ``floor``: all of
them by default; under the WeightWatcher convention only those above its fit threshold, since the
smaller ones only enter sums, where their absolute error is negligible. The other matrices
(rank-deficient, ill-conditioned, zero) go through the SVD, whose singular values are accurate to
``eps * sigma_max`` and square to non-negative eigenvalues. On CPU both routes call NumPy's LAPACK;
on accelerators, where the decomposition runs in float32 and the Gram route would keep about one
digit of the small eigenvalues, every matrix takes ``torch.linalg.svdvals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.linalg.blas import dsyrk

from workers.probes.functional.powerlaw import (
    WW_SMALL_N_CUTOFF,
    PowerLawFit,
    fit_power_law,
    fit_power_law_weightwatcher,
    fit_power_law_weightwatcher_small_n,
)

Convention = Literal["priorprobe", "weightwatcher"]
ConvMode = Literal["slices", "reshape"]
LayerType = Literal["linear", "embedding", "conv1d", "conv2d", "conv3d"]
Decomposition = Literal["auto", "svd"]

# WeightWatcher's defaults (weightwatcher/constants.py and the signature of WeightWatcher.analyze).
WW_MIN_EVALS = 10  # DEFAULT_MIN_EVALS: layers with fewer eigenvalues (M * rf) are not analysed
WW_MAX_EVALS = 15000  # DEFAULT_MAX_EVALS: nor layers with more
WW_MAX_N = 50000  # DEFAULT_MAX_N: nor layers whose larger dimension N exceeds this
WW_MIN_NUM_EVALS = 10  # MIN_NUM_EVALS: fit_powerlaw fails below this many eigenvalues
WW_FIT_THRESHOLD = 1e-5  # EVALS_THRESH: only eigenvalues above it enter the power-law fit
# conv2d_norm=True multiplies every Conv2d slice by sqrt(conv2d_count / 2); conv2d_count stays 1 when
# eigenvalues are pooled (pool=True, the default), so slices are scaled by sqrt(1/2), eigenvalues by 1/2.
WW_CONV2D_EIGENVALUE_SCALE = 0.5

# Float64 Gram eigenvalues carry an absolute error of about c * eps * lambda_max with c below
# k = min(rows, cols) (measured 1 to 70 for Gaussian matrices up to k = 1024); a matrix keeps its Gram
# eigenvalues only when its smallest one is at least k * eps * lambda_max / 1e-6, so that every
# eigenvalue has a relative error below about 1e-6 (typically below 1e-10).
_GRAM_RELATIVE_ACCURACY = 1e-6

METRIC_NAMES = (
    "alpha",
    "alpha_weighted",
    "log_norm",
    "log_spectral_norm",
    "stable_rank",
    "entropy_rank",
    "log_alpha_norm",
)


def weight_matrices(weight: torch.Tensor, conv_mode: ConvMode = "slices") -> torch.Tensor:
    """The matrices whose eigenvalues make up a layer's spectrum, as one ``(S, rows, cols)`` stack.

    Args:
        weight: a 2-D weight ``(out, in)`` (Linear, Embedding) or a convolution kernel
            ``(out, in, *kernel)``.
        conv_mode: for kernels, ``"slices"`` (default) gives one ``(out, in)`` matrix per kernel
            position (``S = prod(kernel)``; pooled into one spectrum as WeightWatcher does);
            ``"reshape"`` gives the single ``(out, in * prod(kernel))`` matrix.

    Returns:
        A view or copy of ``weight``, never ``weight`` itself modified.
    """
    if weight.ndim < 2:
        raise ValueError(f"a weight matrix needs at least 2 dimensions, got shape {tuple(weight.shape)}")
    if weight.ndim == 2:
        return weight.unsqueeze(0)
    out_channels, in_channels = weight.shape[0], weight.shape[1]
    if conv_mode == "reshape":
        return weight.reshape(out_channels, -1).unsqueeze(0)
    if conv_mode != "slices":
        raise ValueError(f"conv_mode must be 'slices' or 'reshape', got {conv_mode!r}")
    kernel_axes = tuple(range(2, weight.ndim))
    return weight.permute(*kernel_axes, 0, 1).reshape(-1, out_channels, in_channels)


def svd_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float64 on CPU; float32 on an accelerator unless the tensor already is float64; never fp16."""
    if tensor.device.type == "cpu" or tensor.dtype == torch.float64:
        return torch.float64
    return torch.float32


@dataclass(frozen=True)
class Spectrum:
    """One layer's pooled eigenvalues, ascending, float64.

    ``zero_tolerance``: eigenvalues at or below it are numerically zero: by NumPy's ``matrix_rank``
    rule on singular values, ``sigma <= sigma_max * max(rows, cols) * eps`` with ``eps`` of the
    decomposition's dtype, squared; raised to the Gram error bound ``min(rows, cols) * eps *
    lambda_max`` when a matrix kept unresolved eigenvalues below a ``floor`` (``spectra``).
    ``n_svd``: how many of the layer's matrices took the SVD route (the rest: Gram eigenvalues).
    """

    eigenvalues: np.ndarray
    zero_tolerance: float
    n_svd: int = 0


def spectra(
    stacks: Sequence[torch.Tensor], *, method: Decomposition = "auto", floors: Sequence[float] | None = None
) -> list[Spectrum]:
    """Eigenvalues of every stack of matrices, batching all equal-shaped matrices into one call.

    Args:
        stacks: ``(S, rows, cols)`` tensors, e.g. from ``weight_matrices``. Each is cast to
            ``svd_dtype`` on its own device; matrices of the same shape, device and dtype from all
            stacks are decomposed together.
        method: ``"auto"`` (default): in float64, the eigenvalues of the smaller Gram matrix of every
            matrix (``eigvalsh``, batched), except for matrices where that cannot resolve every
            eigenvalue that matters to a relative error of about ``1e-6`` (module docstring), which
            get ``svd``; in float32 (accelerators), ``svd`` for all. ``"svd"``: singular values,
            squared, for all (the reference the Gram route is tested against).
        floors: one per stack (default all 0): eigenvalues below a stack's floor only enter the
            metrics through sums (e.g. WeightWatcher fits only eigenvalues above ``1e-5``), so the
            Gram route may keep them with their absolute error of at most about
            ``min(rows, cols) * eps * lambda_max`` (clipped at 0) as long as none of them can be on the
            wrong side of the floor. With floor 0 every non-zero eigenvalue must be resolved.

    Returns:
        One ``Spectrum`` per stack, in order, with ``S * min(rows, cols)`` eigenvalues each.
    """
    if method not in ("auto", "svd"):
        raise ValueError(f"method must be 'auto' or 'svd', got {method!r}")
    floors = [0.0] * len(stacks) if floors is None else [float(f) for f in floors]
    if len(floors) != len(stacks):
        raise ValueError(f"{len(floors)} floors for {len(stacks)} stacks")
    cast = [stack.detach().to(svd_dtype(stack)) for stack in stacks]
    groups: dict[tuple, list[int]] = {}
    for i, stack in enumerate(cast):
        groups.setdefault((tuple(stack.shape[1:]), stack.device, stack.dtype), []).append(i)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(cast)
    with torch.no_grad():
        for members in groups.values():
            sizes = [cast[i].shape[0] for i in members]
            floor = np.repeat([floors[i] for i in members], sizes)
            batch = cast[members[0]] if len(members) == 1 else torch.cat([cast[i] for i in members], dim=0)
            computed = _matrix_eigenvalues(batch, method, floor)
            bounds = np.cumsum([0] + sizes)
            for i, lo, hi in zip(members, bounds[:-1], bounds[1:]):
                parts[i] = tuple(array[lo:hi] for array in computed)  # type: ignore[assignment]
    result = []
    for stack, part in zip(cast, parts):
        assert part is not None
        lam, by_svd, unresolved = part
        eps = torch.finfo(stack.dtype).eps
        lambda_max = float(lam.max()) if lam.size else 0.0
        tolerance = lambda_max * (max(stack.shape[1], stack.shape[2]) * eps) ** 2
        if unresolved.any():
            tolerance = max(tolerance, min(stack.shape[1], stack.shape[2]) * eps * lambda_max)
        result.append(Spectrum(eigenvalues=np.sort(lam.ravel()), zero_tolerance=tolerance, n_svd=int(by_svd.sum())))
    return result


def _matrix_eigenvalues(
    batch: torch.Tensor, method: Decomposition, floor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each matrix of ``batch``: its ``min(rows, cols)`` float64 eigenvalues of ``W^T W``, whether it
    took the SVD route, and whether it kept unresolved eigenvalues below its ``floor``."""
    n = batch.shape[0]
    k = min(batch.shape[-2], batch.shape[-1])
    if method == "svd" or batch.dtype != torch.float64 or n == 0 or k == 0:
        return _squared_singular_values(batch), np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    lam = _gram_eigenvalues(batch)  # ascending per matrix
    lambda_max = lam[:, -1:]
    error = k * np.finfo(np.float64).eps * lambda_max  # absolute error bound of every eigenvalue
    resolved = lam >= error / _GRAM_RELATIVE_ACCURACY
    # Below the floor with room for the error: only sums see it. NaN fails both tests.
    ignorable = lam < floor[:, None] - error
    # Strict on lambda_max: a zero matrix takes the SVD route.
    accepted = (resolved | ignorable).all(axis=1) & (lambda_max[:, 0] > 0.0)
    unresolved = accepted & ~resolved.all(axis=1)
    np.maximum(lam, 0.0, out=lam)
    redo = ~accepted
    if redo.any():
        lam[redo] = _squared_singular_values(batch[torch.from_numpy(redo).to(batch.device)])
    return lam, redo, unresolved


# On CPU both routes call NumPy's LAPACK (OpenBLAS in its wheels, as under WeightWatcher's SciPy):
# measured about twice as fast as torch's CPU LAPACK for these calls; accelerators use torch.
def _gram_eigenvalues(batch: torch.Tensor) -> np.ndarray:
    rows, cols = batch.shape[-2], batch.shape[-1]
    if batch.device.type == "cpu":
        w = batch.contiguous().numpy()
        if min(rows, cols) < _SYRK_MIN_SIZE:
            # Small matrices: one batched matmul beats a Python loop of BLAS calls.
            gram = w @ w.swapaxes(-1, -2) if rows <= cols else w.swapaxes(-1, -2) @ w
            return np.linalg.eigvalsh(gram)
        return np.linalg.eigvalsh(_cpu_gram_lower(w), UPLO="L")
    gram = batch @ batch.mT if rows <= cols else batch.mT @ batch
    return torch.linalg.eigvalsh(gram).cpu().numpy()


# Below this Gram size the per-matrix dsyrk loop costs more in Python calls than it saves in flops
# (9000 3 x 3 slices: 27 ms looped, 1.6 ms as one batched matmul); from 64 on it is on par or faster.
_SYRK_MIN_SIZE = 64


def _cpu_gram_lower(w: np.ndarray) -> np.ndarray:
    """The smaller Gram matrix of each C-contiguous float64 matrix in ``w`` ``(S, rows, cols)``, lower
    triangle only (the upper one is left unset: ``eigvalsh(..., UPLO="L")`` never reads it).

    BLAS ``dsyrk`` computes one triangle of ``A A^T``: half the flops of a matmul, and measured twice
    as fast as NumPy's batched ``w @ w^T`` on 512 x 512 float64 slices. Each C-contiguous matrix is
    handed over as its Fortran-ordered transpose and each result written in place (no copies).
    """
    n, rows, cols = w.shape
    k = min(rows, cols)
    gram = np.empty((n, k, k))
    # With a = w[i]^T in Fortran order: trans=1 gives a^T a = w w^T (rows x rows), trans=0 gives
    # a a^T = w^T w (cols x cols). The upper triangle of a Fortran-ordered result is the lower one of
    # the C-ordered gram[i] it is written into.
    trans = 1 if rows <= cols else 0
    for i in range(n):
        result = dsyrk(1.0, w[i].T, trans=trans, lower=0, c=gram[i].T, overwrite_c=1)
        if not np.shares_memory(result, gram):  # f2py copied instead of writing in place
            gram[i] = result.T
    return gram


def _squared_singular_values(batch: torch.Tensor) -> np.ndarray:
    if batch.device.type == "cpu":
        sigma = np.linalg.svd(batch.numpy(), compute_uv=False).astype(np.float64, copy=False)
    else:
        sigma = torch.linalg.svdvals(batch).to(device="cpu", dtype=torch.float64).numpy()
    return sigma**2


@dataclass(frozen=True)
class SpectralMetrics:
    """The metrics of one layer's spectrum; ``None`` where undefined, with ``skipped_reason`` saying why.

    With ``lambda`` the eigenvalues (``n_eigs`` of them) and ``lambda_max`` the largest:

    - ``alpha``, ``alpha_se``, ``xmin``, ``n_tail``, ``ks_distance``: the power-law tail fit
      (``workers.probes.functional.powerlaw``);
    - ``alpha_weighted = alpha * log10(lambda_max)``;
    - ``log_norm = log10(sum lambda)``, the log of the squared Frobenius norm;
    - ``log_spectral_norm = log10(lambda_max)``, the log of the squared spectral norm;
    - ``stable_rank = sum lambda / lambda_max`` (in ``[1, n_eigs]``);
    - ``entropy_rank = exp(H)`` with ``H = -sum_i p_i ln p_i`` the Shannon entropy (nats) of
      ``p_i = lambda_i / sum lambda``, ``0 ln 0 = 0``: the effective rank of Roy & Vetterli (2007),
      in ``[1, n_eigs]``, 1 for rank one, ``n_eigs`` for a flat spectrum;
    - ``log_alpha_norm = log10(sum lambda^alpha)`` (computed as a log-sum-exp, so it never overflows).
    """

    n_eigs: int
    alpha: float | None = None
    alpha_se: float | None = None
    xmin: float | None = None
    n_tail: int | None = None
    ks_distance: float | None = None
    alpha_weighted: float | None = None
    log_norm: float | None = None
    log_spectral_norm: float | None = None
    stable_rank: float | None = None
    entropy_rank: float | None = None
    log_alpha_norm: float | None = None
    skipped_reason: str | None = None


def spectral_metrics(
    eigenvalues: np.ndarray,
    *,
    convention: Convention = "priorprobe",
    min_tail: int = 10,
    zero_tolerance: float = 0.0,
) -> SpectralMetrics:
    """All metrics of one spectrum (definitions in ``SpectralMetrics``).

    Args:
        eigenvalues: the layer's eigenvalues, non-negative (any order).
        convention: which power-law fit and which eigenvalues enter it.
            ``"priorprobe"`` (default): ``fit_power_law`` with ``min_tail`` on the numerically
            non-zero eigenvalues (``> zero_tolerance``); a fit is attempted only when there are at
            least ``2 * min_tail`` of them, so the KS search has more than ``min_tail`` candidate
            ``xmin`` and the tail can be a proper part of the spectrum.
            ``"weightwatcher"``: ``fit_power_law_weightwatcher`` on the eigenvalues above ``1e-5``
            (``fit_power_law_weightwatcher_small_n`` when fewer than 20 are, as ``WWFit`` does),
            attempted when the layer has at least 10 eigenvalues in total.
        min_tail: smallest tail of the PriorProbe fit (default 10); unused by the WeightWatcher fit.
        zero_tolerance: see ``Spectrum.zero_tolerance`` (default 0: only exact zeros are zero).

    Returns:
        ``SpectralMetrics``. The norm metrics use every eigenvalue (zeros add nothing to the sums).
        A zero matrix has every metric ``None``; a layer without a fit has ``alpha`` and the two
        metrics built on it ``None``; ``skipped_reason`` says which and why.
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    n_eigs = int(lam.size)
    if n_eigs == 0 or not np.isfinite(lam).all():
        return SpectralMetrics(n_eigs=n_eigs, skipped_reason="no finite eigenvalues")
    if lam[0] < 0.0:
        raise ValueError("eigenvalues of W^T W cannot be negative")
    lambda_max = float(lam[-1])
    if lambda_max <= 0.0:
        return SpectralMetrics(n_eigs=n_eigs, skipped_reason="all eigenvalues are zero (a zero weight matrix)")

    total = float(lam.sum())
    positive = lam[lam > 0.0]
    p = positive / total
    norm_metrics = dict(
        log_norm=float(np.log10(total)),
        log_spectral_norm=float(np.log10(lambda_max)),
        stable_rank=total / lambda_max,
        entropy_rank=float(np.exp(-np.sum(p * np.log(p)))),
    )

    fit, reason = _fit(lam, convention, min_tail, zero_tolerance)
    if fit is None:
        return SpectralMetrics(n_eigs=n_eigs, skipped_reason=reason, **norm_metrics)
    log_alpha_norm = _log10_sum_of_powers(positive, fit.alpha)
    return SpectralMetrics(
        n_eigs=n_eigs,
        alpha=fit.alpha,
        alpha_se=fit.alpha_se,
        xmin=fit.xmin,
        n_tail=fit.n_tail,
        ks_distance=fit.ks_distance,
        alpha_weighted=fit.alpha * norm_metrics["log_spectral_norm"],
        log_alpha_norm=log_alpha_norm,
        **norm_metrics,
    )


def _log10_sum_of_powers(values: np.ndarray, power: float) -> float:
    """``log10(sum values**power)`` for positive ``values``, as a log-sum-exp (never overflows)."""
    # Plain NumPy: scipy.special.logsumexp costs milliseconds of dispatch per call, which showed up
    # in the probe's profile on small models.
    exponents = power * np.log(values)
    largest = float(exponents.max())
    return (largest + float(np.log(np.sum(np.exp(exponents - largest))))) / float(np.log(10.0))


def _fit(lam: np.ndarray, convention: Convention, min_tail: int, zero_tolerance: float) -> tuple[PowerLawFit | None, str | None]:
    if convention == "weightwatcher":
        if lam.size < WW_MIN_NUM_EVALS:
            return None, f"{lam.size} eigenvalues; WeightWatcher fits need at least {WW_MIN_NUM_EVALS}"
        above = lam[lam > WW_FIT_THRESHOLD]
        # WWFit switches to its small-sample fit below 20 values.
        fit_ww = fit_power_law_weightwatcher_small_n if above.size < WW_SMALL_N_CUTOFF else fit_power_law_weightwatcher
        fit = fit_ww(above)
        if fit is None:
            return None, f"fewer than 2 eigenvalues above {WW_FIT_THRESHOLD:g}, or a tail of identical values"
        return fit, None
    if convention != "priorprobe":
        raise ValueError(f"convention must be 'priorprobe' or 'weightwatcher', got {convention!r}")
    nonzero = lam[lam > zero_tolerance]
    if nonzero.size < 2 * min_tail:
        return None, (
            f"{nonzero.size} non-zero eigenvalues; a power-law fit needs at least 2 * min_tail = {2 * min_tail}"
        )
    fit = fit_power_law(nonzero, min_tail=min_tail)
    if fit is None:
        return None, f"every tail of at least {min_tail} eigenvalues is one repeated value (no power law)"
    return fit, None


def weightwatcher_skip_reason(layer_type: LayerType, shape: Sequence[int]) -> str | None:
    """Why WeightWatcher would not analyse a layer of this type and weight shape, or ``None``.

    Its rule (``WWLayerIterator.layer_supported`` with ``pool=True``): with ``N`` and ``M`` the larger
    and smaller matrix dimension and ``rf`` the receptive field (kernel positions, 1 for dense
    layers), skip when ``M * rf < 10``, ``M * rf > 15000`` or ``N > 50000``. Conv3d is not a layer
    type it knows; its Conv1d path hands the 3-D kernel to its SVD as is, which has no one-to-one
    counterpart here, so both are skipped under this convention.
    """
    if layer_type in ("conv1d", "conv3d"):
        return f"WeightWatcher does not analyse {layer_type} layers comparably (convention='weightwatcher')"
    dims = (int(shape[0]), int(shape[1]))
    n, m = max(dims), min(dims)
    rf = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    if m * rf < WW_MIN_EVALS:
        return f"M * rf = {m * rf} eigenvalues < WeightWatcher's min_evals = {WW_MIN_EVALS}"
    if m * rf > WW_MAX_EVALS:
        return f"M * rf = {m * rf} eigenvalues > WeightWatcher's max_evals = {WW_MAX_EVALS}"
    if n > WW_MAX_N:
        return f"N = {n} > WeightWatcher's max_N = {WW_MAX_N}"
    return None


def weightwatcher_eigenvalue_scale(layer_type: LayerType) -> float:
    """Factor WeightWatcher applies to a layer's eigenvalues: 1/2 for Conv2d (``conv2d_norm``), else 1."""
    return WW_CONV2D_EIGENVALUE_SCALE if layer_type == "conv2d" else 1.0
