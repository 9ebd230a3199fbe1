"""``weight_spectrum``: heavy-tailed spectral metrics of the weights (docs/methods.md §4).

The maths lives in ``workers.probes.functional.spectrum`` and ``...functional.powerlaw``; this module
finds the layers of a model, batches their SVDs, and reports per layer, averaged over layers, and
for random members of the same hypothesis space.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from workers.probes.base import Probe, ProbeContext, ProbeParams
from workers.probes.metrics import Metric, MetricDefinition
from workers.probes.functional.spectrum import (
    METRIC_NAMES,
    WW_FIT_THRESHOLD,
    ConvMode,
    Convention,
    LayerType,
    spectra,
    spectral_metrics,
    svd_dtype,
    weight_matrices,
    weightwatcher_eigenvalue_scale,
    weightwatcher_skip_reason,
)
from workers.probes.functional.member_spread import member_spread

# Which modules carry a weight matrix the probe analyses. Attention projections in this codebase are
# plain nn.Linear layers (q, k, v, out), so they are covered; subclasses count too.
_LAYER_TYPES: tuple[tuple[type[torch.nn.Module], LayerType], ...] = (
    (torch.nn.Linear, "linear"),
    (torch.nn.Embedding, "embedding"),
    (torch.nn.Conv1d, "conv1d"),
    (torch.nn.Conv2d, "conv2d"),
    (torch.nn.Conv3d, "conv3d"),
)
# Mixed into the seed of the random members so their stream differs from the model's own seed.
_INIT_SEED_TAG = 0x5BEC7
# The layer-mean summary fields reported as metrics (``alpha`` is keyed ``alpha_mean``).
_SUMMARY_METRICS = ("alpha_mean", "alpha_weighted", "log_norm", "log_spectral_norm", "stable_rank", "entropy_rank", "log_alpha_norm")


class _Strict(BaseModel):
    # NaN and inf are not JSON: undefined values are None, and validation enforces it.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LayerSpectrum(_Strict):
    """One layer: its metrics (``SpectralMetrics``), ``None`` where undefined as ``skipped_reason`` says."""

    name: str
    type: LayerType
    shape: list[int]
    n_eigs: int
    alpha: float | None
    alpha_se: float | None
    xmin: float | None
    n_tail: int | None
    ks_distance: float | None
    alpha_weighted: float | None
    log_norm: float | None
    log_spectral_norm: float | None
    stable_rank: float | None
    entropy_rank: float | None
    log_alpha_norm: float | None
    skipped_reason: str | None


class SpectrumSummary(_Strict):
    """Mean of each metric over the layers where it is defined (``None`` if none is)."""

    n_layers: int = Field(description="layers found (Linear, Embedding, Conv1d/2d/3d)")
    n_layers_analysed: int = Field(description="layers with norm metrics")
    n_layers_with_alpha: int = Field(description="layers with a power-law fit")
    alpha: float | None
    alpha_weighted: float | None
    log_norm: float | None
    log_spectral_norm: float | None
    stable_rank: float | None
    entropy_rank: float | None
    log_alpha_norm: float | None


class MetricSpread(_Strict):
    """One summary metric across random members.

    ``values``: the member's layer mean, per member (``None`` where undefined); ``n``: members where
    defined; ``mean`` over those. ``[low, high]`` is a 95% interval for the value of *one* random
    member: with ``n >= 20``, the 2.5th and 97.5th percentiles of the values (``"percentile"``); with
    ``2 <= n < 20``, the Student-t prediction interval ``mean ± t(0.975, n-1) * sd * sqrt(1 + 1/n)``
    (``"t_prediction"``; it assumes roughly normal values); with ``n < 2`` none (``"none"``).
    """

    mean: float | None
    low: float | None
    high: float | None
    interval: Literal["percentile", "t_prediction", "none"]
    n: int
    values: list[float | None]


class InitSpectrum(_Strict):
    """The summary metrics over ``n_members`` random members built with ``seeds``."""

    n_members: int
    seeds: list[int]
    metrics: dict[str, MetricSpread]


class WeightSpectrumResult(_Strict):
    convention: Convention
    conv_mode: ConvMode
    weights: Literal["uploaded", "random_init"]
    svd_dtype: str | None = Field(description="dtype(s) of the SVDs, e.g. float64 on CPU; None if no layer")
    layers: list[LayerSpectrum]
    summary: SpectrumSummary
    init: InitSpectrum | None


class WeightSpectrum(Probe):
    """Heavy-tailed self-regularisation metrics of every weight matrix (Martin & Mahoney 2021).

    Idea: training correlates the weights, and the empirical spectral density (ESD) of ``W^T W``
    grows a power-law tail ``p(lambda) ∝ lambda^-alpha``; smaller ``alpha`` means more strongly
    correlated weights, while a random Gaussian init has a Marchenko-Pastur bulk (large ``alpha``,
    stable rank near ``M / (1 + sqrt(M/N))^2``). Per layer (nn.Linear, including the attention
    projections; nn.Embedding; nn.Conv1d/2d/3d) the probe takes ``lambda = sigma^2``, in float64 on CPU
    from batched ``eigvalsh`` of the smaller Gram matrix where that keeps 6 significant digits and from
    ``torch.linalg.svdvals`` elsewhere, in float32 on GPU from ``svdvals`` (never fp16; see
    ``functional.spectrum``), and reports ``alpha`` with its
    standard error, ``xmin``, ``n_tail``, ``ks_distance``, and ``alpha_weighted``, ``log_norm``,
    ``log_spectral_norm``, ``stable_rank``, ``entropy_rank``, ``log_alpha_norm``, as defined in
    ``functional.spectrum.SpectralMetrics``; the summary averages them over layers; ``init`` gives the
    same summary for ``n_init_samples`` random members of the hypothesis space.

    Params:
        convention: ``"priorprobe"`` (default) or ``"weightwatcher"`` (below).
        conv_mode: ``"slices"`` (default): a kernel ``(out, in, *k)`` gives one ``(out, in)`` matrix per
            kernel position, eigenvalues pooled into one ESD; ``"reshape"``: the one matrix
            ``(out, in * prod(k))``. WeightWatcher pools slices, so ``"reshape"`` is refused with it.
        min_tail: smallest power-law tail (default 10, 5..10000); a fit needs ``2 * min_tail``
            non-zero eigenvalues. WeightWatcher has no such bound, so it is refused with that convention.
        n_init_samples: random members for ``init`` (default 8, 0..64; 0 gives ``init: null``). Their
            seeds are drawn from ``numpy.random.SeedSequence((seed, tag))``, so they are fixed by the
            run's seed and differ from it.

    Convention ``"weightwatcher"`` reproduces WeightWatcher's ``analyze()`` defaults (read from its
    source, ``weightwatcher/weightwatcher.py``, ``WW_powerlaw.py``, ``RMT_Util.py``, ``constants.py``):

    - Conv2d kernels are sliced per kernel position and pooled (``pool=True``); the slices are scaled
      by ``sqrt(1/2)`` (``conv2d_norm=True``), so their eigenvalues are halved: ``log_norm`` and
      ``log_spectral_norm`` drop by ``log10 2``, ``alpha_weighted`` and ``log_alpha_norm`` change,
      ``alpha`` does not (it is scale-free). Linear and Embedding layers are not scaled.
    - Layer size limits: with ``N``/``M`` the larger/smaller matrix dimension and ``rf`` the number of
      kernel positions, layers with ``M * rf < 10`` (``min_evals``; WeightWatcher 0.7.7's default is
      8, below), ``M * rf > 15000`` (``max_evals``) or ``N > 50000`` (``max_N``) are not analysed; here
      they are listed with ``None`` metrics and ``skipped_reason`` (WeightWatcher omits them).
    - Power-law fit (``pl_package="ww"``, ``WWFit``): on the eigenvalues ``> 1e-5``; every value but the
      largest is a candidate ``xmin`` (tails of 2 count; ``min_tail`` does not apply); the KS distance
      is ``max_k |F(x_k) - k/n|`` (lower empirical CDF only); below 20 such eigenvalues its small-sample
      fit (WeightWatcher 0.7.7: tails of at least 8, exponent ``1 + (n - 1) / sum ln(x / xmin)``).
    - ``log_norm = log10 sum lambda`` (its ``log_norm`` column: squared Frobenius norm, not normalised),
      ``log_spectral_norm``, ``stable_rank``, ``alpha_weighted``, ``log_alpha_norm``: same formulas.

    Differences that remain, under both conventions (measured against WeightWatcher 0.7.7 in
    ``tests/workers/probes/test_weight_spectrum_vs_weightwatcher.py``; table in ``docs/weight_spectrum.md``):

    - Layer size limit ``min_evals``: 10 here, 8 in WeightWatcher 0.7.7 (``DEFAULT_MIN_EVALS``), so
      layers with ``M * rf`` of 8 or 9 are analysed by it and not here; pass ``min_evals=10`` to
      ``analyze`` to compare. Its fit has no 10-eigenvalue floor any more either (2 values suffice).
    - ``entropy_rank = exp(H)``; WeightWatcher's ``entropy`` column is ``H / ln(rank)`` (rank by NumPy's
      tolerance), i.e. ``ln(entropy_rank) / ln(rank)``.
    - Precision: WeightWatcher copies PyTorch weights to float32 (fp16 when CUDA is present) before a
      float64 SVD; here the weights are decomposed in float64 on CPU (Gram eigenvalues or SVD, above;
      float32 SVD on GPU), never fp16.
    - A failed fit is ``alpha = -1`` in WeightWatcher and enters its averages; here it is ``None`` and
      summaries average over the layers where a metric is defined. Degenerate fits are ``None`` too:
      an infinite ``alpha`` (a tail of identical values; WeightWatcher 0.7.7 reports ``inf``, or 0
      below 20 values) and a single eigenvalue above ``1e-5`` (it fails). In its small-sample fallback
      (fewer than 8 values above ``1e-5``) its ``sigma`` is ``-1 / sqrt(n)``; ``alpha_se`` here is
      ``(alpha - 1) / sqrt(n)``.
    - Conv1d and Conv3d are skipped under ``"weightwatcher"``: its Conv1d path hands the 3-D kernel to
      its SVD as is (no one-to-one counterpart), Conv3d is not a type it knows.
    - Conv2d slices are always ``(out, in)`` matrices. WeightWatcher slices differently when
      ``out + in < kh + kw`` (its channel-order guess flips), and for kernels with an even number of
      positions and ``out < in`` its size check uses ``in`` rather than ``min(out, in)`` (its N/M swap
      sits inside the slice loop); neither is reproduced.
    - Layers are found by ``isinstance`` (subclasses included, e.g. MultiheadAttention's ``out_proj``);
      WeightWatcher also matches class names containing "linear", "conv1d", "conv2d", "embedding".
      Packed ``in_proj_weight`` of ``nn.MultiheadAttention`` is analysed by neither.

    Convention ``"priorprobe"``: no Conv2d scaling and no size limits; the fit of
    ``functional.powerlaw.fit_power_law`` (distinct-value candidates leaving ``>= min_tail`` values,
    two-sided KS distance) on the numerically non-zero eigenvalues.

    The model is only read: no mode, ``requires_grad``, hook or weight changes, no gradients.

    Artifacts: ``eigenvalues.<layer>``, each analysed layer's eigenvalues of the weights under study,
    as the fit saw them (the dashboard draws the ESD and the fitted tail from them).
    """

    name = "weight_spectrum"
    version = "1.0.0"
    summary = "Heavy-tailed spectral metrics of the weight matrices (power-law alpha, norms, ranks)"
    paper = "https://www.nature.com/articles/s41467-021-24025-8"

    class Params(ProbeParams):
        convention: Convention = "priorprobe"
        conv_mode: ConvMode = "slices"
        min_tail: int = Field(default=10, ge=5, le=10_000, description="smallest power-law tail")
        n_init_samples: int = Field(default=8, ge=0, le=64, description="random members for the init block")

        # Field validators run only on values the user gave, so defaults never trip them; the
        # convention field is declared first, so it is in info.data here.
        @field_validator("conv_mode")
        @classmethod
        def _weightwatcher_pools_slices(cls, value: str, info: ValidationInfo) -> str:
            if info.data.get("convention") == "weightwatcher" and value != "slices":
                raise ValueError("convention='weightwatcher' pools kernel slices; use conv_mode='slices'")
            return value

        @field_validator("min_tail")
        @classmethod
        def _weightwatcher_has_no_min_tail(cls, value: int, info: ValidationInfo) -> int:
            if info.data.get("convention") == "weightwatcher":
                raise ValueError(
                    "min_tail does not apply with convention='weightwatcher' (its fit accepts any tail "
                    "of 2 or more); remove it or use convention='priorprobe'"
                )
            return value

    Result = WeightSpectrumResult

    metric_definitions = tuple(
        definition
        for name, unit, meaning in (
            ("alpha_mean", "exponent", "power-law exponent of the eigenvalue tail, mean over layers with a fit"),
            ("alpha_weighted", "exponent x log10", "alpha * log10(largest eigenvalue), mean over layers"),
            ("log_norm", "log10", "log10 of the squared Frobenius norm, mean over layers"),
            ("log_spectral_norm", "log10", "log10 of the largest eigenvalue, mean over layers"),
            ("stable_rank", "rank", "sum of eigenvalues / largest eigenvalue, mean over layers"),
            ("entropy_rank", "rank", "exp of the spectral entropy, mean over layers"),
            ("log_alpha_norm", "log10", "log10 of sum lambda^alpha, mean over layers"),
        )
        for definition in (
            MetricDefinition(key=f"weight_spectrum.{name}", unit=unit, better="none", scope="trained", description=meaning),
            MetricDefinition(key=f"weight_spectrum.init.{name}", unit=unit, better="none", scope="init",
                             description=f"{meaning}, over random members: mean and 95% interval for one member"),
        )
    )

    @classmethod
    def metrics(cls, result: WeightSpectrumResult) -> list[Metric]:
        by_key = {definition.key: definition for definition in cls.metric_definitions}
        summary, init = result.summary, result.init
        rows: list[Metric] = []
        for name in _SUMMARY_METRICS:
            field = "alpha" if name == "alpha_mean" else name
            n_layers = summary.n_layers_with_alpha if field == "alpha" else summary.n_layers_analysed
            rows.append(by_key[f"weight_spectrum.{name}"](getattr(summary, field), n=n_layers))
            spread = init.metrics.get(field) if init is not None else None
            if spread is not None:
                rows.append(by_key[f"weight_spectrum.init.{name}"](spread.mean, ci95=(spread.low, spread.high), n=spread.n))
        return rows

    def run(self, context: ProbeContext) -> WeightSpectrumResult:
        """Analyse ``context.model`` and ``n_init_samples`` members from ``context.make_member``."""
        params = self.params
        n_steps = 1 + params.n_init_samples
        context.progress(0.0, "computing weight spectra")
        layers, dtypes, eigenvalues = self._analyse(context.model)
        # Each analysed layer's eigenvalues (as the fit saw them), for plots of its ESD.
        for name, values in eigenvalues.items():
            context.artifacts[f"eigenvalues.{name}"] = values
        context.progress(1.0 / n_steps, f"analysed {len(layers)} layers")

        init = None
        if params.n_init_samples > 0:
            seeds = init_member_seeds(context.seed, params.n_init_samples)
            summaries = []
            for k, seed in enumerate(seeds):
                member = context.make_member(seed)
                summaries.append(_summarize(self._analyse(member)[0]))
                del member
                context.progress((k + 2) / n_steps, f"random member {k + 1}/{len(seeds)}")
            init = InitSpectrum(
                n_members=len(seeds),
                seeds=seeds,
                metrics={m: _spread([getattr(s, m) for s in summaries]) for m in METRIC_NAMES},
            )

        return WeightSpectrumResult(
            convention=params.convention,
            conv_mode=params.conv_mode,
            weights="uploaded" if context.has_uploaded_weights else "random_init",
            svd_dtype=",".join(sorted(dtypes)) or None,
            layers=layers,
            summary=_summarize(layers),
            init=init,
        )

    def _analyse(self, model: torch.nn.Module) -> tuple[list[LayerSpectrum], set[str], dict[str, np.ndarray]]:
        """Per-layer metrics of one model, the SVD dtypes used, and each analysed layer's eigenvalues."""
        params = self.params
        weightwatcher = params.convention == "weightwatcher"
        found = list(_spectral_layers(model))
        stacks, reasons, dtypes = [], [], set()
        with torch.no_grad():
            for _, kind, weight in found:
                stack = weight_matrices(weight.detach(), params.conv_mode)
                reason = weightwatcher_skip_reason(kind, tuple(weight.shape)) if weightwatcher else None
                if reason is None and not _all_finite(weight):
                    reason = "the weights contain NaN or inf"
                reasons.append(reason)
                stacks.append(stack)
            analysed = [i for i, reason in enumerate(reasons) if reason is None]
            floors = None
            if weightwatcher:
                # Its fit sees only the (scaled) eigenvalues above 1e-5; smaller ones only enter sums.
                floors = [WW_FIT_THRESHOLD / weightwatcher_eigenvalue_scale(found[i][1]) for i in analysed]
            computed = dict(zip(analysed, spectra([stacks[i] for i in analysed], floors=floors)))

        layers, eigenvalues = [], {}
        for i, (name, kind, weight) in enumerate(found):
            n_eigs = stacks[i].shape[0] * min(stacks[i].shape[1], stacks[i].shape[2])
            if i not in computed:
                layers.append(_layer_row(name, kind, weight, {"n_eigs": n_eigs, "skipped_reason": reasons[i]}))
                continue
            dtypes.add(str(svd_dtype(stacks[i])).removeprefix("torch."))
            spectrum = computed[i]
            scale = weightwatcher_eigenvalue_scale(kind) if weightwatcher else 1.0
            eigenvalues[name] = np.asarray(spectrum.eigenvalues * scale, dtype=np.float64)
            metrics = spectral_metrics(
                eigenvalues[name],
                convention=params.convention,
                min_tail=params.min_tail,
                zero_tolerance=spectrum.zero_tolerance * scale,
            )
            layers.append(_layer_row(name, kind, weight, vars(metrics)))
        return layers, dtypes, eigenvalues


def init_member_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the ``n`` random members: 31-bit integers drawn from ``SeedSequence((seed, tag))``."""
    sequence = np.random.SeedSequence((seed % 2**64, _INIT_SEED_TAG))
    return [int(s) & 0x7FFFFFFF for s in sequence.generate_state(n, dtype=np.uint32)]


def _all_finite(weight: torch.Tensor) -> bool:
    """Whether every entry is finite, from one float64 sum: any NaN or inf makes it NaN or inf, and
    finite float16/32 entries cannot overflow it. A third of ``torch.isfinite(w).all()``'s time on CPU,
    where that was a visible share of the probe's time on wide layers."""
    if weight.dtype == torch.float64:
        return bool(torch.isfinite(weight).all())  # a float64 sum of finite values can overflow
    return bool(torch.isfinite(weight.sum(dtype=torch.float64)))


def _spectral_layers(model: torch.nn.Module):
    """(name, type, weight) of every analysable module, in ``named_modules`` order.

    An ONNX graph (``models.graph.module.GraphModule``) has no layer modules: it names its weight
    matrices and kernels itself, by their role in the graph.
    """
    if hasattr(model, "spectral_weights"):
        yield from model.spectral_weights()
        return
    for name, module in model.named_modules():
        for cls, kind in _LAYER_TYPES:
            if isinstance(module, cls):
                weight = getattr(module, "weight", None)
                if isinstance(weight, torch.Tensor) and not torch.nn.parameter.is_lazy(weight):
                    yield name or "<root>", kind, weight
                break


def _layer_row(name: str, kind: LayerType, weight: torch.Tensor, metrics: dict) -> LayerSpectrum:
    row = {field: None for field in LayerSpectrum.model_fields}
    row.update(metrics)
    row.update(name=name, type=kind, shape=list(weight.shape))
    return LayerSpectrum(**row)


def _summarize(layers: list[LayerSpectrum]) -> SpectrumSummary:
    means = {}
    for metric in METRIC_NAMES:
        values = [getattr(layer, metric) for layer in layers if getattr(layer, metric) is not None]
        means[metric] = float(np.mean(values)) if values else None
    return SpectrumSummary(
        n_layers=len(layers),
        n_layers_analysed=sum(layer.log_norm is not None for layer in layers),
        n_layers_with_alpha=sum(layer.alpha is not None for layer in layers),
        **means,
    )


def _spread(values: list[float | None]) -> MetricSpread:
    """Mean and 95% interval for one random member's value (method in ``MetricSpread``)."""
    spread = member_spread(values)
    mean, low, high, interval, n = spread.mean, spread.low, spread.high, spread.interval, spread.n
    return MetricSpread(mean=mean, low=low, high=high, interval=interval, n=n, values=list(values))
