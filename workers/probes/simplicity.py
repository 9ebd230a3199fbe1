"""``simplicity``: function-space complexity of a network and of random members of its space (docs/methods.md §3).

The maths lives in ``workers.probes.functional.complexity`` (the three metrics) and
``...functional.grids`` (where the function is evaluated); this module evaluates the uploaded model
and an ensemble of random members on one grid, scores every output channel, and summarises.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from scipy import stats
from torch.func import functional_call, stack_module_state, vmap

from models.registry import output_shape
from models.specs import input_signature
from models.errors import InputError
from workers.probes.base import Probe, ProbeContext, ProbeParams
from workers.probes.metrics import Metric, MetricDefinition
from workers.probes.functional.complexity import (
    Window,
    calibration_signals,
    flatten_near_constant,
    lz_complexity,
    mean_frequency,
    poly_order,
)
from workers.probes.functional.grids import DEFAULT_SPREAD, Grid, grid_kind, make_grid
from workers.probes.functional.member_spread import member_spread

METRICS = ("mean_frequency", "poly_order", "lz_complexity")
# Mixed into the run seed so the members' and the grid's random streams differ from the model's own.
_MEMBER_SEED_TAG = 0x51B1E
_GRID_SEED_TAG = 0x6121D
# Grid values of one network (channels x planes x points) kept at once: the float64 FFT of 2**24
# values takes ~270 MB. Members are scored in batches that stay under it.
MAX_VALUES_PER_NETWORK = 2**24
# All networks together: the LZ parse costs ~1-4 us per value on one core, so this caps it at minutes.
MAX_VALUES_TOTAL = 2**26
# Activation values one forward call may produce (members x points x per-sample activations).
_ACTIVATION_BUDGET = 2**25
# Stacked parameters of one vmapped batch of members.
_STACKED_PARAMETER_BUDGET = 2**27
# Test inputs that place the planes and measure the spread: more add nothing but memory (float64 copies).
MAX_REFERENCE_INPUTS = 4096
_LOC = ["probes", "simplicity"]


class _Strict(BaseModel):
    # NaN and inf are not JSON: undefined values are None, and validation enforces it.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ChannelComplexity(_Strict):
    """One output channel's metrics, averaged over the planes (``None`` if undefined on every plane)."""

    mean_frequency: float | None
    poly_order: float | None
    lz_complexity: float | None


class ModelComplexity(_Strict):
    """The probed weights: each metric averaged over output channels and planes, and per channel."""

    weights: Literal["uploaded", "random_init"]
    mean_frequency: float | None
    poly_order: float | None
    lz_complexity: float | None
    per_channel: list[ChannelComplexity]


class MetricSpread(_Strict):
    """One metric (mean over channels and planes) across random members.

    ``values``: per member (``None`` where undefined); ``n``: members where defined; ``mean`` over them.
    ``[low, high]`` is a 95% interval for the value of *one* random member: with ``n >= 20`` the 2.5th
    and 97.5th percentiles (``"percentile"``); with ``2 <= n < 20`` the Student-t prediction interval
    ``mean ± t(0.975, n-1) sd sqrt(1 + 1/n)`` (``"t_prediction"``, assumes roughly normal values); else
    none. ``model_percentile``: where the probed weights' value falls among the members, in [0, 100]
    (``scipy.stats.percentileofscore``, ``kind="mean"``: ties count half).
    """

    mean: float | None
    low: float | None
    high: float | None
    interval: Literal["percentile", "t_prediction", "none"]
    n: int
    values: list[float | None]
    model_percentile: float | None


class InitComplexity(_Strict):
    """The three metrics over ``n_members`` random members built with ``seeds``."""

    n_members: int
    seeds: list[int]
    mean_frequency: MetricSpread
    poly_order: MetricSpread
    lz_complexity: MetricSpread


class CalibrationSignal(_Strict):
    """A reference function scored by the same code on the same grid size (see ``calibration_signals``)."""

    signal: str
    description: str
    mean_frequency: float
    mean_frequency_no_window: float = Field(description="mean_frequency without a window, for comparison")
    poly_order: float
    lz_complexity: float


class GridInfo(_Strict):
    kind: Literal["line", "box", "planes"]
    size: int
    planes: int
    dims: int
    through: str
    spread: str
    half_widths: list[list[float]]
    window: str
    max_degree: int
    lz_scan: str


class SimplicityResult(_Strict):
    model: ModelComplexity
    init: InitComplexity | None
    calibration: list[CalibrationSignal]
    grid: GridInfo


class Simplicity(Probe):
    """How complex the functions of a network are, on grids through its input space (Teney et al. 2024).

    Idea ("Neural Redshift"): random networks are not random functions; their architecture sets a
    preference for simple functions (ReLU MLPs stay low-frequency as weights grow; tanh, Gaussian and
    sin activations do not). The probe evaluates the network on a G x G grid: the input box for 2-D
    inputs, random 2-D planes ``x0 + s u + t v`` through test points for any other input size (image
    inputs: planes in the flattened input, reshaped to the image), a G-point line for 1-D inputs.
    Per output channel (logit) it computes ``functional.complexity``'s ``mean_frequency`` (Hann window
    by default: without one a plain ramp scores ~0.19 at G = 64 from edge leakage), ``poly_order``
    (tensor Legendre least squares up to ``max_degree`` per axis) and ``lz_complexity`` (median
    binarisation, LZ76, normalised by ``n / log2 n``, rows read in order). ``model`` averages each
    metric over channels and planes (and lists channels); ``init`` gives the same averages for
    ``n_init_samples`` random members, evaluated as one ``torch.func.vmap`` ensemble over stacked
    parameters, with an interval and the probed weights' percentile among them. ``calibration`` scores
    reference functions (constant, ramp, cosines, white noise) with the same code and grid size.

    Grid placement: planes pass through distinct test inputs (seeded choice) with seeded random
    orthonormal ``u, v``; ``s`` and ``t`` span ±2 standard deviations of the test inputs' projections
    onto ``u`` and ``v`` (a seeded subset of 4096 test inputs when there are more). The box and line
    span ±2 standard deviations of each coordinate around the test inputs' mean. Without a dataset
    the reference is ``N(0, I)``: spans of ±2, planes through seeded standard normal points. Grids
    whose values vary less than 1e-5 of their magnitude are scored as constant (float32 rounding is
    not complexity). The interval of ``init`` is the 2.5/97.5 percentiles of the members for 20 or
    more members, a Student-t prediction interval below that (``MetricSpread``).

    Params:
        grid_size: G, points per axis (default 64, 16..256).
        n_planes: planes for inputs of more than 2 values (default 4, 1..32); ignored for 1-D and 2-D.
        n_init_samples: random members (default 16, 0..256; 0 gives ``init: null``); their seeds are
            drawn from ``numpy.random.SeedSequence((seed, tag))``.
        window: ``"hann"`` (default) or ``"none"`` for ``mean_frequency``.
        max_degree: Legendre degree per axis for ``poly_order`` (default 8, 1..32, at most G // 2).

    Token inputs are refused: ids are discrete, there is no plane through them. Grids too large for
    memory or time are refused before the run (``MAX_VALUES_PER_NETWORK``, ``MAX_VALUES_TOTAL``).
    The model is only read: its modes are set to eval for the evaluation and restored, no
    ``requires_grad``, hook or weight changes, no gradients.
    """

    name = "simplicity"
    # Token ids are discrete: there is no plane through them to evaluate the network on.
    supported_input_kinds = frozenset({"tabular", "image", "sequence"})
    version = "1.0.0"
    summary = "Function-space complexity on input grids: Fourier mean frequency, Legendre order, LZ complexity"
    paper = "https://arxiv.org/abs/2403.02241"
    benefits_from_gpu = True

    class Params(ProbeParams):
        grid_size: int = Field(default=64, ge=16, le=256, description="points per grid axis, G")
        n_planes: int = Field(default=4, ge=1, le=32, description="random planes for inputs of more than 2 values")
        n_init_samples: int = Field(default=16, ge=0, le=256, description="random members for the init block")
        window: Window = Field(default="hann", description="window before the FFT of mean_frequency")
        max_degree: int = Field(default=8, ge=1, le=32, description="Legendre degree per axis for poly_order")

        # grid_size is declared first, so it is in info.data (when valid) here.
        @field_validator("max_degree")
        @classmethod
        def _fit_is_well_conditioned(cls, value: int, info: ValidationInfo) -> int:
            size = info.data.get("grid_size")
            if size is not None and value > size // 2:
                raise ValueError(
                    f"max_degree {value} is more than grid_size // 2 = {size // 2}; equispaced Legendre fits "
                    "become ill-conditioned there: lower max_degree or raise grid_size"
                )
            return value

    Result = SimplicityResult

    metric_definitions = (
        MetricDefinition(key="simplicity.mean_frequency", unit="fraction of the highest frequency", better="none", scope="trained",
                         description="magnitude-weighted mean frequency of the function on the grid (Hann-windowed; the paper's values are mean_frequency_no_window)"),
        MetricDefinition(key="simplicity.poly_order", unit="degree", better="none", scope="trained",
                         description="energy-weighted mean degree of a Legendre fit of the function on the grid"),
        MetricDefinition(key="simplicity.lz_complexity", unit="normalised LZ76", better="none", scope="trained",
                         description="Lempel-Ziv complexity of the function binarised at its median (about 1 for random bits)"),
        MetricDefinition(key="simplicity.mean_frequency_percentile", unit="percentile", better="none", scope="trained",
                         description="where the weights' mean_frequency falls among the random members, 0..100"),
        MetricDefinition(key="simplicity.init.mean_frequency", unit="fraction of the highest frequency", better="none", scope="init",
                         description="mean_frequency over random members: mean and 95% interval for one member"),
        MetricDefinition(key="simplicity.init.poly_order", unit="degree", better="none", scope="init",
                         description="poly_order over random members: mean and 95% interval for one member"),
        MetricDefinition(key="simplicity.init.lz_complexity", unit="normalised LZ76", better="none", scope="init",
                         description="lz_complexity over random members: mean and 95% interval for one member"),
    )

    @classmethod
    def metrics(cls, result: SimplicityResult) -> list[Metric]:
        by_key = {definition.key: definition for definition in cls.metric_definitions}
        # The sample behind the weights' values: the planes (or the one line/box) they are averaged over.
        n_slices = max(result.grid.planes, 1)
        rows = [by_key[f"simplicity.{name}"](getattr(result.model, name), n=n_slices) for name in METRICS]
        if result.init is not None:
            spread = result.init.mean_frequency
            rows.append(by_key["simplicity.mean_frequency_percentile"](spread.model_percentile, n=spread.n))
            for name in METRICS:
                spread = getattr(result.init, name)
                rows.append(by_key[f"simplicity.init.{name}"](spread.mean, ci95=(spread.low, spread.high), n=spread.n))
        return rows

    def check_inputs(self, arch, task) -> None:
        super().check_inputs(arch, task)
        _check_workload(arch, self.params)

    def run(self, context: ProbeContext) -> SimplicityResult:
        """Score ``context.model`` and ``n_init_samples`` members from ``context.make_member``."""
        params = self.params
        _check_workload(context.arch, params)
        _, input_shape = input_signature(context.arch)
        input_size = math.prod(input_shape)
        grid = make_grid(
            input_size, params.grid_size, params.n_planes, seed=_derived_seed(context.seed, _GRID_SEED_TAG),
            data=_reference_inputs(context, input_size),
        )
        n_steps = 1 + params.n_init_samples
        context.progress(0.0, f"evaluating the model on {grid.n_points} grid points")
        seeds = member_seeds(context.seed, params.n_init_samples)
        sizing_member = context.make_member(seeds[0] if seeds else context.seed)
        per_sample = _activations_per_sample(sizing_member, input_shape, context.device, context.dtype)
        model_values = _evaluate_model(context.model, grid, input_shape, context, per_sample)
        model_scores = self._score(model_values[None], grid)  # metric -> (1, C, P)
        model_block = _model_block(model_scores, "uploaded" if context.has_uploaded_weights else "random_init")
        context.progress(1.0 / n_steps, "scored the model")

        init = None
        if seeds:
            per_network = model_values.numel()
            n_parameters = sum(p.numel() for p in sizing_member.parameters())
            batch = max(1, min(len(seeds), MAX_VALUES_PER_NETWORK // per_network,
                               _STACKED_PARAMETER_BUDGET // max(1, n_parameters)))  # fmt: skip
            member_values: dict[str, list[float | None]] = {metric: [] for metric in METRICS}
            for first in range(0, len(seeds), batch):
                chunk_seeds = seeds[first : first + batch]
                members = [
                    sizing_member if first + i == 0 else context.make_member(s) for i, s in enumerate(chunk_seeds)
                ]
                values = _evaluate_members(members, grid, input_shape, context, per_sample)
                del members
                for metric, scores in self._score(values, grid).items():
                    member_values[metric].extend(_nanmean_or_none(row) for row in scores.flatten(start_dim=1))
                done = first + len(chunk_seeds)
                context.progress((1 + done) / n_steps, f"random member {done}/{len(seeds)}")
            init = InitComplexity(
                n_members=len(seeds),
                seeds=seeds,
                **{metric: _spread(member_values[metric], getattr(model_block, metric)) for metric in METRICS},
            )
        del sizing_member

        return SimplicityResult(
            model=model_block,
            init=init,
            calibration=self._calibration(grid),
            grid=GridInfo(
                **grid.describe(),
                spread=(
                    f"±{DEFAULT_SPREAD:g} standard deviations of the reference inputs (test inputs, else N(0, I)) "
                    + ("projected onto each plane direction" if grid.kind == "planes" else "along each coordinate")
                ),
                window=params.window,
                max_degree=params.max_degree,
                lz_scan="row-major: the first grid axis (s) is the slow one" if grid.dims == 2 else "along the line",
            ),
        )

    def _score(self, values: torch.Tensor, grid: Grid) -> dict[str, torch.Tensor]:
        """Each metric of every grid in ``values`` ``(B, C, P, G[, G])``: metric -> ``(B, C, P)`` float64 CPU."""
        values = flatten_near_constant(values.to(torch.float64), grid.dims)
        return {
            "mean_frequency": mean_frequency(values, grid.dims, self.params.window).cpu(),
            "poly_order": poly_order(values, grid.dims, self.params.max_degree).cpu(),
            "lz_complexity": lz_complexity(values, grid.dims),
        }

    def _calibration(self, grid: Grid) -> list[CalibrationSignal]:
        rows = []
        for name, (description, values) in calibration_signals(grid.size, grid.dims).items():
            scores = {metric: float(v) for metric, v in self._score(values[None, None, None], grid).items()}
            unwindowed = float(mean_frequency(values, grid.dims, "none"))
            rows.append(
                CalibrationSignal(signal=name, description=description, mean_frequency_no_window=unwindowed, **scores)
            )
        return rows


def member_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the ``n`` random members: 31-bit integers drawn from ``SeedSequence((seed, tag))``."""
    sequence = np.random.SeedSequence((seed % 2**64, _MEMBER_SEED_TAG))
    return [int(s) & 0x7FFFFFFF for s in sequence.generate_state(n, dtype=np.uint32)] if n else []


def _derived_seed(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence((seed % 2**64, tag)).generate_state(1, dtype=np.uint32)[0])


def _check_workload(arch, params: "Simplicity.Params") -> None:
    """Refuse token inputs and grids too large for memory or time, naming the field to change."""
    kind, input_shape = input_signature(arch)
    if kind == "tokens":
        raise InputError.at(
            _LOC,
            "token inputs are discrete ids, so there is no plane through them to evaluate the network on; "
            "the simplicity probe needs real-valued inputs (tabular, image or feature sequences)",
        )
    layout = grid_kind(math.prod(input_shape))
    planes = params.n_planes if layout == "planes" else 1
    points = params.grid_size ** (1 if layout == "line" else 2)
    channels = math.prod(output_shape(arch))
    per_network = channels * planes * points
    if per_network > MAX_VALUES_PER_NETWORK:
        raise InputError.at(
            [*_LOC, "grid_size"],
            f"{channels} output channels x {planes} planes x {points} grid points = {per_network:,} values per "
            f"network exceeds the memory limit of {MAX_VALUES_PER_NETWORK:,}; lower grid_size or n_planes",
        )
    total = (params.n_init_samples + 1) * per_network
    if total > MAX_VALUES_TOTAL:
        raise InputError.at(
            [*_LOC, "n_init_samples"],
            f"({params.n_init_samples} random members + the model) x {per_network:,} values = {total:,} exceeds "
            f"the limit of {MAX_VALUES_TOTAL:,}; lower n_init_samples, grid_size or n_planes",
        )


def _reference_inputs(context: ProbeContext, input_size: int) -> torch.Tensor | None:
    """The test inputs, flattened (a seeded subset of ``MAX_REFERENCE_INPUTS`` when there are more), or
    None without a dataset (grids then use N(0, I))."""
    if context.dataset is None or context.dataset.X_test.shape[0] == 0:
        return None
    x_test = context.dataset.X_test
    if x_test.shape[0] > MAX_REFERENCE_INPUTS:
        generator = torch.Generator().manual_seed(_derived_seed(context.seed, _GRID_SEED_TAG + 1))
        x_test = x_test[torch.randperm(x_test.shape[0], generator=generator)[:MAX_REFERENCE_INPUTS]]
    per_sample = math.prod(x_test.shape[1:])
    if per_sample != input_size or not x_test.is_floating_point():
        raise InputError.at(
            ["task", "dataset"],
            f"test inputs of shape {tuple(x_test.shape[1:])} ({x_test.dtype}) cannot be placed in this "
            f"architecture's input space of {input_size} real values",
        )
    return x_test.reshape(x_test.shape[0], -1)


def _activations_per_sample(member: torch.nn.Module, input_shape, device, dtype) -> int:
    """Values produced by all submodules for one input: sizes the evaluation chunks (our own member)."""
    sizes: list[int] = []

    def record(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel())

    hooks = [module.register_forward_hook(record) for module in member.modules()]
    try:
        with torch.no_grad():
            member(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return max(1, sum(sizes))


def _grid_inputs(grid: Grid, start: int, stop: int, input_shape, context: ProbeContext) -> torch.Tensor:
    return grid.points(start, stop).reshape(stop - start, *input_shape).to(device=context.device, dtype=context.dtype)


def _to_grid_values(outputs: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``(B, n_points, *out)`` -> ``(B, C, P, G[, G])``."""
    flat = outputs.reshape(outputs.shape[0], grid.n_points, -1).transpose(1, 2)
    return flat.reshape(flat.shape[0], flat.shape[1], grid.n_planes, *(grid.size,) * grid.dims)


def _evaluate_model(
    model: torch.nn.Module, grid: Grid, input_shape, context: ProbeContext, per_sample: int
) -> torch.Tensor:
    """The probed model on every grid point: ``(C, P, G[, G])``. Modes are restored afterwards."""
    chunk = max(1, _ACTIVATION_BUDGET // per_sample)
    modes = [(module, module.training) for module in model.modules()]
    outputs = []
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, grid.n_points, chunk):
                stop = min(grid.n_points, start + chunk)
                outputs.append(model(_grid_inputs(grid, start, stop, input_shape, context)))
    finally:
        for module, training in modes:
            module.train(training)
    return _to_grid_values(torch.cat(outputs)[None], grid)[0]


def _evaluate_members(members: list[torch.nn.Module], grid: Grid, input_shape, context: ProbeContext,
                      per_sample: int) -> torch.Tensor:  # fmt: skip
    """All members on every grid point as one vmapped ensemble: ``(S, C, P, G[, G])``."""
    with torch.no_grad():
        params, buffers = stack_module_state(members)
        # A parameter-free skeleton: functional_call swaps each member's stacked tensors in.
        skeleton = copy.deepcopy(members[0]).to("meta").eval()

        def forward(p, b, x):
            return functional_call(skeleton, (p, b), (x,))

        ensemble = vmap(forward, in_dims=(0, 0, None))
        chunk = max(1, _ACTIVATION_BUDGET // (per_sample * len(members)))
        outputs = []
        for start in range(0, grid.n_points, chunk):
            stop = min(grid.n_points, start + chunk)
            outputs.append(ensemble(params, buffers, _grid_inputs(grid, start, stop, input_shape, context)))
    return _to_grid_values(torch.cat(outputs, dim=1), grid)


def _nanmean_or_none(values: torch.Tensor) -> float | None:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else None


def _model_block(scores: dict[str, torch.Tensor], weights: str) -> ModelComplexity:
    per_channel = [
        ChannelComplexity(**{metric: _nanmean_or_none(scores[metric][0, c]) for metric in METRICS})
        for c in range(scores["mean_frequency"].shape[1])
    ]
    means = {metric: _nanmean_or_none(scores[metric][0]) for metric in METRICS}
    return ModelComplexity(weights=weights, per_channel=per_channel, **means)


def _spread(values: list[float | None], model_value: float | None) -> MetricSpread:
    """Mean, 95% interval for one random member, and the model's percentile (method in ``MetricSpread``)."""
    spread = member_spread(values)
    mean, low, high, interval, n = spread.mean, spread.low, spread.high, spread.interval, spread.n
    percentile = None
    if n and model_value is not None:
        defined = [v for v in values if v is not None]
        percentile = float(stats.percentileofscore(defined, model_value, kind="mean"))
    return MetricSpread(
        mean=mean, low=low, high=high, interval=interval, n=n, values=list(values), model_percentile=percentile
    )
