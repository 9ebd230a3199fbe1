"""``invariance``: invariance and equivariance error under input transforms (docs/methods.md §2).

The maths lives in ``workers.probes.functional.invariance`` and the transforms in
``workers.transforms``; this module picks the inputs, evaluates the uploaded weights and the random
members as stacked ensembles, and assembles the report.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from models.flat_input import FlatInput
from models.specs import data_signature, input_signature, token_vocab_size
from models.errors import InputError
from workers.probes.base import Probe, ProbeContext, ProbeParams, ProgressFn, task_signature
from workers.probes.functional import invariance as F
from workers.probes.metrics import Metric, MetricDefinition
from workers.probes.weight_spectrum import init_member_seeds
from workers.transforms import Transform, build_transform, check_transform, default_transform_names

# Mixed into seeds so the probe's random streams differ from each other and from the members' seeds.
_INPUTS_TAG, _BOOTSTRAP_TAG, _TRANSFORM_TAG = 0x1A7A, 0xB007, 0x7F0
# A ratio at or below this is "exact" invariance: float32 round-off in a truly invariant network
# gives ~1e-14, while a network that is merely close to invariant stays far above it.
EXACT_TOLERANCE = 1e-9
_LOC = ("probes", "invariance", "transforms")


class TransformChoice(ProbeParams):
    """A transform by name with its range width (``magnitude``; default: the transform's own) and,
    for the warps (translate, rotate, scale), what they read beyond the border (``padding``)."""

    name: str = Field(min_length=1, max_length=64)
    magnitude: float | None = Field(default=None, allow_inf_nan=False)
    padding: Literal["zeros", "border", "reflection", "circular"] | None = Field(
        default=None,
        description="translate/rotate/scale only: zeros (default), border, reflection or circular, as torch's "
        "grid_sample/pad name them; docs/methods.md says how this changes a Lie derivative",
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Estimate(_Strict):
    value: float | None = Field(description="None when undefined (e.g. the outputs do not vary)")
    ci95: tuple[float, float] | None = Field(description="percentile bootstrap over inputs")


class LieDerivative(Estimate):
    unit: str = Field(description="1 / t_unit^2: mean squared derivative over the output variance")
    t_unit: str
    generators: list[str]
    per_generator: dict[str, float | None]


class Spread(_Strict):
    """One metric across random members, with a 95% interval for one member's value
    (``functional.invariance.Spread``): ratios and Lie derivatives on a log scale when all are > 0,
    consistency clipped to [0, 1]."""

    mean: float | None
    low: float | None
    high: float | None
    interval: Literal["percentile", "t_prediction", "t_prediction_log", "none"]
    n: int
    values: list[float | None]


class InitMetrics(_Strict):
    invariance_ratio: Spread
    equivariance_ratio: Spread | None
    consistency: Spread | None
    lie_derivative: Spread | None


class TransformReport(_Strict):
    description: str
    kind: Literal["discrete", "continuous"]
    magnitude: float | None
    magnitude_meaning: str | None
    padding: str | None = Field(default=None, description="what a warp read beyond the border; None: it reads none")
    invariance_ratio: Estimate
    equivariance_ratio: Estimate | None
    equivariance_note: str | None = Field(description="why equivariance_ratio is null")
    consistency: Estimate | None = Field(description="classifiers: share of inputs whose argmax is unchanged")
    lie_derivative: LieDerivative | None
    init: InitMetrics | None


class RankedTransform(_Strict):
    name: str
    invariance_ratio: float | None
    ci95: tuple[float, float] | None
    init_mean: float | None
    init_interval: tuple[float, float] | None
    versus_init: Literal["more_invariant", "less_invariant", "within_init_range", "exact_at_both"] | None = Field(
        description="the weights' ci95 lies below / above the random members' interval, or overlaps it; "
        f"exact_at_both: the weights and every member are at or below {EXACT_TOLERANCE:g} (float round-off)"
    )


class InvarianceSummary(_Strict):
    ranking: list[RankedTransform] = Field(description="most invariant first; undefined ratios last")
    exactly_invariant: list[str] = Field(description=f"invariance_ratio <= {EXACT_TOLERANCE:g} for the weights")
    built_in: list[str] = Field(description=f"invariance_ratio <= {EXACT_TOLERANCE:g} for every random member")


class InvarianceResult(_Strict):
    weights: Literal["uploaded", "random_init"]
    inputs: Literal["task_test_set", "synthetic"]
    input_kind: str
    sample_shape: list[int]
    output_shape: list[int]
    n_inputs: int
    classifier: bool = Field(
        description="from the task; without one, assumed for vector outputs (per input or position) of >= 2 entries"
    )
    bootstrap: int
    init_seeds: list[int]
    transforms: dict[str, TransformReport]
    summary: InvarianceSummary


class Invariance(Probe):
    """How much the function changes when its input is transformed (Gruver et al., ICLR 2023).

    For each transform ``g`` (``workers.transforms``: images, sequences, tabular, or the task's
    ``custom`` permutation) and ``n_inputs`` test inputs (the task's test set, else seeded synthetic
    inputs: uniform [0, 1] images, standard-normal features, uniform token ids), with one random
    group element per input within the transform's range:

    - ``invariance_ratio = E||f(gx) - f(x)||^2 / E||f(x) - f(x')||^2``, ``x'`` another test input;
    - ``equivariance_ratio``, the same against ``g f(x)``, where ``g`` also acts on the outputs
      (per-position outputs of a sequence model, image-shaped outputs); else null with the reason;
    - ``consistency`` for classifiers, the share of inputs whose argmax is unchanged (per position
      for per-position outputs, compared with ``g f(x)`` where equivariance applies);
    - ``lie_derivative`` for continuous transforms: ``E||d/dt f(g_t x)||^2 / Var f(x)`` at ``t = 0``,
      forward mode (``torch.func.jvp``) vmapped over generators, members and inputs, averaged over
      generators (``per_generator`` too), in ``1 / t_unit^2``. Spatial transforms differentiate
      through a Catmull-Rom resampling, so the translation generator is minus the central-difference
      image gradient (``workers.transforms.warp``).

    Each metric has a bootstrap ``ci95`` over inputs for the weights, and under ``init`` its mean
    and 95% interval over ``n_init_samples`` random members of the same hypothesis space, evaluated
    as one stacked ensemble on the same inputs and draws: which invariances the architecture builds
    in and which training learned. ``summary`` ranks the transforms.

    Params: ``transforms`` (names or ``{name, magnitude}``; default: all for the input kind except
    ``custom``), ``n_inputs`` (256), ``n_init_samples`` (8; 0 gives ``init: null``), ``bootstrap``
    (200 resamples), ``batch_size`` (256 inputs per forward pass, bounds memory).

    The model is never called: its parameters and buffers are copied into a stacked ensemble and
    evaluated in eval mode without its hooks, so its mode, ``requires_grad``, weights and hooks are
    untouched.
    """

    name = "invariance"
    version = "1.0.0"
    summary = "Invariance/equivariance error and Lie derivatives under input transforms, weights vs random init"
    paper = "https://arxiv.org/abs/2210.02984"

    class Params(ProbeParams):
        transforms: list[str | TransformChoice] | None = Field(default=None, min_length=1, max_length=32)
        n_inputs: int = Field(default=256, ge=8, le=100_000, description="test inputs (subsampled, seeded)")
        n_init_samples: int = Field(default=8, ge=0, le=64, description="random members for the init block")
        bootstrap: int = Field(default=200, ge=50, le=10_000, description="bootstrap resamples for ci95")
        batch_size: int = Field(default=256, ge=1, le=65_536, description="inputs per forward pass")

    Result = InvarianceResult

    metric_definitions = (
        MetricDefinition(key="invariance.<transform>.invariance_ratio", unit="ratio", better="none", scope="trained",
                         description="E||f(g x) - f(x)||^2 / E||f(x') - f(x)||^2 for the weights (0: invariant), bootstrap ci95 over inputs"),
        MetricDefinition(key="invariance.<transform>.equivariance_ratio", unit="ratio", better="none", scope="trained",
                         description="the same with g applied to the outputs too (0: equivariant), bootstrap ci95 over inputs"),
        MetricDefinition(key="invariance.<transform>.consistency", unit="fraction", better="none", scope="trained",
                         description="classifiers: share of inputs whose predicted class the transform leaves unchanged"),
        MetricDefinition(key="invariance.<transform>.lie_derivative", unit="1/t_unit^2", better="none", scope="trained",
                         description="mean squared derivative of the outputs along the transform at t = 0 over the output variance"),
        MetricDefinition(key="invariance.<transform>.init.invariance_ratio", unit="ratio", better="none", scope="init",
                         description="invariance ratio over random members of the space: mean and 95% interval for one member"),
        MetricDefinition(key="invariance.<transform>.init.lie_derivative", unit="1/t_unit^2", better="none", scope="init",
                         description="Lie derivative over random members of the space: mean and 95% interval for one member"),
    )

    @classmethod
    def metrics(cls, result: InvarianceResult) -> list[Metric]:
        by_key = {definition.key.removeprefix("invariance.<transform>."): definition for definition in cls.metric_definitions}
        rows: list[Metric] = []
        for name, report in result.transforms.items():
            for field in ("invariance_ratio", "equivariance_ratio", "consistency", "lie_derivative"):
                estimate = getattr(report, field)
                if estimate is not None:
                    rows.append(by_key[field](estimate.value, ci95=estimate.ci95, n=result.n_inputs, transform=name))
            for field in ("invariance_ratio", "lie_derivative"):
                spread = getattr(report.init, field) if report.init is not None else None
                if spread is not None:
                    rows.append(by_key[f"init.{field}"](spread.mean, ci95=(spread.low, spread.high), n=spread.n, transform=name))
        return rows

    def choices(self, kind: str) -> list[tuple[str, float | None, str | None]]:
        """The requested ``(name, magnitude, padding)`` triples, or the defaults for input ``kind``."""
        if self.params.transforms is None:
            return [(name, None, None) for name in default_transform_names(kind)]
        return [(c, None, None) if isinstance(c, str) else (c.name, c.magnitude, c.padding) for c in self.params.transforms]

    def check_inputs(self, arch, task) -> None:
        super().check_inputs(arch, task)
        kind, shape = task_signature(arch, task)
        self.build_transforms(kind, shape, None if task is None else task.input_permutation)

    def check_dataset(self, description: dict) -> None:
        # x' must be another test input, so a single test row cannot define the ratio's denominator.
        if description.get("n_test", 2) < 2:
            raise InputError.at(["task", "dataset"], "the invariance probe needs at least 2 test inputs")

    def build_transforms(self, kind: str, shape: tuple[int, ...], permutation: Sequence[int] | None) -> list[Transform]:
        """The requested transforms for ``kind`` inputs; ``InputError`` at ``probes.invariance.transforms[.i]``."""
        transforms, seen = [], set()
        for i, (name, magnitude, padding) in enumerate(self.choices(kind)):
            if name in seen:
                raise InputError.at([*_LOC, i], f"transform {name!r} is listed twice; keep one entry per name")
            seen.add(name)
            check_transform(name, kind, magnitude, [*_LOC, i], padding)
            if name == "custom" and permutation is None:
                raise InputError.at(
                    list(_LOC), "transform 'custom' needs task.input_permutation (a permutation of the input indices)"
                )
            transforms.append(build_transform(name, kind, shape, magnitude, permutation, [*_LOC, i], padding))
        return transforms

    def run(self, context: ProbeContext) -> InvarianceResult:
        """Measure ``context.model`` and ``n_init_samples`` members from ``context.make_member``."""
        kind, shape = data_signature(context.arch, context.data_input)
        permutation = None if context.task is None else context.task.input_permutation
        transforms = self.build_transforms(kind, shape, permutation)
        x, source = select_inputs(context, kind, shape, self.params.n_inputs)
        dataset = context.dataset
        model, make_member = context.model, context.make_member
        if shape != input_signature(context.arch)[1]:
            # A flat-vector model probed with structured data: transforms act on the data's shape.
            model = FlatInput(context.model, len(shape))

            def make_member(seed: int, _make=context.make_member, _dims=len(shape)) -> torch.nn.Module:
                return FlatInput(_make(seed), _dims)

        return self.measure(
            model, make_member, transforms, x, seed=context.seed, input_kind=kind, inputs=source,
            classifier=None if dataset is None else dataset.task_type == "classification",
            has_uploaded_weights=context.has_uploaded_weights, progress=context.progress,
        )

    def measure(
        self,
        model: torch.nn.Module,
        make_member: Callable[[int], torch.nn.Module],
        transforms: Sequence[Transform],
        x: torch.Tensor,
        *,
        seed: int,
        input_kind: str,
        inputs: Literal["task_test_set", "synthetic"],
        classifier: bool | None = None,
        has_uploaded_weights: bool = True,
        progress: ProgressFn | None = None,
    ) -> InvarianceResult:
        """The probe's work on given inputs ``x`` ``(N, *sample_shape)`` and built transforms.

        ``classifier=None`` (no task) assumes class scores when the output per input, or per position,
        is a vector of >= 2 entries. Used by ``run``, and directly by the experiments (e.g. image
        transforms on an MLP that flattens images).
        """
        progress = progress or (lambda fraction, message: None)
        params, n = self.params, x.shape[0]
        seeds = init_member_seeds(seed, params.n_init_samples)
        ensembles = [F.StackedEnsemble([model])]
        if seeds:
            ensembles.append(F.StackedEnsemble([make_member(s) for s in seeds]))

        def evaluate(inputs: torch.Tensor) -> torch.Tensor:  # (members, N, *out), uploaded first
            return torch.cat([ensemble(inputs) for ensemble in ensembles])

        rng = np.random.default_rng([seed % 2**63, _BOOTSTRAP_TAG])
        partner = torch.as_tensor(F.derangement(n, rng), device=x.device)
        counts = F.bootstrap_counts(n, params.bootstrap, rng)
        with torch.no_grad():
            fx = _in_batches(evaluate, x, params.batch_size)
            out_shape = tuple(fx.shape[2:])
            if classifier is None:  # no task: class scores are a vector per input or per position
                classifier = len(out_shape) in (1, 2) and out_shape[-1] >= 2
            reference = F.squared_norms(fx - fx[:, partner], 2)
            outputs_flat = fx.flatten(start_dim=2).double().cpu().numpy()
            reports = {}
            for j, transform in enumerate(transforms):
                progress(j / len(transforms), f"transform {transform.name}")
                transform_seed = _transform_seed(seed, transform.name)
                draws = transform.sample(n, torch.Generator().manual_seed(transform_seed))
                fgx = _in_batches(evaluate, x, params.batch_size, lambda lo, hi, xb: transform.apply(xb, draws[lo:hi]))
                terms = _metric_terms(transform, fx, fgx, draws, reference, out_shape, classifier)
                if transform.continuous:
                    terms["lie"] = self._lie_squares(transform, ensembles, x, transform_seed)
                reports[transform.name] = _report(transform, terms, outputs_flat, counts, out_shape, bool(seeds))
        progress(1.0, "done")
        return InvarianceResult(
            weights="uploaded" if has_uploaded_weights else "random_init", inputs=inputs, input_kind=input_kind,
            sample_shape=list(x.shape[1:]), output_shape=list(out_shape), n_inputs=n, classifier=classifier,
            bootstrap=params.bootstrap, init_seeds=seeds, transforms=reports, summary=_summarize(reports),
        )

    def _lie_squares(
        self, transform: Transform, ensembles: list[F.StackedEnsemble], x: torch.Tensor, seed: int
    ) -> np.ndarray:
        """``||d/dt_k f_m(g_t x_i)||^2`` as ``(K, members, N)``; tangents once, derivatives in input batches."""
        tangents = transform.tangents(x, seed)
        size, chunks = self.params.batch_size, []
        for lo in range(0, x.shape[0], size):
            xb, tb = x[lo : lo + size], tangents[:, lo : lo + size]
            derivatives = torch.cat([ensemble.lie_derivative(xb, tb) for ensemble in ensembles], dim=1)
            chunks.append(F.squared_norms(derivatives, 3))
        return np.concatenate(chunks, axis=2)


def select_inputs(context: ProbeContext, kind: str, shape: tuple[int, ...], n_inputs: int) -> tuple[torch.Tensor, str]:
    """``n_inputs`` rows of the task's test set (seeded subsample), else seeded synthetic inputs."""
    rng = np.random.default_rng([context.seed % 2**63, _INPUTS_TAG])
    dataset = context.dataset
    if dataset is not None:
        X = dataset.X_test
        if X.shape[0] >= 1 and math.prod(X.shape[1:]) == math.prod(shape):
            # The dataset is in the architecture's shape; the probe works in the data's.
            X = X.reshape(X.shape[0], *shape)
        if tuple(X.shape[1:]) != tuple(shape) or X.shape[0] < 2:
            raise InputError.at(
                ["task", "dataset"], f"the invariance probe needs >= 2 test inputs of shape {list(shape)}; "
                f"got {list(X.shape)}",
            )
        if X.shape[0] > n_inputs:
            X = X[torch.as_tensor(np.sort(rng.choice(X.shape[0], n_inputs, replace=False)))]
        dtype = torch.long if kind == "tokens" else context.dtype
        return X.to(device=context.device, dtype=dtype), "task_test_set"
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if kind == "tokens":
        x = torch.randint(0, token_vocab_size(context.arch), (n_inputs, *shape), generator=generator)
    elif kind == "image":
        x = torch.rand(n_inputs, *shape, generator=generator, dtype=torch.float64).to(context.dtype)
    else:
        x = torch.randn(n_inputs, *shape, generator=generator, dtype=torch.float64).to(context.dtype)
    return x.to(context.device), "synthetic"


def _transform_seed(seed: int, name: str) -> int:
    state = np.random.SeedSequence((seed % 2**63, _TRANSFORM_TAG, zlib.crc32(name.encode()))).generate_state(1)
    return int(state[0])


def _in_batches(fn, x: torch.Tensor, batch_size: int, prepare=None) -> torch.Tensor:
    """``fn`` over input batches of ``x`` (each optionally transformed by ``prepare(lo, hi, batch)``),
    joined on the input axis of the ensemble outputs (axis 1)."""
    parts = []
    for lo in range(0, x.shape[0], batch_size):
        batch = x[lo : lo + batch_size]
        parts.append(fn(batch if prepare is None else prepare(lo, lo + batch.shape[0], batch)))
    return torch.cat(parts, dim=1)


def _metric_terms(transform, fx, fgx, draws, reference, out_shape, classifier) -> dict[str, Any]:
    """Per-member, per-input terms ``(members, N)`` of every sample-based metric."""
    terms: dict[str, Any] = {"invariance": F.squared_norms(fgx - fx, 2), "reference": reference}
    expected = fx
    if transform.acts_on(out_shape):
        members = fx.shape[0]
        repeated = draws.repeat(members, *([1] * (draws.ndim - 1)))
        expected = transform.apply(fx.flatten(0, 1), repeated).reshape(fx.shape)
        terms["equivariance"] = F.squared_norms(fgx - expected, 2)
    if classifier:
        terms["consistency"] = F.argmax_agreement(fgx, expected, 2)
    return terms


def _report(transform, terms, outputs_flat, counts, out_shape, with_init) -> TransformReport:
    """One transform's report: estimates with ci95 for member 0 (the weights), spreads over the rest."""
    members = terms["invariance"].shape[0]
    per_member: dict[str, list[F.Estimate]] = {}
    per_generator: dict[str, float | None] = {}
    for m in range(members):
        boot = counts if m == 0 else None  # intervals over inputs for the weights; members get a spread
        row = {"invariance_ratio": F.ratio_estimate(terms["invariance"][m], terms["reference"][m], boot)}
        if "equivariance" in terms:
            row["equivariance_ratio"] = F.ratio_estimate(terms["equivariance"][m], terms["reference"][m], boot)
        if "consistency" in terms:
            row["consistency"] = F.mean_estimate(terms["consistency"][m], boot)
        if "lie" in terms:
            row["lie_derivative"], generators = F.lie_estimate(terms["lie"][:, m], outputs_flat[m], boot)
            if m == 0:
                per_generator = dict(zip(transform.generators, generators))
        for key, estimate in row.items():
            per_member.setdefault(key, []).append(estimate)

    def estimate(key):
        return Estimate(value=per_member[key][0].value, ci95=per_member[key][0].ci95) if key in per_member else None

    def spread(key):
        if key not in per_member:
            return None
        values = [e.value for e in per_member[key][1:]]
        if key == "consistency":
            return Spread(**vars(F.member_spread(values, bounds=(0.0, 1.0))))
        return Spread(**vars(F.member_spread(values, bounds=(0.0, None), log_scale=True)))  # ratios: scale-free

    lie = None
    if "lie_derivative" in per_member:
        first = per_member["lie_derivative"][0]
        lie = LieDerivative(
            value=first.value, ci95=first.ci95, unit=f"1/({transform.t_unit})^2", t_unit=transform.t_unit,
            generators=list(transform.generators), per_generator=per_generator,
        )
    init = None
    if with_init:
        init = InitMetrics(invariance_ratio=spread("invariance_ratio"), equivariance_ratio=spread("equivariance_ratio"),
                           consistency=spread("consistency"), lie_derivative=spread("lie_derivative"))
    spec = transform.magnitude_spec
    return TransformReport(
        description=transform.description, kind="continuous" if transform.continuous else "discrete",
        magnitude=transform.magnitude, magnitude_meaning=None if spec is None else spec.meaning, padding=transform.padding,
        invariance_ratio=estimate("invariance_ratio"), equivariance_ratio=estimate("equivariance_ratio"),
        equivariance_note=None if "equivariance" in terms else transform.equivariance_note(out_shape),
        consistency=estimate("consistency"), lie_derivative=lie, init=init,
    )


def _summarize(reports: dict[str, TransformReport]) -> InvarianceSummary:
    rows, built_in = [], []
    for name, report in reports.items():
        ratio, init = report.invariance_ratio, report.init.invariance_ratio if report.init else None
        if init is not None and init.values and all(v is not None and v <= EXACT_TOLERANCE for v in init.values):
            built_in.append(name)
        interval = (init.low, init.high) if init is not None and init.low is not None else None
        versus = None
        if name in built_in and ratio.value is not None and ratio.value <= EXACT_TOLERANCE:
            versus = "exact_at_both"  # both are round-off; comparing their sizes would mean nothing
        elif interval is not None and ratio.ci95 is not None:
            versus = ("more_invariant" if ratio.ci95[1] < interval[0]
                      else "less_invariant" if ratio.ci95[0] > interval[1] else "within_init_range")
        rows.append(RankedTransform(
            name=name, invariance_ratio=ratio.value, ci95=ratio.ci95, init_mean=None if init is None else init.mean,
            init_interval=interval, versus_init=versus,
        ))
    rows.sort(key=lambda r: math.inf if r.invariance_ratio is None else r.invariance_ratio)
    exact = [r.name for r in rows if r.invariance_ratio is not None and r.invariance_ratio <= EXACT_TOLERANCE]
    return InvarianceSummary(ranking=rows, exactly_invariant=exact, built_in=built_in)
