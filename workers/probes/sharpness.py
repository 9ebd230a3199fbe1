"""``sharpness``: curvature of the training loss at the uploaded weights (docs/methods.md §5).

The maths lives in ``workers.probes.functional.hessian``; this module builds the loss of the
uploaded weights on the task's training split and reports the top Hessian eigenvalues and the
Hessian trace.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.func import functional_call

from workers.data.dataset import Dataset
from models.errors import InputError
from workers.probes.base import Probe, ProbeContext, ProbeParams
from workers.probes.metrics import Metric, MetricDefinition
from workers.probes.functional.hessian import (
    HvpMode,
    flat_hessian_operator,
    hutchinson_trace,
    lanczos_top_eigenvalues,
    power_iteration_top_eigenvalues,
)
from workers.training import training_loss

# Samples per forward pass: the Hessian of the mean loss is the weighted sum of the chunks' Hessians,
# so chunking bounds memory without changing the result beyond rounding.
_CHUNK_SAMPLES = 1024
# Lanczos keeps n_lanczos_iter float64 vectors of the parameter count.
_MAX_LANCZOS_BYTES = 2 * 1024**3
# Mixed into the run's seed: one independent stream per random choice.
_STREAM_TAGS = {"subsample": 0x5A4D, "eigen": 0xE16E, "trace": 0x78AC}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TraceResult(_Strict):
    """Hutchinson estimate of ``tr(H)``: mean over probes, standard error, 95% Student-t interval."""

    mean: float
    se: float
    ci95: tuple[float, float]
    n_probes: int


class LossUsed(_Strict):
    """The differentiable loss whose Hessian is reported, and its value at the weights."""

    name: Literal["mse", "cross_entropy"]
    task_loss: str = Field(description="the task's evaluation loss")
    value: float = Field(description="mean loss over the samples used")
    note: str | None = None


class SharpnessResult(_Strict):
    weights: Literal["uploaded", "random_init"]
    method: Literal["lanczos", "power"]
    top_eigenvalues: list[float] = Field(description="Lanczos: largest first; power: largest magnitude first")
    eigenvalue_residuals: list[float] = Field(
        description="||H u - theta u||, at least eps(dtype) * max|theta|: an eigenvalue lies within it"
    )
    trace: TraceResult
    loss: LossUsed
    n_samples: int = Field(description="training samples in the loss")
    n_train: int = Field(description="training samples in the dataset")
    n_parameters: int
    n_hvp: int = Field(description="Hessian-vector products computed")
    hvp_mode: str
    dtype: str
    seed: int


class Sharpness(Probe):
    """Top eigenvalues and trace of the Hessian of the training loss at the model's weights.

    Idea: flat minima (small curvature) are associated with better generalisation (Hochreiter &
    Schmidhuber 1997; Keskar et al. 2017); the largest Hessian eigenvalue is the sharpest direction,
    the trace the total curvature. The Hessian is never formed: Hessian-vector products come from
    ``torch.func`` (forward-over-reverse, ``jvp`` of ``grad``; reverse-over-reverse when an operation
    has no forward-mode derivative), the top eigenvalues from Lanczos with full reorthogonalisation
    (or power iteration with deflation), each with its residual bound, and the trace from Hutchinson's
    estimator with Rademacher probes and a 95% interval (as in PyHessian, Yao et al. 2020).

    The loss is the task's training loss (``workers.training.training_loss``), a deterministic
    function of the weights: the model is evaluated in eval mode (dropout off, batch-norm running
    statistics), on at most ``max_train_samples`` training rows chosen at random without replacement
    by the seed (all rows when there are fewer). For classification it is one-hot MSE when the task
    loss is ``mse`` and cross-entropy otherwise: ``zero_one`` has no useful derivatives, so its
    Hessian is that of cross-entropy, its usual surrogate (``loss.note`` says so). Regression uses MSE.
    Precision follows ``weight_spectrum``: float64 on CPU, float32 on accelerators.

    Params:
        method: ``"lanczos"`` (default; the ``top_k`` largest eigenvalues) or ``"power"`` (the ``top_k``
            largest in magnitude; the same near a minimum, where the Hessian is nearly positive).
        top_k: eigenvalues to report (default 5, 1..50; capped at the parameter count).
        n_lanczos_iter: Lanczos steps (default 40, >= ``top_k``; more resolves clustered eigenvalues).
        n_power_iter: most power iterations per eigenvalue (default 100).
        hutchinson_probes: Rademacher probes for the trace (default 64, 2..10000).
        max_train_samples: rows of the training split in the loss (default 2048).
        seed: the random draws (subsample, start vectors, probes); default the run's seed.

    The model is only read: it is deep-copied before anything runs (mode, ``requires_grad``, weights,
    hooks and gradients of ``context.model`` stay as they were); global RNG state is not touched.
    """

    name = "sharpness"
    version = "1.0.0"
    summary = "Top Hessian eigenvalues and Hessian trace of the training loss (loss-landscape curvature)"
    paper = "https://arxiv.org/abs/1912.07145"
    requires_task = True

    class Params(ProbeParams):
        method: Literal["lanczos", "power"] = "lanczos"
        top_k: int = Field(default=5, ge=1, le=50, description="eigenvalues to report")
        n_lanczos_iter: int = Field(default=40, ge=1, le=500, description="Lanczos steps (>= top_k)")
        n_power_iter: int = Field(default=100, ge=1, le=10_000, description="power iterations per eigenvalue")
        hutchinson_probes: int = Field(default=64, ge=2, le=10_000, description="Rademacher probes for the trace")
        max_train_samples: int = Field(default=2048, ge=1, le=1_000_000, description="training rows in the loss")
        seed: int | None = Field(default=None, ge=0, description="random draws; default: the run's seed")

        @model_validator(mode="after")
        def _enough_lanczos_steps(self) -> "Sharpness.Params":
            if self.method == "lanczos" and self.n_lanczos_iter < self.top_k:
                raise ValueError(f"n_lanczos_iter ({self.n_lanczos_iter}) must be at least top_k ({self.top_k})")
            return self

    Result = SharpnessResult

    metric_definitions = (
        MetricDefinition(key="sharpness.top_eigenvalue", unit="loss / parameter^2", better="lower", scope="trained",
                         description="largest Hessian eigenvalue of the training loss at the weights; interval: +- the Lanczos/power residual"),
        MetricDefinition(key="sharpness.trace", unit="loss / parameter^2", better="lower", scope="trained",
                         description="Hessian trace (Hutchinson estimate) with its Student-t ci95 over probe vectors"),
        MetricDefinition(key="sharpness.training_loss", unit="loss", better="lower", scope="trained",
                         description="the loss the Hessian is taken of, over the training samples used"),
    )

    @classmethod
    def metrics(cls, result: SharpnessResult) -> list[Metric]:
        by_key = {definition.key: definition for definition in cls.metric_definitions}
        rows: list[Metric] = []
        if result.top_eigenvalues:
            top, residual = result.top_eigenvalues[0], result.eigenvalue_residuals[0]
            rows.append(by_key["sharpness.top_eigenvalue"](top, ci95=(top - residual, top + residual), n=result.n_hvp))
        rows.append(by_key["sharpness.trace"](result.trace.mean, ci95=result.trace.ci95, n=result.trace.n_probes))
        rows.append(by_key["sharpness.training_loss"](result.loss.value, n=result.n_samples))
        return rows

    def check_dataset(self, description: dict) -> None:
        if int(description.get("n_train", 0)) == 0:
            raise InputError.at(["task", "dataset"], _NO_TRAIN_SPLIT)

    def run(self, context: ProbeContext) -> SharpnessResult:
        """Curvature of the training loss of ``context.model`` on ``context.dataset``'s training split."""
        params = self.params
        dataset, task = context.dataset, context.task
        if dataset is None or task is None:
            raise InputError.at(["task"], "probe 'sharpness' needs a task (dataset, loss, target_error)")
        if not dataset.has_train_split:
            raise InputError.at(["task", "dataset"], _NO_TRAIN_SPLIT)
        seed = context.seed if params.seed is None else params.seed
        device = context.device
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        context.progress(0.0, "building the training loss")

        indices = subsample_indices(dataset.X_train.shape[0], params.max_train_samples, seed)
        inputs = _to(dataset.X_train[indices], device, dtype)
        targets = _to(dataset.y_train[indices], device, dtype)
        # A private copy in eval mode: the loss is a deterministic function of the weights, and
        # nothing done here can reach the caller's model.
        model = copy.deepcopy(context.model).to(device=device, dtype=dtype).eval()
        weights = {name: p.detach() for name, p in model.named_parameters()}
        buffers = {name: b.detach() for name, b in model.named_buffers()}
        chunks = _loss_chunks(model, buffers, inputs, targets, task.loss, dataset)
        with torch.no_grad():
            loss_value = float(sum(weight * loss_fn(weights) for weight, loss_fn in chunks))
        if not np.isfinite(loss_value):
            raise InputError.at(["model", "weights"], "the training loss at these weights is not finite (NaN or inf)")

        matvec, hvp_mode, flat = _hessian_operator(chunks, weights)
        top_k = min(params.top_k, flat.size)
        _check_lanczos_memory(params, flat.size)
        eigen_steps = min(params.n_lanczos_iter, flat.size) if params.method == "lanczos" else top_k * params.n_power_iter
        # Progress: the eigenvalue phase up to its share of the planned products (the trace batches
        # its products, so it reports once).
        eigen_share = eigen_steps / (eigen_steps + params.hutchinson_probes)
        counted = _Counted(matvec, eigen_steps, eigen_share, context)
        eigen_generator = torch.Generator().manual_seed(_stream_seed(seed, "eigen"))
        if params.method == "lanczos":
            estimate = lanczos_top_eigenvalues(counted, flat.size, top_k, params.n_lanczos_iter, eigen_generator, device)
        else:
            estimate = power_iteration_top_eigenvalues(counted, flat.size, top_k, params.n_power_iter, eigen_generator, device)
        context.progress(eigen_share, f"{len(estimate.eigenvalues)} eigenvalues; estimating the trace")
        trace_generator = torch.Generator().manual_seed(_stream_seed(seed, "trace"))
        trace = hutchinson_trace(matvec, flat.size, params.hutchinson_probes, trace_generator, device)
        context.progress(1.0, "done")

        return SharpnessResult(
            weights="uploaded" if context.has_uploaded_weights else "random_init",
            method=params.method,
            top_eigenvalues=estimate.eigenvalues,
            eigenvalue_residuals=_with_rounding_floor(estimate.residuals, estimate.eigenvalues, dtype),
            trace=TraceResult(mean=trace.mean, se=trace.se, ci95=trace.ci95, n_probes=trace.n_probes),
            loss=LossUsed(**loss_used(task.loss, dataset.task_type), value=loss_value),
            n_samples=int(indices.numel()),
            n_train=int(dataset.X_train.shape[0]),
            n_parameters=flat.size,
            n_hvp=estimate.n_matvecs + trace.n_probes,
            hvp_mode=hvp_mode,
            dtype=str(dtype).removeprefix("torch."),
            seed=seed,
        )


_NO_TRAIN_SPLIT = (
    "the dataset has no training split (0 training rows); sharpness measures the curvature of the "
    "training loss: use a dataset with training rows"
)


def subsample_indices(n: int, max_samples: int, seed: int) -> torch.Tensor:
    """The training rows in the loss: all ``n`` when ``n <= max_samples``, else ``max_samples`` of them
    drawn without replacement from the probe's ``seed`` (its own stream; sorted, so the data order
    does not depend on the draw)."""
    if n <= max_samples:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_stream_seed(seed, "subsample")))
    return order[:max_samples].sort().values


def loss_used(task_loss: str, task_type: str) -> dict[str, str | None]:
    """Name of the differentiable loss ``training_loss`` applies, and a note when it is not the task's."""
    if task_type == "regression":
        note = None if task_loss == "mse" else f"regression tasks train on mean squared error, not '{task_loss}'"
        return {"name": "mse", "task_loss": task_loss, "note": note}
    if task_loss == "mse":
        return {"name": "mse", "task_loss": task_loss, "note": None}
    note = None
    if task_loss == "zero_one":
        note = "zero_one is not differentiable: the Hessian is that of cross-entropy, its usual surrogate"
    return {"name": "cross_entropy", "task_loss": task_loss, "note": note}


def _stream_seed(seed: int, stream: str) -> int:
    sequence = np.random.SeedSequence((seed % 2**64, _STREAM_TAGS[stream]))
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _to(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Token ids and class indices stay integers.
    return tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)


def _loss_chunks(model, buffers, inputs, targets, task_loss: str, dataset: Dataset):
    """``[(weight, params -> mean loss on one chunk)]`` with weights summing to 1."""
    n = inputs.shape[0]
    chunks = []
    for start in range(0, n, _CHUNK_SAMPLES):
        x, y = inputs[start : start + _CHUNK_SAMPLES], targets[start : start + _CHUNK_SAMPLES]

        def loss_fn(weights, x=x, y=y):
            return training_loss(task_loss, functional_call(model, (weights, buffers), (x,)), y, dataset)

        chunks.append((x.shape[0] / n, loss_fn))
    return chunks


def _hessian_operator(chunks, weights):
    """The flat Hessian operator, forward-over-reverse unless an operation lacks forward-mode AD."""
    modes: tuple[HvpMode, ...] = ("forward-over-reverse", "reverse-over-reverse")
    for mode in modes:
        matvec, flat = flat_hessian_operator(chunks, weights, mode)
        try:
            matvec(torch.zeros(flat.size, dtype=torch.float64, device=next(iter(weights.values())).device))
        except NotImplementedError:
            continue
        except RuntimeError as error:
            if "not implemented" not in str(error).lower() or mode == modes[-1]:
                raise
            continue
        return matvec, mode, flat
    raise RuntimeError("no Hessian-vector product mode works for this model")


def _with_rounding_floor(residuals: list[float], eigenvalues: list[float], dtype: torch.dtype) -> list[float]:
    # Lanczos residuals of converged values fall far below what products computed in ``dtype`` can
    # resolve (1e-25 is typical in float64); the products' own rounding bounds the accuracy.
    floor = torch.finfo(dtype).eps * max((abs(v) for v in eigenvalues), default=0.0)
    return [max(r, floor) for r in residuals]


def _check_lanczos_memory(params: Sharpness.Params, n_parameters: int) -> None:
    needed = min(params.n_lanczos_iter, n_parameters) * n_parameters * 8
    if params.method == "lanczos" and needed > _MAX_LANCZOS_BYTES:
        raise InputError.at(
            ["probes", "sharpness", "n_lanczos_iter"],
            f"Lanczos would keep {params.n_lanczos_iter} vectors of {n_parameters:,} parameters "
            f"({needed / 1024**3:.1f} GiB, limit {_MAX_LANCZOS_BYTES / 1024**3:.0f} GiB); lower n_lanczos_iter "
            "or use method='power'",
        )


class _Counted:
    """Reports progress every 10 products, as ``share`` times the fraction of the ``planned`` ones."""

    def __init__(self, matvec, planned: int, share: float, context: ProbeContext):
        self.matvec, self.planned, self.share, self.context, self.calls = matvec, planned, share, context, 0

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        result = self.matvec(vector)
        self.calls += 1
        if self.calls % 10 == 0:
            fraction = self.share * min(self.calls / max(self.planned, 1), 1.0)
            self.context.progress(fraction, f"{self.calls} Hessian-vector products")
        return result
