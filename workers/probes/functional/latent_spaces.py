"""Hypothesis spaces as deterministic maps of standard normals: the inputs of ``rare_event``.

A ``LatentSpace`` is ``(dim, loss_fn)``: ``loss_fn`` takes ``(B, dim)`` float64 standard normals
``z`` and returns the ``(B,)`` test losses of the hypotheses ``h(z)``, so that ``h(z)`` for
``z ~ N(0, I)`` has exactly the space's law.

- ``kernel_latent``: the GP posterior, ``f = mean + L z`` (``gp_kernel.kernel_functions_from_normals``,
  the map the kernel sampler applies to its own normals); ``dim = n_test * out_dim``.
- ``init_latent``: a member's parameters, consumed in ``named_parameters()`` order as
  ``models.init.apply_init`` draws them: ``normal(std)`` is ``std * z``; ``uniform(bound)`` is
  ``bound * (2 Phi(z) - 1)`` (the probability integral transform: ``Phi(z)`` is uniform on (0, 1));
  PyTorch's ``default`` init, per module: ``Linear``/``Conv*`` weights and biases
  ``U(+-1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))`` and the bias rule of ``reset_parameters``),
  ``LayerNorm`` gains 1 and shifts 0 (constants: no latent coordinates), ``Embedding`` ``N(0, 1)``.
  Other parameters under ``default`` (e.g. positional embeddings with their own rule) raise
  ``ValueError``. The losses of all B members come from one batched forward (``ensemble``).
- ``trained_latent``: the ``trained`` space. A trained hypothesis is a deterministic function of
  its initial parameters and its data order, so ``z = (init block, order block)``: the init block
  as for ``init_latent``, and per epoch ``n_train`` normals whose argsort is the epoch's order (the
  ranks of i.i.d. continuous draws are a uniformly random permutation, the law of ``randperm``).
  ``dim = parameters + epochs * n_train``; each evaluation is a training run (batched over B).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from models.registry import AnySpec
from workers.data.dataset import Dataset
from workers.probes.functional import gp_kernel
from workers.probes.functional.ensemble import Ensemble, build_members
from workers.probes.functional.ensemble_training import ensemble_test_losses, train_members
from workers.probes.functional.rare_event import LossFn
from workers.runspec import TrainSpec


class LatentSpace(NamedTuple):
    dim: int
    loss_fn: LossFn


def kernel_latent(posterior: gp_kernel.GPPosterior, targets, loss: gp_kernel.KernelLoss = "mse") -> LatentSpace:
    """The kernel space: ``z`` (flattened ``(n_test, out_dim)`` normals) -> losses of ``mean + L z``."""
    dense, labels = gp_kernel.dense_targets(posterior, targets, loss)
    shape = (posterior.n_test, posterior.out_dim)

    def loss_fn(z: np.ndarray) -> np.ndarray:
        f = gp_kernel.kernel_functions_from_normals(posterior, z.reshape(len(z), *shape))
        return gp_kernel.function_losses(f, dense, labels, loss)

    return LatentSpace(shape[0] * shape[1], loss_fn)


@dataclass(frozen=True)
class ParameterLaw:
    """One parameter's prior: ``kind`` ``normal`` (``scale`` = std), ``uniform`` (``scale`` = bound)
    or ``constant`` (every entry ``scale``)."""

    name: str
    shape: tuple[int, ...]
    kind: str
    scale: float

    @property
    def latent_size(self) -> int:
        return 0 if self.kind == "constant" else math.prod(self.shape)


def parameter_laws(arch: AnySpec) -> list[ParameterLaw]:
    """The prior of every parameter of ``arch``'s members, in ``named_parameters()`` order."""
    module = build_members(arch, [0]).base
    if arch.init.dist in ("normal", "uniform"):
        return [ParameterLaw(n, tuple(p.shape), arch.init.dist, float(arch.init.scale)) for n, p in module.named_parameters()]
    owners = {f"{prefix}.{leaf}" if prefix else leaf: sub for prefix, sub in module.named_modules()
              for leaf, _ in sub.named_parameters(recurse=False)}
    laws = []
    for name, param in module.named_parameters():
        owner, leaf = owners[name], name.rsplit(".", 1)[-1]
        if isinstance(owner, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fan_in = math.prod(owner.weight.shape[1:])
            laws.append(ParameterLaw(name, tuple(param.shape), "uniform", 1.0 / math.sqrt(fan_in)))
        elif isinstance(owner, nn.LayerNorm):
            laws.append(ParameterLaw(name, tuple(param.shape), "constant", 1.0 if leaf == "weight" else 0.0))
        elif isinstance(owner, nn.Embedding):
            laws.append(ParameterLaw(name, tuple(param.shape), "normal", 1.0))
        else:
            raise ValueError(
                f"parameter {name!r} ({type(owner).__name__}) has no known default init law; "
                "give the architecture an explicit init (normal or uniform) for the rare-event method"
            )
    return laws


def parameters_from_normals(laws: list[ParameterLaw], z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stacked parameters ``{name: (B, *shape)}`` of B members from ``z`` ``(B, dim)``."""
    params, column = {}, 0
    for law in laws:
        if law.kind == "constant":
            params[law.name] = torch.full((z.shape[0], *law.shape), law.scale, dtype=z.dtype, device=z.device)
            continue
        block = z[:, column : column + law.latent_size].reshape(z.shape[0], *law.shape)
        column += law.latent_size
        if law.kind == "normal":
            params[law.name] = law.scale * block
        else:
            # Phi(z) is uniform on (0, 1): 2 Phi(z) - 1 is uniform on (-1, 1).
            params[law.name] = law.scale * (2.0 * torch.special.ndtr(block) - 1.0)
    return params


def init_latent(
    arch: AnySpec, dataset: Dataset, task_loss: str, device: torch.device | str | None = None
) -> LatentSpace:
    """The ``init`` space: ``z`` -> test losses of the members whose parameters ``z`` encodes."""
    laws = parameter_laws(arch)
    device = torch.device(device or "cpu")
    template = build_members(arch, [0], device)

    def loss_fn(z: np.ndarray) -> np.ndarray:
        # Parameters are float32 as build_model makes them; the transform itself runs in float64.
        latent = torch.as_tensor(z, dtype=torch.float64)
        params = {k: v.to(device=device, dtype=torch.float32) for k, v in parameters_from_normals(laws, latent).items()}
        buffers = {k: v.expand(len(z), *v.shape[1:]) for k, v in template.buffers.items()}
        return ensemble_test_losses(Ensemble(params, buffers, template.base), dataset, task_loss).cpu().numpy()

    return LatentSpace(sum(law.latent_size for law in laws), loss_fn)


def trained_latent(
    arch: AnySpec, dataset: Dataset, task_loss: str, train_spec: TrainSpec, device: torch.device | str | None = None
) -> LatentSpace:
    """The ``trained`` space: ``z`` -> test losses after training from the encoded init and data order."""
    laws = parameter_laws(arch)
    device = torch.device(device or "cpu")
    template = build_members(arch, [0], device)
    n_params, n_train = sum(law.latent_size for law in laws), dataset.X_train.shape[0]

    def loss_fn(z: np.ndarray) -> np.ndarray:
        latent = torch.as_tensor(z, dtype=torch.float64)
        params = {k: v.to(device=device, dtype=torch.float32)
                  for k, v in parameters_from_normals(laws, latent[:, :n_params]).items()}
        buffers = {k: v.expand(len(z), *v.shape[1:]).clone() for k, v in template.buffers.items()}
        order_block = latent[:, n_params:].reshape(len(z), train_spec.epochs, n_train)

        def orders(epoch: int, n: int) -> torch.Tensor:
            return torch.argsort(order_block[:, epoch], dim=1)

        trained = train_members(Ensemble(params, buffers, template.base), dataset, train_spec, task_loss, orders)
        return ensemble_test_losses(trained, dataset, task_loss).cpu().numpy()

    return LatentSpace(n_params + train_spec.epochs * n_train, loss_fn)
