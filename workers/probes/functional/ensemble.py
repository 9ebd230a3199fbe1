"""A batch of hypotheses as one ensemble: stacked parameters and a vectorised forward.

Idea: S seeded members of one hypothesis space (``models.registry.build_model``) share their
architecture, so their parameters stack along a new leading axis (``torch.func.stack_module_state``)
and one forward evaluates all S at once (``torch.func.functional_call`` under ``torch.func.vmap``).
Plain MLPs take a hand-written path instead (``torch.baddbmm`` per layer): the same maths without
vmap's per-call dispatch, which dominates the step time of small networks.

Randomness: hypothesis ``i`` of a run with seed ``seed`` is built from ``hypothesis_seed(seed, i)``
and shuffles its training data with ``data_order_seed(hypothesis_seed(seed, i))``. Both depend on
``(seed, i)`` only, never on how hypotheses are grouped into chunks or shards.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from models.registry import AnySpec, build_model
from models.zoo.mlp import MLP

# Seeds are drawn from 63 bits: torch generators accept them, and with millions of hypotheses the
# chance that two share a seed stays negligible (a 32-bit seed would collide at ~10^5 hypotheses).
_SEED_MASK = (1 << 63) - 1
# SeedSequence spawn keys that keep the init and data-order streams of a hypothesis independent.
_STREAM_INIT = 0
_STREAM_DATA_ORDER = 1


def hypothesis_seed(seed: int, index: int) -> int:
    """Seed of hypothesis ``index`` in a run with seed ``seed``: its init (``build_model``).

    A hash of ``(seed, index)`` through ``numpy.random.SeedSequence``, so neighbouring indices get
    unrelated seeds and the value does not depend on chunking or sharding.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    state = np.random.SeedSequence([seed, index, _STREAM_INIT]).generate_state(1, dtype=np.uint64)
    return int(state[0]) & _SEED_MASK


def data_order_seed(hypothesis: int) -> int:
    """Seed of the training-data order of the hypothesis whose init seed is ``hypothesis``.

    Kept separate from the init seed so that a hypothesis's init draws and its data order do not
    read the same random stream. ``workers.training.train_model(model, ..., seed=data_order_seed(h))``
    reproduces the order the batched trainer uses for hypothesis ``h``.
    """
    state = np.random.SeedSequence([hypothesis, _STREAM_DATA_ORDER]).generate_state(1, dtype=np.uint64)
    return int(state[0]) & _SEED_MASK


class Ensemble(NamedTuple):
    """S members of one architecture: ``params``/``buffers`` map names to ``(S, *shape)`` tensors;
    ``base`` is a parameter-free copy of the module (on the meta device) that gives the forward."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    base: nn.Module

    @property
    def size(self) -> int:
        return next(iter(self.params.values())).shape[0]


def build_members(arch: AnySpec, seeds: Sequence[int], device: torch.device | str | None = None) -> Ensemble:
    """Stack the members ``build_model(arch, s, device)`` for ``s`` in ``seeds``.

    Args:
        arch: a validated architecture spec (its ``init`` block is part of the space).
        seeds: one integer seed per member (usually ``hypothesis_seed(run_seed, i)``); not empty.
        device: where the stacked tensors live (default CPU).

    Returns:
        ``Ensemble(params, buffers, base)``; ``params`` are leaf tensors with ``requires_grad``
        (ready for an optimizer), member ``j`` at index ``j`` of every tensor.
    """
    if len(seeds) == 0:
        raise ValueError("build_members needs at least one seed")
    members = [build_model(arch, int(s), device) for s in seeds]
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    return Ensemble(params, buffers, base)


def ensemble_forward(ensemble: Ensemble, X: torch.Tensor) -> torch.Tensor:
    """Every member on the same inputs: ``X`` of shape ``(N, *sample)`` -> ``(S, N, *out)``."""
    if _is_plain_mlp(ensemble.base):
        return _mlp_forward(ensemble, X.unsqueeze(0).expand(ensemble.size, *X.shape))
    return vmap(_member_call(ensemble.base), in_dims=(0, 0, None))(ensemble.params, ensemble.buffers, X)


def ensemble_forward_each(ensemble: Ensemble, X_each: torch.Tensor) -> torch.Tensor:
    """Each member on its own batch: ``X_each`` of shape ``(S, B, *sample)`` -> ``(S, B, *out)``."""
    if X_each.shape[0] != ensemble.size:
        raise ValueError(f"X_each has {X_each.shape[0]} batches for {ensemble.size} members")
    if _is_plain_mlp(ensemble.base):
        return _mlp_forward(ensemble, X_each)
    return vmap(_member_call(ensemble.base), in_dims=(0, 0, 0))(ensemble.params, ensemble.buffers, X_each)


def unstack_member(ensemble: Ensemble, index: int, device: torch.device | str | None = None) -> nn.Module:
    """Member ``index`` as an ordinary module (a copy, eval mode), e.g. to compare with a plain loop."""
    module = copy.deepcopy(ensemble.base).to_empty(device=device or "cpu")
    state = {k: v[index].detach() for k, v in {**ensemble.params, **ensemble.buffers}.items()}
    module.load_state_dict(state)
    return module.eval()


def _member_call(base: nn.Module):
    def call(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (params, buffers), (x,))

    return call


def _is_plain_mlp(base: nn.Module) -> bool:
    # The zoo's MLP exactly (a subclass could override forward), with 2-D inputs per member.
    return type(base) is MLP


def _mlp_forward(ensemble: Ensemble, X_each: torch.Tensor) -> torch.Tensor:
    """``models.zoo.mlp.MLP.forward`` written with batched matmuls over the member axis.

    ``X_each`` is ``(S, B, in_dim)`` (extra leading sample axes are flattened into B and restored).
    Activations are kept feature-major, ``(S, features, B)``, and each layer computes
    ``W @ h + b``: the weight gradient ``dz @ h^T`` then comes out in the parameter's own
    ``(S, out, in)`` layout, where ``h @ W^T`` would yield it transposed and cost a full copy of
    every weight gradient per step.
    """
    base: MLP = ensemble.base  # type: ignore[assignment]
    params = ensemble.params
    S = X_each.shape[0]
    sample_axes = X_each.shape[1:-1]
    h = X_each.reshape(S, -1, X_each.shape[-1]).transpose(1, 2)  # (S, in, B), a view
    n_layers = len(base.layers)
    # Activations are parameter-free modules, so the meta-device base's own one applies as is.
    act = base.act
    for i in range(n_layers):
        weight = params[f"layers.{i}.weight"]  # (S, out, in)
        bias = params.get(f"layers.{i}.bias")
        z = torch.baddbmm(bias.unsqueeze(2), weight, h) if bias is not None else torch.bmm(weight, h)
        if i == n_layers - 1:
            h = z
            break
        if len(base.norms):
            norm = base.norms[i]
            z = F.layer_norm(z.transpose(1, 2), norm.normalized_shape, eps=norm.eps)
            z = (z * params[f"norms.{i}.weight"].unsqueeze(1) + params[f"norms.{i}.bias"].unsqueeze(1)).transpose(1, 2)
        # ReLU in place: z is a fresh temporary that nothing saved for backward (the matmul keeps its
        # inputs, not its output), so this saves an allocation and a pass per layer (~6% of a wide
        # MLP's training step here). Other activations keep their out-of-place module call.
        z = torch.relu_(z) if type(act) is nn.ReLU else act(z)
        h = h + z if (base.residual and i > 0) else z
    return h.transpose(1, 2).reshape(S, *sample_axes, h.shape[1])
