"""Build seeded members of a hypothesis space from an architecture spec.

``BUILDERS`` is the catalogue of families (keys are ``models.specs.ARCH_FAMILIES``). A member is a
function of ``(spec, seed)`` only: ``build_model`` constructs on the CPU from a private RNG state,
applies the spec's init from a seeded ``torch.Generator``, and only then moves to ``device``, so
the same seed gives the same parameters on every device and the caller's RNG stream is untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from models.graph import store as graph_store
from models.init import apply_init, draw_parameter, member_key
from models.specs import CNNSpec, MLPSpec, OnnxSpec, TransformerSpec, ViTSpec
from models.zoo import cnn, mlp, transformer, vit

# The fork re-seeds the process-wide CPU generator: two threads inside it at once would interleave
# their draws and break per-seed determinism.
_SEEDED_CONSTRUCTION = threading.Lock()

AnySpec = MLPSpec | CNNSpec | ViTSpec | TransformerSpec | OnnxSpec

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp.build,
    "cnn": cnn.build,
    "vit": vit.build,
    "transformer": transformer.build,
}


@contextmanager
def _float32_default() -> Iterator[None]:
    """Make float32 torch's default dtype for the block, restoring the caller's afterwards.

    Layers and PyTorch's default init create (and draw) their tensors in the default dtype: under a
    float64 default the same seed would give a float64 model with other values. The default dtype is
    process-wide, so this runs inside ``_SEEDED_CONSTRUCTION`` like the rest of construction.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_model(spec: AnySpec, seed: int, device: torch.device | str | None = None) -> nn.Module:
    """A fresh member of the hypothesis space ``spec``, deterministic in ``seed``.

    Args:
        spec: a validated architecture spec (``models.specs.parse_arch``); its ``init`` block
            says how parameters are drawn.
        seed: integer seed; equal seeds give identical parameters, also for ``init.dist='default'``
            (PyTorch's own init, which draws from the global CPU RNG during construction: that
            draw happens inside ``torch.random.fork_rng``, re-seeded, and the caller's RNG state is
            restored afterwards).
        device: where to put the model (default: CPU).

    Returns:
        The model in eval mode, float32, on ``device``: the same weights per seed whatever torch's
        global default dtype is (construction runs under a float32 default).

    Thread-safe with respect to other ``build_model`` calls (the embedded server builds models in
    request threads while its worker thread builds members): the re-seeded section holds a lock.
    """
    if isinstance(spec, OnnxSpec):
        return _graph_member(spec, seed).to(device=device if device is not None else "cpu").eval()
    builder = BUILDERS[spec.name]
    # devices=[]: only the CPU generator is forked and seeded; construction happens on the CPU,
    # and seeding it through default_generator (not torch.manual_seed) leaves CUDA RNGs alone.
    with _SEEDED_CONSTRUCTION, torch.random.fork_rng(devices=[]), _float32_default():
        torch.random.default_generator.manual_seed(seed)
        model = builder(spec)
    apply_init(model, spec.init, torch.Generator().manual_seed(seed))
    return model.to(device=device if device is not None else "cpu").eval()


def _graph_member(spec: OnnxSpec, seed: int) -> nn.Module:
    """A copy of the loaded graph with every parameter re-drawn by its role (``models.graph.roles``).

    With ``init.dist='default'`` each role gets PyTorch's rule for it (fan-in uniform for weights
    and biases, N(0, 1) embeddings, norm gains 1 and shifts 0); constants stay as uploaded.
    """
    model = graph_store.uploaded_model(spec.graph)
    key = member_key(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for name, param in model.named_parameters():
            role = model.roles[name]
            param.copy_(draw_parameter(name, tuple(param.shape), role.role, role.fan_in, spec.init, key, param.dtype))
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters, counting a parameter shared between modules once."""
    return sum(p.numel() for p in model.parameters())


def output_shape(spec: AnySpec) -> tuple[int, ...]:
    """Shape of the model's output for one input sample (without the batch axis).

    ``(out_dim,)`` for every family, except a transformer with ``pool='none'``, which gives one
    output per position: ``(seq_len, out_dim)``.
    """
    if isinstance(spec, OnnxSpec):
        return tuple(spec.output_shape)
    if isinstance(spec, TransformerSpec) and spec.pool == "none":
        return (spec.seq_len, spec.out_dim)
    return (spec.out_dim,)
