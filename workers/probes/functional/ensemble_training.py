"""The ``init`` and ``trained`` hypothesis samplers of ``inductive_bias``, batched over hypotheses.

Idea (docs/methods.md §1, Speed): S hypotheses are trained at once as one ensemble with stacked
parameters. One optimizer over the stacked tensors minimising the SUM of the members' own
training losses is exactly S independent runs: the members' parameters are disjoint, so member j's
gradient is the gradient of its own loss, and Adam/SGD update every scalar from its own gradient
and state only (elementwise). Each member shuffles its own data (``torch.randperm`` from its own
generator, gathered as ``X_train[idx]`` with ``idx`` of shape ``(S, B)``) with the same minibatch
schedule as ``workers.training.train_model``, so member j of an ensemble equals
``train_model(build_model(arch, h_j), ..., seed=data_order_seed(h_j))`` to float tolerance.

Chunking and sharding: every hypothesis's randomness depends only on (seed, index), so its loss
does not depend on how hypotheses are grouped, up to float rounding (~1e-7 relative): vectorised
CPU kernels round the last few elements of a tensor differently from the rest, and which
elements those are depends on the chunk's size. For bitwise reproducibility ``sample_losses``
always computes whole chunks aligned at multiples of ``chunk_size`` in absolute index (a shard
that starts or ends inside a chunk computes the whole chunk and keeps its own part), so with the
same ``chunk_size`` (and device and thread count) a sharded run returns exactly the unsharded
losses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from models.registry import AnySpec, build_model
from workers.data.dataset import Dataset
from models.errors import InputError
from workers.probes.functional.ensemble import (
    Ensemble,
    build_members,
    data_order_seed,
    ensemble_forward,
    ensemble_forward_each,
    hypothesis_seed,
)
from workers.probes.functional.hypothesis_loss import test_losses as _test_losses
from workers.runspec import TrainSpec
from workers.probes.functional.mlp_gradients import has_hand_gradients, mlp_gradients
from workers.probes.functional.stacked_optimizer import make_optimizer
from workers.training import member_training_losses

Progress = Callable[[float, str], None]
Sampler = Literal["init", "trained"]

# Test points per forward when evaluating: a constant, so the evaluation's shapes depend on the
# chunk's size only.
EVAL_BATCH = 1024
MAX_CHUNK = 1024
_CPU_BUDGET_CAP = 8 * 2**30


def train_ensemble(
    arch: AnySpec,
    dataset: Dataset,
    train_spec: TrainSpec,
    loss: str,
    seeds: Sequence[int],
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> Ensemble:
    """Build and train the members ``build_model(arch, s)`` for ``s`` in ``seeds``.

    Args:
        arch: architecture spec of the hypothesis space.
        dataset: the task; its training split is used (must not be empty).
        train_spec: optimizer (``adam``/``sgd``, torch defaults besides ``lr``), lr, epochs, batch size.
        loss: the task loss; training uses ``workers.training.training_loss`` (cross-entropy
            stands in for ``zero_one``).
        seeds: per-member init seeds; member j's data order comes from ``data_order_seed(seeds[j])``.
        device: where to train (default CPU).
        chunk_size: members trained together (default: all at once); chunks are concatenated.
        progress: optional ``callback(fraction, message)``.

    Returns:
        The trained ``Ensemble`` (parameters detached, on ``device``).
    """
    if not dataset.has_train_split:
        raise InputError.at(["task", "dataset"], "the trained sampler needs a training split; give n_train > 0")
    size = len(seeds) if chunk_size is None else chunk_size
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    parts = []
    for start in range(0, len(seeds), size):
        chunk = seeds[start : start + size]
        report = _sub_progress(progress, start / len(seeds), len(chunk) / len(seeds))
        parts.append(_train_chunk(arch, dataset, train_spec, loss, chunk, device, report))
    if len(parts) == 1:
        return parts[0]
    params = {k: torch.cat([p.params[k] for p in parts]) for k in parts[0].params}
    buffers = {k: torch.cat([p.buffers[k] for p in parts]) for k in parts[0].buffers}
    return Ensemble(params, buffers, parts[0].base)


def _train_chunk(
    arch: AnySpec,
    dataset: Dataset,
    train_spec: TrainSpec,
    loss: str,
    seeds: Sequence[int],
    device: torch.device | str | None,
    progress: Progress | None,
) -> Ensemble:
    ensemble = build_members(arch, seeds, device)
    generators = [torch.Generator().manual_seed(data_order_seed(int(s))) for s in seeds]

    def orders(epoch: int, n: int) -> torch.Tensor:
        # One randperm per member, drawn exactly as train_model draws its order.
        return torch.stack([torch.randperm(n, generator=g) for g in generators])

    return train_members(ensemble, dataset, train_spec, loss, orders, progress)


def train_members(
    ensemble: Ensemble,
    dataset: Dataset,
    train_spec: TrainSpec,
    loss: str,
    orders: Callable[[int, int], torch.Tensor],
    progress: Progress | None = None,
) -> Ensemble:
    """Train the members of ``ensemble`` from their current parameters, member j visiting the
    training rows in the order ``orders(epoch, n_train)[j]`` (an ``(S, n_train)`` permutation per
    epoch). ``_train_chunk`` draws the orders from each hypothesis's data-order seed; the rare-event
    latent space (``latent_spaces.trained_latent``) derives them from its latent normals."""
    # One flat leaf buffer holds every member's parameters (derived parameters are copied into it).
    flat, params = _flatten(ensemble.params)
    ensemble = Ensemble(params, ensemble.buffers, ensemble.base)
    X, y = dataset.X_train.to(flat.device), dataset.y_train.to(flat.device)
    optimizer = make_optimizer(train_spec, [flat])
    hand = has_hand_gradients(ensemble.base)
    if hand:
        grad = torch.empty_like(flat)
        _, grads = _views(grad, params)
    else:
        flat.requires_grad_(True)
    n = X.shape[0]
    for epoch in range(train_spec.epochs):
        epoch_orders = orders(epoch, n).to(X.device)
        for start in range(0, n, train_spec.batch_size):
            idx = epoch_orders[:, start : start + train_spec.batch_size]
            X_each, y_each = _gather_rows(X, idx), _gather_rows(y, idx)
            if hand:
                mlp_gradients(ensemble.base, params, grads, X_each, y_each, loss, dataset.task_type)
                optimizer.step([grad])
                continue
            # Views of the flat leaf, taken anew each step: autograd accumulates into flat.grad.
            _, step_params = _views(flat, params)
            outputs = ensemble_forward_each(Ensemble(step_params, ensemble.buffers, ensemble.base), X_each)
            optimizer.zero_grad(set_to_none=True)
            # The sum of the members' own mean losses: member j's gradient is its own loss's.
            member_training_losses(loss, outputs, y_each, dataset).sum().backward()
            optimizer.step()
        if progress is not None:
            progress((epoch + 1) / train_spec.epochs, f"epoch {epoch + 1}/{train_spec.epochs}")
    flat = flat.detach()
    _, params = _views(flat, params)
    return Ensemble(params, ensemble.buffers, ensemble.base)


def _flatten(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """All stacked parameters in one flat tensor, and each parameter as a contiguous view of it.

    One buffer lets the optimizer update every parameter of every member in one pass (one
    kernel per step instead of one per tensor), and lets hand-written gradients land in place.
    """
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
    return _views(flat, params)


def _views(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``flat`` cut into contiguous views with the names and shapes of ``like``."""
    views, offset = {}, 0
    for name, p in like.items():
        views[name] = flat[offset : offset + p.numel()].view(p.shape)
        offset += p.numel()
    return flat, views


def _gather_rows(data: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``data[idx]`` for an ``(S, B)`` index: the same rows, by ``index_select`` on the flattened index,
    measured six times faster than advanced indexing on the CPU (a visible share of a small
    network's step)."""
    return data.index_select(0, idx.reshape(-1)).view(*idx.shape, *data.shape[1:])


def ensemble_device(ensemble: Ensemble) -> torch.device:
    return next(iter(ensemble.params.values())).device


@torch.no_grad()
def ensemble_test_losses(ensemble: Ensemble, dataset: Dataset, task_loss: str) -> torch.Tensor:
    """``(S,)`` float64 test losses of every member on ``dataset``'s whole test split."""
    device = ensemble_device(ensemble)
    outputs = [
        ensemble_forward(ensemble, dataset.X_test[start : start + EVAL_BATCH].to(device))
        for start in range(0, dataset.X_test.shape[0], EVAL_BATCH)
    ]
    return _test_losses(torch.cat(outputs, dim=1), dataset.y_test.to(device), task_loss, dataset.task_type)


def sample_losses(
    arch: AnySpec,
    dataset: Dataset,
    task_loss: str,
    sampler: Sampler,
    n: int,
    seed: int,
    train_spec: TrainSpec | None = None,
    device: torch.device | str | None = None,
    chunk_size: int | None = None,
    start_index: int = 0,
    progress: Progress | None = None,
    run_size: int | None = None,
) -> np.ndarray:
    """Test losses of hypotheses ``start_index .. start_index + n - 1`` of a run with ``seed``.

    Hypothesis i is ``build_model(arch, hypothesis_seed(seed, i))``, for ``trained`` then trained
    with ``train_spec`` on the training split in its own data order. A shard is just a
    ``(start_index, n)`` pair: concatenating shards run with one ``chunk_size`` gives the unsharded
    array exactly.

    Args:
        arch, dataset, task_loss: the hypothesis space and the task (loss ``mse``,
            ``cross_entropy`` or ``zero_one``, see ``hypothesis_loss.test_losses``).
        sampler: ``"init"`` (fresh initialisations) or ``"trained"``.
        n: number of hypotheses (>= 0); seed: run seed (>= 0).
        train_spec: the training budget (required for ``trained``).
        device: where to compute (default CPU).
        chunk_size: hypotheses per batched chunk (default ``min(n, default_chunk_size(...))``);
            chunks are aligned at multiples of it in absolute index and always computed whole,
            so a shard may compute up to ``2 * (chunk_size - 1)`` hypotheses it does not return.
            Equal ``chunk_size`` on every shard makes sharded losses bitwise equal to unsharded.
        start_index: absolute index of the first hypothesis.
        progress: optional ``callback(fraction, message)``.
        run_size: hypotheses in the whole run this shard belongs to (default: ``start_index + n``):
            the last chunk stops there instead of running whole past the end. Shards that must
            match the unsharded run bitwise pass the same ``run_size`` (the run's ``n``).

    Returns:
        ``(n,)`` float64 array; non-finite entries are diverged hypotheses.
    """
    if sampler not in ("init", "trained"):
        raise ValueError(f"sampler must be 'init' or 'trained' here, got {sampler!r}")
    if sampler == "trained" and train_spec is None:
        raise ValueError("the trained sampler needs a train_spec")
    if n < 0 or start_index < 0:
        raise ValueError(f"n and start_index must be >= 0, got n={n}, start_index={start_index}")
    run_size = start_index + n if run_size is None else run_size
    if run_size < start_index + n:
        raise ValueError(f"run_size {run_size} ends before this shard's last hypothesis {start_index + n - 1}")
    if sampler == "trained" and not dataset.has_train_split:
        raise InputError.at(["task", "dataset"], "the trained sampler needs a training split; give n_train > 0")
    if n == 0:
        return np.empty(0, dtype=np.float64)
    device = torch.device(device or "cpu")
    if chunk_size is None:
        # Per call: an unsharded run never computes more hypotheses than it asked for. Shards that
        # must match bitwise pass one explicit chunk_size to every shard.
        chunk_size = max(1, min(n, default_chunk_size(arch, dataset, train_spec if sampler == "trained" else None, device)))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    losses = np.empty(n, dtype=np.float64)
    stop = start_index + n
    for chunk_start in range(start_index // chunk_size * chunk_size, stop, chunk_size):
        # The whole aligned chunk, also the hypotheses outside [start_index, stop): they make this
        # chunk's computation identical to the unsharded run's.
        seeds = [hypothesis_seed(seed, i) for i in range(chunk_start, min(chunk_start + chunk_size, run_size))]
        first, last = max(chunk_start, start_index), min(chunk_start + chunk_size, stop)
        report = _sub_progress(progress, (first - start_index) / n, (last - first) / n)
        if sampler == "trained":
            ensemble = _train_chunk(arch, dataset, train_spec, task_loss, seeds, device, report)
        else:
            ensemble = build_members(arch, seeds, device)
        chunk_losses = ensemble_test_losses(ensemble, dataset, task_loss).cpu().numpy()
        losses[first - start_index : last - start_index] = chunk_losses[first - chunk_start : last - chunk_start]
        if progress is not None:
            progress((last - start_index) / n, f"{last - start_index}/{n} hypotheses")
    return losses


def default_chunk_size(
    arch: AnySpec, dataset: Dataset, train_spec: TrainSpec | None, device: torch.device | str | None = None
) -> int:
    """Hypotheses per chunk that fit in memory, from a per-hypothesis estimate (float32, bytes):

    - parameters: ``4 * P`` words each for the weights, their gradients and Adam's two moments
      (``16 P``);
    - training activations: ``A`` = the summed output sizes of every module for one sample (one
      traced forward), times the batch size, times 3 (saved for backward, their gradients, and
      temporaries), plus the gathered input batch;
    - evaluation: ``A`` times ``EVAL_BATCH`` test points (no autograd) plus the float64 outputs
      kept for the whole test set.

    The budget is half the free memory on CUDA, and on the CPU a quarter of the available memory
    capped at 8 GiB. The result is clamped to ``[1, MAX_CHUNK]``.
    """
    device = torch.device(device or "cpu")
    n_params, act_elems, in_elems, out_elems = _footprint(arch, dataset)
    per_hypothesis = 16 * n_params + 8 * out_elems * dataset.X_test.shape[0]
    per_hypothesis += 4 * min(EVAL_BATCH, dataset.X_test.shape[0]) * (act_elems + in_elems)
    if train_spec is not None:
        batch = min(train_spec.batch_size, max(dataset.X_train.shape[0], 1))
        per_hypothesis += 4 * batch * (3 * act_elems + in_elems)
    return max(1, min(MAX_CHUNK, _memory_budget(device) // max(per_hypothesis, 1)))


def _footprint(arch: AnySpec, dataset: Dataset) -> tuple[int, int, int, int]:
    """(parameters, activation elements per sample, input elements, output elements) of one member."""
    model = build_model(arch, 0)
    sizes: list[int] = []

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad():
            out = model(dataset.X_test[:1])
    finally:
        for h in handles:
            h.remove()
    n_params = sum(p.numel() for p in model.parameters())
    return n_params, sum(sizes), dataset.X_test[:1].numel(), out.numel()


def _memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # non-POSIX: assume a modest machine
        available = 4 * 2**30
    return min(available // 4, _CPU_BUDGET_CAP)


def _sub_progress(progress: Progress | None, offset: float, share: float) -> Progress | None:
    """Map a chunk's own 0..1 progress into its share of the whole run."""
    if progress is None:
        return None
    return lambda fraction, message: progress(min(1.0, offset + share * fraction), message)
