"""Initialisation distributions: the ``init`` half of a hypothesis space (docs/methods.md, Vocabulary).

Each parameter has a role: a weight (matrix, kernel, bias, embedding, positional table, cls
token) or a normalisation gain or shift. ``normal`` draws every weight i.i.d. from N(0, scale^2)
and ``uniform`` from U(-scale, scale), with no per-layer fan-in rescaling, so the prior is
exactly the one the spec names. Normalisation gains are set to 1 and shifts to 0 (they are not
weights of the function class in the sense of Neural Redshift: its scale-flatness findings hold
with them at their defaults); ``init.norms=true`` draws them from the same distribution too.
``default`` keeps PyTorch's per-layer init (gains 1, shifts 0 included).

Every parameter is drawn from its own generator, seeded from the member's generator and the
parameter's name, so a member does not depend on the order in which parameters are visited: a
zoo model and its ONNX export (whose initializers carry the same names) get the same draws.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from models.specs import InitSpec

# Modules whose weight and bias are a normalisation gain and shift.
NORM_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)


def apply_init(model: nn.Module, init: InitSpec, generator: torch.Generator) -> None:
    """Re-draw the parameters of ``model`` in place from ``init`` (see the module docstring).

    Args:
        model: the module to initialise; parameters are found by ``named_parameters()``
            (shared parameters once), and those of ``NORM_MODULES`` are gains and shifts.
        init: ``dist`` in ``{"default", "normal", "uniform"}``, ``scale`` (std for ``normal``,
            bound for ``uniform``) and ``norms``; ``default`` leaves the model untouched.
        generator: a CPU ``torch.Generator``; one number is drawn from it to seed every
            parameter's own generator, the global RNG is not touched.

    Values are drawn on the CPU and copied to each parameter's device and dtype, so one seed
    gives the same model on CPU and GPU.
    """
    if init.dist == "default":
        return
    base = member_key(generator)
    norm_params = {}
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_MODULES):
            for pname, param in module.named_parameters(recurse=False):
                norm_params[id(param)] = "norm_gain" if pname == "weight" else "norm_shift"
    with torch.no_grad():
        for name, param in model.named_parameters():
            role = norm_params.get(id(param), "weight")
            param.copy_(draw_parameter(name, tuple(param.shape), role, None, init, base, param.dtype))


def member_key(generator: torch.Generator) -> int:
    """The one number a member's parameters are seeded from (advances ``generator`` once)."""
    if generator.device.type != "cpu":
        raise ValueError("apply_init needs a CPU generator so that draws do not depend on the device")
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def draw_parameter(
    name: str,
    shape: tuple[int, ...],
    role: str,
    fan_in: int | None,
    init: InitSpec,
    key: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One parameter's values: role ``weight``/``bias``/``embedding``/``norm_gain``/``norm_shift``.

    ``fan_in`` is used by ``init.dist == "default"`` only, which follows PyTorch's rule for the
    role: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (``nn.Linear``, ``nn.Conv*``),
    N(0, 1) for embeddings, gain 1 and shift 0. ``key`` comes from ``member_key``.
    """
    sampling = torch.float64 if dtype == torch.float64 else torch.float32
    # Draw low-precision parameters in float32 and round once, rather than sampling in bf16/fp16.
    if role in ("norm_gain", "norm_shift") and (not init.norms or init.dist == "default"):
        return torch.full(shape, 1.0 if role == "norm_gain" else 0.0, dtype=sampling).to(dtype)
    digest = hashlib.sha256(f"{key}:{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    draw = torch.empty(shape, dtype=sampling)
    if init.dist == "normal":
        draw.normal_(0.0, init.scale, generator=generator)
    elif init.dist == "uniform":
        draw.uniform_(-init.scale, init.scale, generator=generator)
    elif role == "embedding":
        draw.normal_(0.0, 1.0, generator=generator)
    else:
        bound = 1.0 / max(fan_in or 1, 1) ** 0.5
        draw.uniform_(-bound, bound, generator=generator)
    return draw.to(dtype)
