"""Initialisation distributions: the ``init`` half of a hypothesis space (docs/methods.md, Vocabulary).

``normal`` draws every parameter i.i.d. from N(0, scale^2) and ``uniform`` from U(-scale, scale):
weights and biases, LayerNorm gains and shifts, embeddings, positional embeddings and cls tokens
alike, so the prior is exactly the one the spec names, with no per-layer fan-in rescaling.
``default`` keeps PyTorch's per-layer init from construction.
"""

from __future__ import annotations

import torch
from torch import nn

from models.specs import InitSpec


def apply_init(model: nn.Module, init: InitSpec, generator: torch.Generator) -> None:
    """Re-draw every parameter of ``model`` in place from ``init``'s distribution.

    Args:
        model: the module to initialise; parameters are visited in ``named_parameters()`` order
            (shared parameters once), so the draw is a function of the architecture and the
            generator's state only.
        init: ``dist`` in ``{"default", "normal", "uniform"}`` and ``scale`` (std for ``normal``,
            bound for ``uniform``); ``default`` leaves the model untouched.
        generator: a CPU ``torch.Generator``; it is advanced, the global RNG is not touched.

    Values are drawn on the CPU and copied to each parameter's device and dtype, so one seed
    gives the same model on CPU and GPU.
    """
    if init.dist == "default":
        return
    if generator.device.type != "cpu":
        raise ValueError("apply_init needs a CPU generator so that draws do not depend on the device")
    with torch.no_grad():
        for param in model.parameters():
            draw = torch.empty(param.shape, dtype=_sampling_dtype(param.dtype))
            if init.dist == "normal":
                draw.normal_(0.0, init.scale, generator=generator)
            elif init.dist == "uniform":
                draw.uniform_(-init.scale, init.scale, generator=generator)
            else:  # pragma: no cover - InitSpec validation makes this unreachable
                raise ValueError(f"unknown init dist {init.dist!r}")
            param.copy_(draw)


def _sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    # Draw low-precision parameters in float32 and round once, rather than sampling in bf16/fp16.
    return torch.float64 if dtype == torch.float64 else torch.float32
