"""The zoo's forward passes against independent numpy/scipy references, plus the properties the
probes rely on: exact shift invariance of circular CNNs, permutation symmetry of attention without
positions, readable parameter names, and torch.func (vmap over stacked members, jvp, double
backward) on every family."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import torch
from torch import nn
from torch.func import functional_call, jvp, stack_module_state, vmap

from models.registry import build_model, output_shape
from models.specs import parse_arch
from models.zoo.activations import ACTIVATIONS
from models.zoo.blocks import feedforward_width
from tests.models.tiny_specs import TINY_SPECS, sample_input, tiny_spec

NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + scipy.special.erf(x / np.sqrt(2.0))),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "gaussian": lambda x: np.exp(-(x**2)),
    "sin": np.sin,
    "identity": lambda x: x,
}


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in model.state_dict().items()}


def _layernorm(z: np.ndarray, gain: np.ndarray, shift: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps) * gain + shift


def _attention(h: np.ndarray, s: dict, prefix: str, heads: int) -> np.ndarray:
    n, length, dim = h.shape
    hd = dim // heads
    proj = {p: h @ s[f"{prefix}.{p}.weight"].T + s[f"{prefix}.{p}.bias"] for p in "qkv"}
    out = np.zeros_like(h)
    for head in range(heads):
        cols = slice(head * hd, (head + 1) * hd)
        q, k, v = (proj[p][..., cols] for p in "qkv")
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        weights = scipy.special.softmax(scores, axis=-1)
        out[..., cols] = weights @ v
    return out @ s[f"{prefix}.out.weight"].T + s[f"{prefix}.out.bias"]


def _blocks(h: np.ndarray, s: dict, depth: int, heads: int) -> np.ndarray:
    gelu = NUMPY_ACTIVATIONS["gelu"]
    for i in range(depth):
        p = f"blocks.{i}"
        h = h + _attention(_layernorm(h, s[f"{p}.norm1.weight"], s[f"{p}.norm1.bias"]), s, f"{p}.attn", heads)
        z = _layernorm(h, s[f"{p}.norm2.weight"], s[f"{p}.norm2.bias"])
        z = gelu(z @ s[f"{p}.mlp.fc1.weight"].T + s[f"{p}.mlp.fc1.bias"])
        h = h + z @ s[f"{p}.mlp.fc2.weight"].T + s[f"{p}.mlp.fc2.bias"]
    return h


def _forward64(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model64 = copy.deepcopy(model).double()
    return model64(x.double() if x.is_floating_point() else x).detach().numpy()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_numpy(name):
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    got = ACTIVATIONS[name]()(x).numpy()
    np.testing.assert_allclose(got, NUMPY_ACTIVATIONS[name](x.numpy()), rtol=1e-12, atol=1e-12)


def test_mlp_without_hidden_layers_is_one_affine_map():
    spec = parse_arch({"name": "mlp", "in_dim": 4, "hidden": [], "out_dim": 3, "activation": "tanh"})
    model = build_model(spec, seed=0)
    s = _state(model)
    assert sorted(s) == ["layers.0.bias", "layers.0.weight"]
    x = sample_input(spec, 6)
    expected = x.double().numpy() @ s["layers.0.weight"].T + s["layers.0.bias"]
    np.testing.assert_allclose(_forward64(model, x), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [
        {"activation": "relu", "hidden": [5, 4]},
        {"activation": "sigmoid", "hidden": [4, 4, 4], "layernorm": True},
        {"activation": "gaussian", "hidden": [4, 4, 4], "residual": True},
        {"activation": "sin", "hidden": [4, 4], "residual": True, "layernorm": True, "bias": False},
    ],
)
def test_mlp_matches_numpy_reference(overrides):
    spec = tiny_spec("mlp", **overrides)
    model = build_model(spec, seed=1)
    s, x = _state(model), sample_input(spec, 7)
    act = NUMPY_ACTIVATIONS[spec.activation]
    h = x.double().numpy()

    def linear(i, h):
        return h @ s[f"layers.{i}.weight"].T + (s[f"layers.{i}.bias"] if spec.bias else 0.0)

    for i in range(len(spec.hidden)):
        z = linear(i, h)
        if spec.layernorm:
            z = _layernorm(z, s[f"norms.{i}.weight"], s[f"norms.{i}.bias"])
        h = h + act(z) if (spec.residual and i > 0) else act(z)
    expected = linear(len(spec.hidden), h)
    np.testing.assert_allclose(_forward64(model, x), expected, rtol=1e-10, atol=1e-12)
    assert spec.bias or not any(k.startswith("layers.") and k.endswith(".bias") for k in s)


@pytest.mark.parametrize("padding,mode", [("zeros", "constant"), ("circular", "wrap")])
@pytest.mark.parametrize("pool", ["flatten", "global_avg"])
def test_cnn_matches_scipy_correlation(padding, mode, pool):
    spec = parse_arch(
        {"name": "cnn", "in_channels": 2, "image_size": 5, "channels": [3, 2], "kernel_size": 3,
         "padding": padding, "pool": pool, "out_dim": 2, "activation": "relu"}
    )
    model = build_model(spec, seed=2)
    s, x = _state(model), sample_input(spec, 3).double().numpy()
    def conv(img, w, b):  # img (C_in, H, W), w (C_out, C_in, k, k): sum of per-channel correlations
        return np.stack(
            [b[o] + sum(scipy.ndimage.correlate(img[c], w[o, c], mode=mode, cval=0.0) for c in range(len(img)))
             for o in range(len(w))]
        )

    h = x
    for i in range(len(spec.channels)):
        h = np.maximum(np.stack([conv(img, s[f"convs.{i}.weight"], s[f"convs.{i}.bias"]) for img in h]), 0.0)
    pooled = h.mean(axis=(-2, -1)) if pool == "global_avg" else h.reshape(len(h), -1)
    expected = pooled @ s["head.weight"].T + s["head.bias"]
    np.testing.assert_allclose(_forward64(model, torch.from_numpy(x)), expected, rtol=1e-10, atol=1e-12)


def test_circular_cnn_with_global_pooling_is_exactly_shift_invariant():
    spec = tiny_spec("cnn_circular", activation="tanh", kernel_size=5)
    model = build_model(spec, seed=3)
    x = sample_input(spec, 4)
    with torch.no_grad():
        base = model(x)
        for shift in [(1, 0), (0, 2), (3, 5), (-2, 1)]:
            moved = model(torch.roll(x, shifts=shift, dims=(-2, -1)))
            assert torch.allclose(moved, base, rtol=0, atol=1e-6), shift
        # Control: zero padding sees the image border, so it is not invariant.
        zero_padded = build_model(tiny_spec("cnn_circular", activation="tanh", kernel_size=5, padding="zeros"), seed=3)
        gap = (zero_padded(torch.roll(x, shifts=(3, 5), dims=(-2, -1))) - zero_padded(x)).abs().max()
    assert gap > 1e-3


def test_circular_padding_wider_than_the_image_fails_at_build_time():
    ok = tiny_spec("cnn_circular", image_size=2, kernel_size=5)  # pads 2 on each side of 2 pixels
    build_model(ok, seed=0)(sample_input(ok, 1))
    with pytest.raises(ValueError, match="kernel_size // 2 <= image_size"):
        build_model(tiny_spec("cnn_circular", image_size=1, kernel_size=5), seed=0)


def test_vit_matches_numpy_reference():
    spec = tiny_spec("vit")
    model = build_model(spec, seed=4)
    s, x = _state(model), sample_input(spec, 3).double().numpy()
    p, grid = spec.patch_size, spec.image_size // spec.patch_size
    # (N, C, H, W) -> (N, patches in row-major order, C * p * p)
    patches = x.reshape(len(x), spec.in_channels, grid, p, grid, p).transpose(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(len(x), grid * grid, -1)
    w = s["patch_embed.weight"].reshape(spec.dim, -1)
    h = patches @ w.T + s["patch_embed.bias"] + s["pos_embed"]
    h = _blocks(h, s, spec.depth, spec.heads)
    expected = _layernorm(h.mean(axis=1), s["norm.weight"], s["norm.bias"]) @ s["head.weight"].T + s["head.bias"]
    np.testing.assert_allclose(_forward64(model, torch.from_numpy(x)), expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("key", ["transformer_tokens_mean", "transformer_tokens_cls", "transformer_features_none"])
def test_transformer_matches_numpy_reference(key):
    spec = tiny_spec(key)
    model = build_model(spec, seed=5)
    s, x = _state(model), sample_input(spec, 3)
    if spec.input.type == "tokens":
        h = s["embed.weight"][x.numpy()]
    else:
        h = x.double().numpy() @ s["embed.weight"].T + s["embed.bias"]
    if spec.pool == "cls":
        h = np.concatenate([np.broadcast_to(s["cls_token"], (len(h), 1, spec.dim)), h], axis=1)
    h = _blocks(h + s["pos_embed"], s, spec.depth, spec.heads)
    h = _layernorm(h, s["norm.weight"], s["norm.bias"])
    h = {"mean": lambda: h.mean(axis=1), "cls": lambda: h[:, 0], "none": lambda: h}[spec.pool]()
    expected = h @ s["head.weight"].T + s["head.bias"]
    np.testing.assert_allclose(_forward64(model, x), expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("pool", ["mean", "cls", "none"])
def test_transformer_without_positions_is_permutation_symmetric(pool):
    # Self-attention and position-wise layers commute with permuting positions; only pos_embed
    # breaks that. So with it zeroed, pooled outputs are invariant and 'none' is equivariant.
    spec = tiny_spec("transformer_tokens_mean", pool=pool)
    model = build_model(spec, seed=6)
    with torch.no_grad():
        model.pos_embed.zero_()
        x = sample_input(spec, 4)
        perm = torch.tensor([3, 0, 4, 1, 2])
        out, out_perm = model(x), model(x[:, perm])
    expected = out[:, perm] if pool == "none" else out
    torch.testing.assert_close(out_perm, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key", sorted(TINY_SPECS))
def test_forward_shape_equals_output_shape(key):
    spec = tiny_spec(key)
    model = build_model(spec, seed=0)
    with torch.no_grad():
        out = model(sample_input(spec, 3))
    assert out.shape == (3, *output_shape(spec))
    assert out.dtype == torch.float32


def test_parameter_names_are_stable_and_readable():
    vit = build_model(tiny_spec("vit", depth=1), seed=0)
    block = ["norm1", "attn.q", "attn.k", "attn.v", "attn.out", "norm2", "mlp.fc1", "mlp.fc2"]
    assert list(vit.state_dict()) == [
        "pos_embed", "patch_embed.weight", "patch_embed.bias",
        *[f"blocks.0.{m}.{p}" for m in block for p in ("weight", "bias")],
        "norm.weight", "norm.bias", "head.weight", "head.bias",
    ]
    cls = build_model(tiny_spec("transformer_tokens_cls", depth=0), seed=0)
    assert list(cls.state_dict()) == [
        "cls_token", "pos_embed", "embed.weight", "norm.weight", "norm.bias", "head.weight", "head.bias"
    ]
    assert cls.pos_embed.shape == (1, 6, 8)  # seq_len + 1 for the cls token
    mlp = build_model(tiny_spec("mlp_residual_layernorm"), seed=0)
    assert sorted(mlp.state_dict()) == sorted(
        [f"layers.{i}.{p}" for i in range(4) for p in ("weight", "bias")]
        + [f"norms.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    )
    cnn = build_model(tiny_spec("cnn_flatten"), seed=0)
    assert list(cnn.state_dict()) == ["convs.0.weight", "convs.0.bias", "head.weight", "head.bias"]
    assert cnn.head.in_features == 2 * 4 * 4


def test_attention_projections_are_separate_linear_layers():
    model = build_model(tiny_spec("transformer_tokens_mean"), seed=0)
    linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {f"blocks.{i}.attn.{p}" for i in range(2) for p in ("q", "k", "v", "out")} <= linears
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def test_feedforward_width_is_never_zero():
    assert feedforward_width(8, 2.0) == 16
    assert feedforward_width(1, 0.1) == 1
    model = build_model(tiny_spec("transformer_features_none", mlp_ratio=0.1), seed=0)
    assert model.blocks[0].mlp.fc1.out_features == 1


@pytest.mark.parametrize("key", sorted(TINY_SPECS))
def test_vmap_over_stacked_members_matches_individual_forwards(key):
    spec = tiny_spec(key, init={"dist": "normal", "scale": 0.5})
    members = [build_model(spec, seed=s) for s in range(3)]
    params, buffers = stack_module_state(members)
    skeleton = copy.deepcopy(members[0]).to("meta")
    x = sample_input(spec, 4)

    def run(p, b, inputs):
        return functional_call(skeleton, (p, b), (inputs,))

    with torch.no_grad():
        batched = vmap(run, in_dims=(0, 0, None))(params, buffers, x)
        individual = torch.stack([m(x) for m in members])
    torch.testing.assert_close(batched, individual, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(individual[0], individual[1])


@pytest.mark.parametrize("key", [k for k in sorted(TINY_SPECS) if "tokens" not in k])
def test_forward_mode_and_double_backward_work(key):
    # The invariance probe differentiates inputs with jvp; the sharpness probe needs
    # Hessian-vector products, i.e. backward through a backward.
    spec = tiny_spec(key)
    model = build_model(spec, seed=0)
    x = sample_input(spec, 2)
    direction = torch.ones_like(x)
    _, tangent = jvp(model, (x,), (direction,))
    step = 1e-3
    finite_diff = (model(x + step * direction) - model(x - step * direction)) / (2 * step)
    torch.testing.assert_close(tangent, finite_diff, rtol=2e-2, atol=2e-3)

    params = [p for p in model.parameters()]
    loss = model(x).pow(2).sum()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hvp = torch.autograd.grad(sum((g * g.detach()).sum() for g in grads), params)
    assert all(h.shape == p.shape and torch.isfinite(h).all() for h, p in zip(hvp, params))
