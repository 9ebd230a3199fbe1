"""``inductive_bias``: bits of information needed to generalise (docs/methods.md §1).

Boopathy et al., "Towards Exact Computation of Inductive Bias", IJCAI 2024. Sample S hypotheses
from the space (``init``: fresh random members; ``trained``: fresh members trained on the task's
training split with its budget; ``kernel``: Gaussian-process posterior samples with an RBF
kernel), take each one's exact test loss, fit a scaled non-central chi-squared to the losses and
report ``bits = -log2 P(loss <= epsilon)`` under the fit, with a percentile-bootstrap interval,
the empirical fraction with its Clopper-Pearson interval, and, for the kernel space, the exact
value from the generalised chi-squared law of the GP's test MSE, computed without sampling.

Where this differs from the reference code (docs/methods.md §1): losses are the exact mean over
the whole test set (the reference divides by the batch size); bits are base 2 (it returns nats);
the log-CDF is computed in log space so deep tails stay finite; intervals are reported.

Work is split into shards of ``shard_size`` hypotheses; hypothesis ``i`` depends only on
``(seed, i)``, so a sharded run (spread over every worker) gives exactly the unsharded losses on
workers with the same CPU instruction set (or GPU model), library builds and thread counts (README,
"Sharded runs"); elsewhere they agree to float rounding.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.specs import ArchSpec, input_signature
from workers.data.dataset import Dataset
from models.errors import InputError
from workers.probes.base import Probe, ProbeContext, ProbeParams
from workers.probes.metrics import Metric, MetricDefinition, Scope
from workers.probes.functional import gp_kernel
from workers.probes.functional.bits_estimate import empirical_estimate, estimate_bits
from workers.probes.functional.ensemble_training import default_chunk_size, sample_losses
from workers.probes.functional.generalized_chi2 import log_cdf as generalized_chi2_log_cdf
from workers.probes.functional.hypothesis_loss import test_losses
from workers.probes.functional.latent_spaces import LatentSpace, init_latent, kernel_latent, parameter_laws, trained_latent
from workers.probes.functional.rare_event import SplittingRun, combine_replicates, replicate_seed, subset_simulation
from workers.probes.functional.tail_families import FamilyEstimate, data_depth, lognormal_estimate, span_interval
from workers.probes.functional.bits_estimate import EXTRAPOLATION_THRESHOLD
from workers.runspec import TaskSpec, TrainSpec

Sampler = Literal["init", "trained", "kernel"]
# Which estimator gives the headline ``bits``/``ci95`` (docs/methods.md §1): the fitted non-central
# chi-squared tail, subset simulation on the space's Gaussian latent variables, or the exact law.
Method = Literal["fitted_tail", "rare_event", "exact"]
# A space's headline may also be ``empirical``: losses exactly 0 (zero_one on small test sets) fit no
# continuous tail, and then the fraction below epsilon is the answer (never a failed run).
EstimateMethod = Literal["fitted_tail", "rare_event", "exact", "empirical"]
_LOC = ("probes", "inductive_bias")
# No '.' in labels: they become segments of dotted metric keys (``inductive_bias.spaces.<label>.bits``).
_LABEL = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
# The run's own hypothesis space. Not "model": its losses are those of sampled hypotheses, not of
# the uploaded weights, and the artifact ``losses.target`` must not read as the model's losses.
MAIN_SPACE = "target"


class TrainOverrides(ProbeParams):
    """Replace parts of the task's training budget for the ``trained`` sampler."""

    optimizer: Literal["sgd", "adam"] | None = None
    lr: float | None = Field(default=None, gt=0, le=10)
    epochs: int | None = Field(default=None, ge=0, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)


class ComparedSpace(ProbeParams):
    """Another hypothesis space on the same task: an architecture (or the run's own with another
    ``init``) and/or another sampler. Its input size and output width must match the run's."""

    label: str = Field(min_length=1, max_length=64, description="name in the report ([A-Za-z0-9_-])")
    arch: ArchSpec | None = Field(default=None, description="default: the run's architecture")
    sampler: Sampler | None = Field(default=None, description="default: the probe's sampler")

    @field_validator("label")
    @classmethod
    def _label_chars(cls, value: str) -> str:
        if not _LABEL.match(value) or value == MAIN_SPACE:
            raise ValueError(f"use letters, digits, '_', '-' (and not '{MAIN_SPACE}', the run's own space)")
        return value


class RareEventParams(ProbeParams):
    """Subset simulation (``functional.rare_event``): ``replicates`` independent runs, one shard each."""

    chains: int = Field(default=1000, ge=20, le=1_000_000, description="samples per level")
    replicates: int = Field(default=8, ge=2, le=256, description="independent runs; ci95 from their spread")
    p0: float = Field(default=0.1, ge=0.01, le=0.5, description="conditional probability per level")
    target_acceptance: float = Field(default=0.3, ge=0.05, le=0.95, description="pCN acceptance the step size adapts to")
    moves_per_state: int = Field(default=3, ge=1, le=100, description="pCN moves between recorded chain states")

    @model_validator(mode="after")
    def _whole_seed_count(self) -> "RareEventParams":
        seeds = self.p0 * self.chains
        if abs(seeds - round(seeds)) > 1e-9 or round(seeds) < 2:
            raise ValueError(f"p0 * chains must be a whole number of at least 2 seeds, got {self.p0} * {self.chains}")
        return self


class InductiveBiasParams(ProbeParams):
    sampler: Sampler = Field(default="init", description="init | trained | kernel")
    method: Method = Field(
        default="fitted_tail",
        description="headline estimator: fitted_tail (fit to the samples), rare_event (subset simulation on the "
        "space's Gaussian latent variables), exact (kernel sampler with mse only)",
    )
    rare_event: RareEventParams = Field(default_factory=RareEventParams, description="settings of method rare_event")
    n_hypotheses: int = Field(default=1000, ge=30, le=1_000_000, description="hypotheses sampled per space")
    target_error: float | None = Field(default=None, gt=0, description="epsilon; default: the task's target_error")
    train: TrainOverrides = Field(default_factory=TrainOverrides, description="overrides of the task's training budget")
    lengthscale: float | None = Field(default=None, gt=0, description="RBF lengthscale; default: median pairwise distance")
    noise_variance: float = Field(default=gp_kernel.DEFAULT_NOISE_VARIANCE, gt=0, le=1e6)
    signal_variance: float = Field(default=gp_kernel.DEFAULT_SIGNAL_VARIANCE, gt=0, le=1e6)
    bootstrap: int = Field(default=200, ge=200, le=10_000, description="bootstrap refits for ci95 (docs/methods.md §1: B >= 200)")
    chunk_size: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="hypotheses trained at once (memory); default from a memory estimate; rounded to divide shard_size when there are several shards, to split the run evenly otherwise",
    )
    shard_size: int = Field(default=1000, ge=30, le=1_000_000, description="hypotheses per parallel work unit")
    histogram_bins: int = Field(default=40, ge=5, le=1000)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="default: the run's seed")
    compare: list[ComparedSpace] = Field(default_factory=list, max_length=8)

    @field_validator("compare")
    @classmethod
    def _unique_labels(cls, value: list[ComparedSpace]) -> list[ComparedSpace]:
        labels = [space.label for space in value]
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        return value


class SpaceEstimate(BaseModel):
    """The estimate for one hypothesis space (the run's own, ``target``, or a ``compare`` space)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sampler: Sampler
    arch: dict | None = Field(description="None for the kernel space")
    method: EstimateMethod = Field(default="fitted_tail", description="the estimator that produced bits and ci95")
    bits: float
    ci95: list[float]
    bits_is_lower_bound: bool = Field(
        default=False, description="fitted_tail with no sampled loss at or below epsilon: bits is the Clopper-Pearson "
        "lower bound (the truth is >= bits at 97.5% confidence), never the extrapolation")
    target_error: float
    n_hypotheses: int
    n_below: int
    empirical_fraction: float
    empirical_ci95: list[float]
    empirical_bits: float | None
    empirical_bits_ci95: list[float | None]
    extrapolated: bool
    fit: dict[str, Any]
    diverged: int
    histogram: dict[str, list]
    exact_bits: float | None = Field(default=None, description="kernel + mse only: from the exact law, no sampling")
    exact_method: str | None = None
    kernel: dict[str, Any] | None = Field(default=None, description="kernel hyperparameters actually used")
    model_loss: float | None = Field(default=None, description="the uploaded weights' own test loss")
    model_bits: float | None = Field(default=None, description="-log2 CDF(model_loss) under the fit")
    warnings: list[str] = Field(default_factory=list, description="what makes this estimate less trustworthy")
    fitted_tail: dict[str, Any] | None = Field(
        default=None, description="the non-central chi-squared fit's own bits and bootstrap ci95 (the extrapolation "
        "when bits_is_lower_bound; beside the headline when another method gives it)")
    tail_families: dict[str, Any] | None = Field(
        default=None, description="method fitted_tail: bits, bootstrap ci95, KS p-value of each tail family; "
        "ci95 spans every adequate family's interval")
    deepest_observed_bits: float | None = Field(default=None, description="log2(S): the depth of the smallest sampled loss")
    validated_depth_bits: float | None = Field(
        default=None, description="log2(S / 10): the deepest depth with 10 sampled losses at or below it")
    rare_event: dict[str, Any] | None = Field(
        default=None, description="method rare_event: replicate bits, evaluations, levels, acceptance, min_loss")


class RelativeBias(BaseModel):
    """``relative[a][b]``: how many more bits space ``a`` needs than space ``b`` on the same task."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    bits_difference: float = Field(description="bits(a) - bits(b): information a's prior supplies less than b's")
    ci95: list[float] = Field(
        description="fitted_tail: difference of the two spaces' independent bootstrap replicates; otherwise "
        "+-1.96 times the root sum of squares of the two intervals' half-widths / 1.96 (independent estimates)")


class InductiveBiasResult(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    loss: str
    seed: int
    target_error: float
    spaces: dict[str, SpaceEstimate] = Field(
        description=f"one estimate per hypothesis space: the run's own under '{MAIN_SPACE}', then each compare label"
    )
    relative: dict[str, dict[str, RelativeBias]] = Field(
        description="relative[a][b] for every pair of spaces, a before b in the order of 'spaces'"
    )


class InductiveBias(Probe):
    """Bits needed to pick a hypothesis with test loss <= epsilon out of the hypothesis space.

    Params: see ``InductiveBiasParams`` (served as JSON schema by ``GET /api/v1/probes``).

    Returns ``InductiveBiasResult``: ``spaces[label]`` for the run's own space (label ``target``)
    and each compared space (``bits``, ``ci95``, ``n_below``, ``empirical_*``, ``extrapolated``,
    ``fit``, ``diverged``, ``histogram``, ``exact_bits`` for the kernel, ``model_loss``/``model_bits``
    with uploaded weights), and ``relative[a][b]`` for each pair with a bootstrap interval
    (difference of the two spaces' independent bootstrap replicates). The full loss samples are
    artifacts ``losses.<label>``; timing is split into ``sampling_s`` and ``estimation_s``.

    ``method`` picks the headline ``bits``/``ci95`` of every space (docs/methods.md §1): ``fitted_tail``
    (default) reports the non-central chi-squared fit with an interval spanning both tail families'
    bootstrap intervals (``tail_families``), and, when no sampled loss reaches epsilon, the
    Clopper-Pearson lower bound instead (``bits_is_lower_bound``; the extrapolation stays under
    ``fitted_tail``); losses exactly 0 give the ``empirical`` fraction. ``rare_event`` measures the
    tail by subset simulation (``rare_event`` block; one shard per replicate), ``exact`` reads the
    kernel space's exact law. ``deepest_observed_bits`` and ``validated_depth_bits`` say how deep
    the sample itself reaches.

    Raises (as a failed run): ``ValueError`` when most hypotheses diverge, or when subset simulation
    stalls (every loss tied). ``InputError`` when the method does not apply to a space.
    """

    name = "inductive_bias"
    # 2.0.0: symmetric spaces, methods (fitted_tail with two tail families, rare_event, exact), lower-bound headline.
    version = "2.0.0"
    summary = "Bits of information needed to generalise: -log2 P(test loss <= epsilon) over the hypothesis space."
    paper = "https://arxiv.org/abs/2406.15941"
    requires_task = True
    benefits_from_gpu = True
    Params = InductiveBiasParams
    Result = InductiveBiasResult

    def __init__(self, params: InductiveBiasParams | None = None):
        super().__init__(params)
        self._posteriors: dict[str, gp_kernel.GPPosterior] = {}

    # --- validation before anything is queued -------------------------------------------------

    def _spaces(self, arch: ArchSpec) -> dict[str, tuple[Sampler, ArchSpec]]:
        spaces = {MAIN_SPACE: (self.params.sampler, arch)}
        for space in self.params.compare:
            spaces[space.label] = (space.sampler or self.params.sampler, space.arch or arch)
        return spaces

    def check_inputs(self, arch: ArchSpec, task: TaskSpec | None) -> None:
        super().check_inputs(arch, task)
        kind, shape = input_signature(arch)
        errors = []
        for index, space in enumerate(self.params.compare):
            if space.arch is None:
                continue
            other_kind, other_shape = input_signature(space.arch)
            if int(np.prod(other_shape)) != int(np.prod(shape)) or (other_kind == "tokens") != (kind == "tokens"):
                errors.append({"loc": [*_LOC, "compare", index, "arch"],
                               "msg": f"takes inputs of shape {list(other_shape)}; the task's data has shape {list(shape)} (the sizes must match)"})
            if space.arch.out_dim != arch.out_dim:
                errors.append({"loc": [*_LOC, "compare", index, "arch", "out_dim"],
                               "msg": f"is {space.arch.out_dim}; the run's architecture has out_dim {arch.out_dim}"})
        errors.extend(self._method_errors(arch, task))
        if errors:
            raise InputError(errors)

    def _method_errors(self, arch: ArchSpec, task: TaskSpec | None) -> list[dict]:
        """Spaces the chosen ``method`` cannot estimate (each with the reason)."""
        method, errors = self.params.method, []
        for label, (sampler, space_arch) in self._spaces(arch).items():
            if method == "exact" and (sampler != "kernel" or (task is not None and task.loss != "mse")):
                errors.append({"loc": [*_LOC, "method"], "msg": f"exact needs the kernel sampler and the mse loss; "
                               f"space '{label}' has sampler {sampler!r} and loss {task.loss if task else None!r}"})
            elif method == "rare_event" and sampler in ("init", "trained"):
                try:
                    parameter_laws(space_arch)
                except ValueError as exc:
                    errors.append({"loc": [*_LOC, "method"], "msg": f"space '{label}': {exc}"})
        return errors

    def check_dataset(self, description: dict) -> None:
        samplers = {self.params.sampler} | {space.sampler or self.params.sampler for space in self.params.compare}
        if "trained" in samplers and description["n_train"] == 0:
            raise InputError.at([*_LOC, "sampler"], "the trained sampler needs a dataset with a training split (X_train has 0 rows)")
        if "kernel" in samplers:
            if description["n_train"] == 0:
                raise InputError.at([*_LOC, "sampler"], "the kernel sampler conditions on the training split, which is empty")
            try:
                gp_kernel.check_kernel_size(description["n_train"], description["n_test"], description["target_dim"])
            except gp_kernel.KernelTooLargeError as exc:
                raise InputError.at([*_LOC, "sampler"], str(exc)) from None

    # --- sampling -------------------------------------------------------------------------------

    def _train_spec(self, task: TaskSpec) -> TrainSpec:
        overrides = {k: v for k, v in self.params.train.model_dump().items() if v is not None}
        return task.train.model_copy(update=overrides)

    def _seed(self, context: ProbeContext, space_index: int) -> int:
        base = self.params.seed if self.params.seed is not None else context.seed
        if space_index == 0:
            return base
        # Compared spaces draw independent streams, so their bootstrap replicates are independent.
        return int(np.random.SeedSequence([base, space_index, 0x1B]).generate_state(1)[0] & 0x7FFFFFFF)

    def _posterior(self, context: ProbeContext, arch: ArchSpec) -> gp_kernel.GPPosterior:
        dataset = context.dataset
        if "posterior" not in self._posteriors:
            try:
                self._posteriors["posterior"] = gp_kernel.gp_posterior(
                    dataset.X_train.double().numpy(),
                    self._gp_targets(dataset, arch),
                    dataset.X_test.double().numpy(),
                    lengthscale=self.params.lengthscale,
                    signal_variance=self.params.signal_variance,
                    noise_variance=self.params.noise_variance,
                    seed=self._seed(context, 0),
                )
            except gp_kernel.KernelTooLargeError as exc:
                raise InputError.at([*_LOC, "sampler"], str(exc)) from None
        return self._posteriors["posterior"]

    @staticmethod
    def _gp_targets(dataset: Dataset, arch: ArchSpec) -> np.ndarray:
        if dataset.task_type == "classification":
            # One GP per output unit, as wide as the networks' outputs, so the losses compare.
            return gp_kernel.one_hot(dataset.y_train.numpy(), arch.out_dim)
        return dataset.y_train.double().numpy().reshape(dataset.y_train.shape[0], -1)

    @staticmethod
    def _test_targets(dataset: Dataset) -> np.ndarray:
        if dataset.task_type == "classification":
            return dataset.y_test.numpy().astype(np.int64)
        return dataset.y_test.double().numpy().reshape(dataset.y_test.shape[0], -1)

    def _chunk_size(self, context: ProbeContext, sampler: Sampler, arch: ArchSpec) -> int | None:
        """One chunk size for every shard of a space.

        Batched CPU kernels round the tail of a tensor differently depending on its length, so
        losses are bit-identical between sharded and unsharded runs only when every shard runs the
        same chunks: the planner fixes the size, a divisor of ``shard_size`` when there are several
        shards (so no shard computes hypotheses of its neighbours). A run that fits in one shard
        splits its hypotheses into equal chunks instead: a divisor of ``shard_size`` there would
        make the last chunk compute up to ``shard_size - 1`` hypotheses it throws away (a run of
        128 with the default ``shard_size`` of 1000 trained 1000).
        """
        if sampler == "kernel":
            return None
        budget = self.params.chunk_size or default_chunk_size(
            arch, _reshaped_for(arch, context.dataset), self._train_spec(context.task) if sampler == "trained" else None,
            context.device,
        )
        n, shard_size = self.params.n_hypotheses, self.params.shard_size
        budget = max(1, min(budget, shard_size))
        if n <= shard_size:
            return math.ceil(n / math.ceil(n / budget))
        return max(d for d in range(1, budget + 1) if shard_size % d == 0)

    def _epsilon(self, context: ProbeContext) -> float:
        return self.params.target_error if self.params.target_error is not None else context.task.target_error

    def _latent(self, context: ProbeContext, sampler: Sampler, arch: ArchSpec) -> LatentSpace:
        if sampler == "kernel":
            return kernel_latent(self._posterior(context, context.arch), self._test_targets(context.dataset), context.task.loss)
        if sampler == "trained":
            # Each evaluation is a (batched) training run from the encoded init and data order.
            return trained_latent(arch, _reshaped_for(arch, context.dataset), context.task.loss,
                                  self._train_spec(context.task), context.device)
        return init_latent(arch, _reshaped_for(arch, context.dataset), context.task.loss, context.device)

    def run_shard(self, context: ProbeContext, shard: dict) -> dict:
        """Losses of hypotheses ``start .. start + count - 1`` of one space (non-finite -> None), or,
        for a shard with a ``replicate``, that subset-simulation run of the space."""
        labels = list(self._spaces(context.arch))
        sampler, arch = self._spaces(context.arch)[shard["space"]]
        seed = self._seed(context, labels.index(shard["space"]))
        task = context.task
        if "replicate" in shard:
            settings = self.params.rare_event
            latent = self._latent(context, sampler, arch)
            run = subset_simulation(latent.loss_fn, latent.dim, self._epsilon(context), n_chains=settings.chains,
                                    p0=settings.p0, target_acceptance=settings.target_acceptance,
                                    moves_per_state=settings.moves_per_state,
                                    seed=replicate_seed(seed, shard["replicate"]))
            return {"run": run.to_dict()}
        if sampler == "kernel":
            losses = gp_kernel.sample_kernel_losses(
                self._posterior(context, context.arch), self._test_targets(context.dataset), shard["count"], seed,
                loss=task.loss, first_index=shard["start"],
            )
        else:
            losses = sample_losses(
                arch, _reshaped_for(arch, context.dataset), task.loss, sampler, shard["count"], seed,
                train_spec=self._train_spec(task), device=context.device, chunk_size=shard["chunk_size"],
                start_index=shard["start"], run_size=self.params.n_hypotheses,
            )
        return {"losses": [float(x) if np.isfinite(x) else None for x in losses]}

    def run(self, context: ProbeContext) -> InductiveBiasResult:
        import time

        if context.dataset is None or context.task is None:
            raise InputError.at(["task"], "the inductive_bias probe needs a task with a dataset")
        self.check_dataset(context.dataset.describe())
        params, spaces = self.params, self._spaces(context.arch)
        errors = self._method_errors(context.arch, context.task)
        if errors:
            raise InputError(errors)
        epsilon = self._epsilon(context)
        shards = [
            {"space": label, "start": start, "count": min(params.shard_size, params.n_hypotheses - start),
             "chunk_size": self._chunk_size(context, sampler, arch)}
            for label, (sampler, arch) in spaces.items()
            for start in range(0, params.n_hypotheses, params.shard_size)
        ]
        if params.method == "rare_event":
            # One replicate per shard: the replicates spread over the workers like sampling does.
            shards += [{"space": label, "replicate": r} for label in spaces for r in range(params.rare_event.replicates)]
        started = time.perf_counter()
        results = context.shards.map(self, shards, context)
        context.timing["sampling_s"] = time.perf_counter() - started

        started = time.perf_counter()
        losses = {label: [] for label in spaces}
        runs: dict[str, list[SplittingRun]] = {label: [] for label in spaces}
        for shard, result in zip(shards, results):
            if "replicate" in shard:
                runs[shard["space"]].append(SplittingRun.from_dict(result["run"]))
            else:
                losses[shard["space"]].extend(np.nan if x is None else x for x in result["losses"])
        estimates, boots = {}, {}
        for index, (label, (sampler, arch)) in enumerate(spaces.items()):
            sample = np.asarray(losses[label], dtype=np.float64)
            context.artifacts[f"losses.{label}"] = sample
            if np.any(sample == 0):
                estimate = empirical_estimate(sample, epsilon, histogram_bins=params.histogram_bins)
            else:
                estimate = estimate_bits(sample, epsilon, n_boot=params.bootstrap, seed=self._seed(context, index),
                                         histogram_bins=params.histogram_bins)
            boots[label] = estimate.bootstrap
            estimates[label] = self._space_estimate(context, label, sampler, arch, estimate, epsilon, runs[label], sample)
        relative: dict[str, dict[str, RelativeBias]] = {}
        for a, b in itertools.combinations(spaces, 2):
            relative.setdefault(a, {})[b] = _relative(estimates[a], estimates[b], boots[a], boots[b])
        context.timing["estimation_s"] = time.perf_counter() - started
        return InductiveBiasResult(loss=context.task.loss, seed=self._seed(context, 0), target_error=epsilon,
                                   spaces=estimates, relative=relative)

    def _space_estimate(self, context, label, sampler, arch, estimate, epsilon, runs, sample) -> SpaceEstimate:
        fields = estimate.to_dict()
        for key in ("n_boot", "seed"):
            fields.pop(key, None)
        extra: dict[str, Any] = {}
        if sampler == "kernel":
            posterior = self._posterior(context, context.arch)
            extra["kernel"] = {"lengthscale": posterior.lengthscale, "signal_variance": posterior.signal_variance,
                               "noise_variance": posterior.noise_variance, "train_jitter": posterior.train_jitter}
            if context.task.loss == "mse":
                weights, noncentralities, offset = gp_kernel.kernel_mse_distribution(posterior, self._test_targets(context.dataset))
                exact = generalized_chi2_log_cdf(epsilon, weights, noncentralities, offset)
                extra["exact_bits"] = None if not np.isfinite(exact.bits) else 0.0 + float(exact.bits)  # no -0.0
                extra["exact_method"] = exact.method
        if label == MAIN_SPACE and context.has_uploaded_weights and sampler != "kernel":
            model_loss = _model_test_loss(context)
            extra["model_loss"] = model_loss if np.isfinite(model_loss) else None
            if extra["model_loss"] is not None and model_loss > 0 and estimate.fitted is not None:
                extra["model_bits"] = float(estimate.model_bits(model_loss))
        method = self.params.method
        has_fit = estimate.fitted is not None
        extra["fitted_tail"] = {"bits": fields["bits"], "ci95": fields["ci95"]} if has_fit else None
        extra["deepest_observed_bits"], extra["validated_depth_bits"] = data_depth(fields["n_hypotheses"],
                                                                                  EXTRAPOLATION_THRESHOLD)
        if method == "fitted_tail" and not has_fit:
            method = "empirical"
        if method == "fitted_tail":
            families = [FamilyEstimate("noncentral_chi2", fields["bits"], tuple(fields["ci95"]), fields["fit"]["ks_pvalue"]),
                        lognormal_estimate(sample[np.isfinite(sample)], epsilon, n_boot=self.params.bootstrap, seed=estimate.seed)]
            extra["tail_families"] = {f.family: f.to_dict() for f in families}
            low, high = span_interval(families)
            if fields["n_below"] == 0:
                # Nothing sampled reaches epsilon: the honest headline is the data's lower bound.
                bound = fields["empirical_bits_ci95"][0]
                fields["bits"], fields["ci95"] = bound, [bound, max(bound, high)]
                extra["bits_is_lower_bound"] = True
            else:
                fields["ci95"] = [low, high]
        elif method == "rare_event":
            measured = combine_replicates(runs)
            fields["bits"], fields["ci95"] = measured.bits, list(measured.ci95)
            extra["rare_event"] = measured.to_dict()
        elif method == "exact":
            if extra.get("exact_bits") is None:
                raise ValueError(f"epsilon {epsilon:g} lies below the support of the kernel space's test mse: "
                                 "no hypothesis reaches it (infinitely many bits)")
            fields["bits"], fields["ci95"] = extra["exact_bits"], [extra["exact_bits"]] * 2
        extra["warnings"] = _warnings(fields, method, extra)
        return SpaceEstimate(method=method, sampler=sampler, arch=None if sampler == "kernel" else arch.model_dump(mode="json"),
                             **fields, **extra)

    metric_definitions = (
        MetricDefinition(key="inductive_bias.bits", unit="bits", better="lower", scope=None,
                         description="-log2 P(test loss <= epsilon) of the run's own space, by the result's method (fitted_tail, rare_event, exact); a Clopper-Pearson lower bound when no sampled loss reaches epsilon (bits_is_lower_bound)"),
        MetricDefinition(key="inductive_bias.empirical_bits", unit="bits", better="lower", scope=None,
                         description="the same from the share of sampled losses below epsilon (Clopper-Pearson interval; only a lower bound when none is)"),
        MetricDefinition(key="inductive_bias.fraction_below_target", unit="fraction", better="higher", scope=None,
                         description="share of sampled hypotheses whose test loss is <= epsilon, Clopper-Pearson ci95"),
        MetricDefinition(key="inductive_bias.exact_bits", unit="bits", better="lower", scope="init",
                         description="kernel space with mse: bits from the exact law of the GP posterior's test mse, no sampling"),
        MetricDefinition(key="inductive_bias.model_loss", unit="loss", better="lower", scope="trained",
                         description="the uploaded weights' own test loss (the task's loss)"),
        MetricDefinition(key="inductive_bias.model_bits", unit="bits", better="none", scope="trained",
                         description="-log2 of the fitted CDF at the uploaded weights' own test loss: how deep in the space's tail they lie"),
        MetricDefinition(key="inductive_bias.spaces.<label>.bits", unit="bits", better="lower", scope=None,
                         description="bits of a compared space (params.compare) on the same task and epsilon"),
        MetricDefinition(key="inductive_bias.relative.<a>.<b>.bits", unit="bits", better="none", scope=None,
                         description="bits(a) - bits(b) with a bootstrap ci95; negative: a's prior supplies that much more information"),
    )

    @classmethod
    def metrics(cls, result: InductiveBiasResult) -> list[Metric]:
        by_key = {definition.key: definition for definition in cls.metric_definitions}
        spaces = result.spaces
        target = spaces[MAIN_SPACE]
        scope = _scope(target.sampler)
        n = target.n_hypotheses
        rows = [
            by_key["inductive_bias.bits"](target.bits, ci95=target.ci95, n=n, scope=scope),
            by_key["inductive_bias.empirical_bits"](target.empirical_bits, ci95=target.empirical_bits_ci95, n=n, scope=scope),
            by_key["inductive_bias.fraction_below_target"](target.empirical_fraction, ci95=target.empirical_ci95, n=n, scope=scope),
        ]
        if target.exact_bits is not None:
            rows.append(by_key["inductive_bias.exact_bits"](target.exact_bits))
        if target.model_loss is not None:
            rows.append(by_key["inductive_bias.model_loss"](target.model_loss, n=1))
        if target.model_bits is not None:
            rows.append(by_key["inductive_bias.model_bits"](target.model_bits, n=n))
        for label, space in spaces.items():
            if label != MAIN_SPACE:
                rows.append(by_key["inductive_bias.spaces.<label>.bits"](
                    space.bits, ci95=space.ci95, n=space.n_hypotheses, scope=_scope(space.sampler), label=label))
        for a, pairs in result.relative.items():
            for b, pair in pairs.items():
                rows.append(by_key["inductive_bias.relative.<a>.<b>.bits"](
                    pair.bits_difference, ci95=pair.ci95, n=min(spaces[a].n_hypotheses, spaces[b].n_hypotheses),
                    scope=_scope(spaces[a].sampler), a=a, b=b))
        return rows

    @classmethod
    def warnings(cls, result: InductiveBiasResult) -> list[str]:
        return [f"space '{label}': {message}" for label, space in result.spaces.items() for message in space.warnings]


def _scope(sampler: Sampler) -> Scope:
    # Trained hypotheses are trained members; init and kernel samples are drawn from the prior.
    return "trained" if sampler == "trained" else "init"


def _relative(a: SpaceEstimate, b: SpaceEstimate, boot_a: np.ndarray, boot_b: np.ndarray) -> RelativeBias:
    """``bits(a) - bits(b)``. Two fitted tails: the difference of the non-central chi-squared fits
    (also where a headline is a lower bound: the difference is then an extrapolation, and that
    space's warning says so) with the percentiles of the difference of their independent bootstrap
    replicates. Otherwise the two estimates are independent with roughly normal errors (rare_event:
    a t-interval on log P; exact: none), so the half-widths add in quadrature."""
    if a.method == b.method == "fitted_tail" and a.fitted_tail is not None and b.fitted_tail is not None:
        return RelativeBias(bits_difference=a.fitted_tail["bits"] - b.fitted_tail["bits"],
                            ci95=[float(v) for v in np.percentile(boot_a - boot_b, [2.5, 97.5])])
    difference = a.bits - b.bits
    half = float(np.hypot((a.ci95[1] - a.ci95[0]) / 2, (b.ci95[1] - b.ci95[0]) / 2))
    return RelativeBias(bits_difference=difference, ci95=[difference - half, difference + half])


def _warnings(fields: dict, method: Method = "fitted_tail", extra: dict | None = None) -> list[str]:
    extra = extra or {}
    notes = []
    if method == "empirical":
        notes.append(f"no tail was fitted ({fields['fit']['reason']}): bits is the empirical fraction below epsilon "
                     "with its Clopper-Pearson interval")
    if not fields["fit"]["adequate"] and method == "fitted_tail":
        notes.append(
            f"the scaled non-central chi-squared does not describe these losses (KS p = {fields['fit']['ks_pvalue']:.2g}); "
            "trust empirical_bits and its interval over bits"
        )
    if fields["extrapolated"] and method == "fitted_tail":
        tails = ", ".join(f"{name} {family['bits']:.3g}" for name, family in (extra.get("tail_families") or {}).items())
        depth = extra.get("validated_depth_bits")
        if fields["n_below"] == 0:
            notes.append(
                f"no sampled loss reaches epsilon (0 of {fields['n_hypotheses']}): bits is the Clopper-Pearson lower "
                f"bound, bits >= {fields['bits']:.3g}. The fitted tails extrapolate to {tails} bits, beyond the "
                f"validated depth of {depth:.3g} bits, where tail families disagree and the non-central chi-squared "
                "has been measured up to 40% low: use method rare_event (init, kernel) or exact (kernel, mse) to measure it")
        else:
            notes.append(
                f"only {fields['n_below']} sampled losses reach epsilon: bits {fields['bits']:.3g} extrapolate the fitted "
                f"tail beyond the validated depth of {depth:.3g} bits; ci95 spans the tail families ({tails})")
    rare_event = extra.get("rare_event")
    if rare_event is not None:
        low_acceptance = [a for a in rare_event["acceptance"] if a is not None and a < 0.05]
        if low_acceptance:
            notes.append(f"rare_event: {len(low_acceptance)} of {len(rare_event['acceptance'])} replicates accepted "
                         "under 5% of their moves: their chains barely mixed, so the interval may be too narrow")
    if fields["diverged"]:
        notes.append(f"{fields['diverged']} hypotheses diverged (non-finite loss) and were excluded")
    return notes


def _reshaped_for(arch: ArchSpec, dataset: Dataset) -> Dataset:
    """The task's data in the per-sample shape ``arch`` takes (e.g. 8x8 images for an MLP of 64)."""
    import dataclasses

    _, shape = input_signature(arch)
    if dataset.sample_shape == tuple(shape):
        return dataset
    return dataclasses.replace(
        dataset,
        X_train=dataset.X_train.reshape(dataset.X_train.shape[0], *shape),
        X_test=dataset.X_test.reshape(dataset.X_test.shape[0], *shape),
    )


def _model_test_loss(context: ProbeContext) -> float:
    """The uploaded weights' exact mean test loss, leaving the model as it was."""
    dataset, model = context.dataset, context.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(dataset.X_test.to(context.device))
    finally:
        model.train(was_training)
    return float(test_losses(outputs[None].double(), dataset.y_test.to(context.device), context.task.loss, dataset.task_type)[0])
