"""Models exported to ONNX inside the tests (nothing downloaded): the zoo families, a ResNet-style
CNN with BatchNorm and a small ``nn.TransformerEncoder``, all at opset 17.

``export`` uses torch's TorchScript exporter (``dynamo=False``): it needs no onnxscript and takes a
fraction of a second per model; ``do_constant_folding=False`` keeps BatchNormalization nodes
instead of folding them into the convolutions, so the BatchNorm path is what is tested.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from models.registry import build_model
from models.specs import parse_arch

OPSET = 17

ZOO_ARCHS = {
    "mlp": {"name": "mlp", "in_dim": 2, "hidden": [16, 16], "out_dim": 3, "layernorm": True},
    "cnn": {"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [8], "out_dim": 3, "padding": "circular"},
    "vit": {"name": "vit", "in_channels": 1, "image_size": 8, "patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "out_dim": 3},
    "transformer": {"name": "transformer", "input": {"type": "features", "dim": 3}, "seq_len": 6, "dim": 16,
                    "depth": 1, "heads": 2, "out_dim": 3},
}


class ResNetStyle(nn.Module):
    """Conv-BN-ReLU stem, one residual block of two Conv-BN, max pool, global average pool, head."""

    def __init__(self, channels: int = 4, out_dim: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(channels, out_dim)
        # Non-trivial statistics, gains and shifts, as after training, so BatchNorm is not the
        # identity (and no two norms are equal: the exporter would merge equal initializers).
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for bn in (self.bn0, self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5, generator=generator)
                bn.running_var.uniform_(0.5, 2.0, generator=generator)
                bn.weight.uniform_(0.5, 1.5, generator=generator)
                bn.bias.uniform_(-0.2, 0.2, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        h = torch.relu(h + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(h))))))
        h = self.pool(h)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


class SmallTransformer(nn.Module):
    """Linear embedding, one ``nn.TransformerEncoderLayer`` (fused in_proj), mean pool, head."""

    def __init__(self, in_dim: int = 3, dim: int = 8, out_dim: int = 3):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


HANDMADE = {"resnet": (ResNetStyle, (1, 8, 8)), "small_transformer": (SmallTransformer, (6, 3))}


def zoo_model(family: str, seed: int = 0) -> nn.Module:
    return build_model(parse_arch(ZOO_ARCHS[family]), seed=seed)


def handmade_model(name: str, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HANDMADE[name][0]().eval()


def sample_shape(name: str) -> tuple[int, ...]:
    if name in HANDMADE:
        return HANDMADE[name][1]
    from models.specs import input_signature

    return input_signature(parse_arch(ZOO_ARCHS[name]))[1]


def export(model: nn.Module, shape: tuple[int, ...], path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Export ``model`` for one sample of ``shape`` (batch size 1) to ``path`` at opset 17."""
    example = torch.zeros((1, *shape), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(model.eval(), (example,), str(path), opset_version=OPSET, dynamo=False,
                          do_constant_folding=False, input_names=["x"], output_names=["y"])
    return path


def export_named(name: str, directory: Path, seed: int = 0) -> Path:
    """The zoo family or hand-made model ``name`` exported to ``directory/name.onnx``."""
    model = handmade_model(name, seed) if name in HANDMADE else zoo_model(name, seed)
    return export(model, sample_shape(name), directory / f"{name}.onnx")
