"""Architecture zoo: one family per module, each exposing ``build(spec) -> torch.nn.Module``.

Builders use PyTorch's default init and the global RNG; call ``models.registry.build_model`` to
get a seeded member of a hypothesis space with the spec's init applied.
"""

from models.zoo import cnn, mlp, transformer, vit

__all__ = ["cnn", "mlp", "transformer", "vit"]
