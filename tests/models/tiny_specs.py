"""Tiny architecture specs, one or more per family, shared by the tests of ``models/``.

Kept small so that every test building them runs in milliseconds on a CPU.
"""

from __future__ import annotations

import torch

from models.specs import input_signature, parse_arch

TINY_SPECS: dict[str, dict] = {
    "mlp": {"name": "mlp", "in_dim": 3, "hidden": [5, 4], "out_dim": 2, "activation": "tanh"},
    "mlp_residual_layernorm": {
        "name": "mlp", "in_dim": 3, "hidden": [4, 4, 4], "out_dim": 2,
        "activation": "gaussian", "layernorm": True, "residual": True,
    },
    "cnn_circular": {
        "name": "cnn", "in_channels": 2, "image_size": 6, "channels": [3, 4],
        "padding": "circular", "pool": "global_avg", "out_dim": 3,
    },
    "cnn_flatten": {
        "name": "cnn", "in_channels": 1, "image_size": 4, "channels": [2],
        "kernel_size": 3, "pool": "flatten", "out_dim": 2, "activation": "sin",
    },
    "vit": {
        "name": "vit", "in_channels": 2, "image_size": 4, "patch_size": 2,
        "dim": 8, "depth": 2, "heads": 2, "out_dim": 3,
    },
    "transformer_tokens_mean": {
        "name": "transformer", "input": {"type": "tokens", "vocab_size": 7},
        "seq_len": 5, "dim": 8, "depth": 2, "heads": 2, "pool": "mean", "out_dim": 3,
    },
    "transformer_tokens_cls": {
        "name": "transformer", "input": {"type": "tokens", "vocab_size": 7},
        "seq_len": 5, "dim": 8, "depth": 1, "heads": 4, "pool": "cls", "out_dim": 2,
    },
    "transformer_features_none": {
        "name": "transformer", "input": {"type": "features", "dim": 3},
        "seq_len": 4, "dim": 6, "depth": 1, "heads": 3, "pool": "none", "out_dim": 2,
    },
}


def tiny_spec(key: str, **overrides):
    """The validated spec ``TINY_SPECS[key]`` with top-level fields replaced by ``overrides``."""
    return parse_arch({**TINY_SPECS[key], **overrides})


def sample_input(spec, batch: int, seed: int = 0) -> torch.Tensor:
    """A batch of valid inputs for ``spec``: Gaussian features/images or uniform token ids."""
    kind, shape = input_signature(spec)
    generator = torch.Generator().manual_seed(seed)
    if kind == "tokens":
        return torch.randint(0, spec.input.vocab_size, (batch, *shape), generator=generator)
    return torch.randn((batch, *shape), generator=generator)
