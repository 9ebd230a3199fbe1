"""build_model is a function of (spec, seed) only, leaves the caller's RNG alone, and returns an
eval-mode model; count_parameters and output_shape against hand-computed answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.registry import BUILDERS, build_model, count_parameters, output_shape
from models.specs import ARCH_FAMILIES, parse_arch
from tests.models.tiny_specs import TINY_SPECS, tiny_spec

DISTS = [{"dist": "default"}, {"dist": "normal", "scale": 0.3}, {"dist": "uniform", "scale": 2.0}]


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_builders_cover_every_family():
    assert set(BUILDERS) == set(ARCH_FAMILIES)


@pytest.mark.parametrize("init", DISTS, ids=[d["dist"] for d in DISTS])
@pytest.mark.parametrize("key", sorted(TINY_SPECS))
def test_build_is_deterministic_per_seed_and_leaves_global_rng_alone(key, init):
    spec = tiny_spec(key, init=init)
    torch.manual_seed(1234)
    expected_stream = torch.rand(5)
    torch.manual_seed(1234)
    first = build_model(spec, seed=11)
    # The caller's stream continues exactly as if build_model had not been called.
    assert torch.equal(torch.rand(5), expected_stream)
    assert _same(first, build_model(spec, seed=11))
    other = build_model(spec, seed=12)
    # Every randomly drawn tensor differs (the default init's constant LayerNorm gains/shifts do not).
    random_pairs = [(p, q) for p, q in zip(first.parameters(), other.parameters()) if p.unique().numel() > 1]
    assert random_pairs and all(not torch.equal(p, q) for p, q in random_pairs)


def test_default_init_is_pytorchs_own_init_under_the_seed():
    spec = tiny_spec("vit")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        reference = BUILDERS["vit"](spec)
    assert _same(build_model(spec, seed=5), reference)


@pytest.mark.parametrize("init", DISTS, ids=[d["dist"] for d in DISTS])
@pytest.mark.parametrize("key", sorted(TINY_SPECS))
def test_weights_do_not_depend_on_the_global_default_dtype(key, init):
    spec = tiny_spec(key, init=init)
    reference = build_model(spec, seed=3)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = build_model(spec, seed=3)
        # The caller's default is left as it was.
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert {p.dtype for p in model.state_dict().values() if p.is_floating_point()} == {torch.float32}
    # The same construction in the same dtype: identical, not merely close.
    assert _same(model, reference)


@pytest.mark.parametrize("key", sorted(TINY_SPECS))
def test_model_is_in_eval_mode_on_the_requested_device(key):
    model = build_model(tiny_spec(key), seed=0, device="cpu")
    assert not any(m.training for m in model.modules())
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert _same(model, build_model(tiny_spec(key), seed=0, device=torch.device("cpu")))


def test_count_parameters_mlp_and_cnn_by_hand():
    mlp = parse_arch({"name": "mlp", "in_dim": 3, "hidden": [5, 5], "out_dim": 2, "layernorm": True, "residual": True})
    # Linear layers (3*5+5) + (5*5+5) + (5*2+2), two LayerNorms of width 5 with gain and shift.
    assert count_parameters(build_model(mlp, seed=0)) == 20 + 30 + 12 + 2 * 10
    no_bias = parse_arch({"name": "mlp", "in_dim": 3, "hidden": [5], "out_dim": 2, "bias": False})
    assert count_parameters(build_model(no_bias, seed=0)) == 15 + 10
    cnn = parse_arch(
        {"name": "cnn", "in_channels": 2, "image_size": 4, "channels": [3], "kernel_size": 3,
         "pool": "flatten", "out_dim": 2}
    )
    assert count_parameters(build_model(cnn, seed=0)) == (2 * 3 * 9 + 3) + (3 * 16 * 2 + 2)


def test_count_parameters_transformer_by_hand():
    spec = tiny_spec("transformer_tokens_cls")  # vocab 7, seq_len 5, dim 8, depth 1, mlp_ratio 2, out 2
    d, ff = 8, 16
    block = 2 * (2 * d) + 4 * (d * d + d) + (d * ff + ff) + (ff * d + d)
    expected = 7 * d + d + 6 * d + block + 2 * d + (d * 2 + 2)  # embed, cls, pos, block, norm, head
    assert count_parameters(build_model(spec, seed=0)) == expected


def test_count_parameters_counts_shared_tensors_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert count_parameters(model) == 20


def test_output_shape():
    assert output_shape(tiny_spec("mlp")) == (2,)
    assert output_shape(tiny_spec("cnn_circular")) == (3,)
    assert output_shape(tiny_spec("vit")) == (3,)
    assert output_shape(tiny_spec("transformer_tokens_cls")) == (2,)
    assert output_shape(tiny_spec("transformer_features_none")) == (4, 2)
