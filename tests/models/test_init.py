"""apply_init: empirical moments and distributions against the analytic ones, on every kind of
parameter (weights, biases, LayerNorm gains/shifts with ``norms=true``, embeddings, positional
embeddings, cls); norm gains 1 and shifts 0 by default; per-name draws."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from models.init import apply_init
from models.specs import InitSpec
from models.zoo import transformer
from tests.models.tiny_specs import tiny_spec

# About 12k parameters of every kind the zoo has.
SPEC = tiny_spec(
    "transformer_tokens_cls", dim=32, depth=1, heads=4, seq_len=16, input={"type": "tokens", "vocab_size": 100}
)


def _fresh_model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformer.build(SPEC)


def _initialised(dist: str, scale: float, seed: int = 0):
    model = _fresh_model()
    apply_init(model, InitSpec(dist=dist, scale=scale, norms=True), torch.Generator().manual_seed(seed))
    return model


def _all_values(model) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).double().numpy()


@pytest.mark.parametrize("scale", [0.05, 1.0, 3.0])
def test_normal_init_matches_gaussian_moments(scale):
    values = _all_values(_initialised("normal", scale))
    n = values.size
    assert n > 10_000
    # Mean within 5 standard errors of 0, variance within 5 standard errors of scale^2
    # (var of the sample variance of a Gaussian is 2 sigma^4 / n), fourth moment 3 sigma^4.
    assert abs(values.mean()) < 5 * scale / np.sqrt(n)
    assert abs(values.var() / scale**2 - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(values**4) / scale**4 - 3) < 5 * np.sqrt(96 / n)
    assert scipy.stats.kstest(values, scipy.stats.norm(0, scale).cdf).pvalue > 1e-3


@pytest.mark.parametrize("scale", [0.1, 2.0])
def test_uniform_init_matches_uniform_moments(scale):
    values = _all_values(_initialised("uniform", scale))
    n = values.size
    assert values.min() >= -scale and values.max() <= scale
    # U(-s, s): variance s^2/3 (sd of the sample variance ~ sqrt(4/45/n) s^2), fourth moment s^4/5.
    assert abs(values.mean()) < 5 * scale / np.sqrt(3 * n)
    assert abs(values.var() - scale**2 / 3) < 5 * np.sqrt(4 / 45 / n) * scale**2
    assert abs(np.mean(values**4) - scale**4 / 5) < 5 * scale**4 * np.sqrt(1 / 9 - 1 / 25) / np.sqrt(n)
    assert scipy.stats.kstest(values, scipy.stats.uniform(-scale, 2 * scale).cdf).pvalue > 1e-3


def test_every_parameter_kind_is_redrawn():
    # Default init leaves LayerNorm gains at 1 and biases at 0; after normal(0, 1) each tensor
    # on its own must look like N(0, 1): sum(x)/sqrt(n) ~ N(0, 1) and sum(x^2) ~ chi2(n), tested
    # two-sided, which works for tensors of any size (head.bias has two entries).
    default, model = _fresh_model(), _initialised("normal", 1.0)
    names = {name for name, _ in model.named_parameters()}
    assert {"cls_token", "pos_embed", "embed.weight", "norm.weight", "norm.bias", "blocks.0.attn.q.bias"} <= names
    for (name, p), (_, p0) in zip(model.named_parameters(), default.named_parameters()):
        values = p.detach().double().numpy().ravel()
        assert not torch.equal(p, p0), name
        assert abs(values.sum() / np.sqrt(values.size)) < 4.5, name
        assert 1e-4 < scipy.stats.chi2.cdf(np.sum(values**2), df=values.size) < 1 - 1e-4, name
    assert abs(model.norm.weight.mean().item()) < 0.7  # was exactly 1 under the default init


def test_default_leaves_pytorch_init_and_generator_untouched():
    model, reference = _fresh_model(), _fresh_model()
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    apply_init(model, InitSpec(dist="default", scale=5.0), generator)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert torch.equal(generator.get_state(), state)


def test_init_is_a_function_of_the_generator_only():
    global_state = torch.get_rng_state()
    a, b, c = (_initialised("normal", 1.0, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), global_state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not any(torch.equal(x, z) for x, z in zip(a.parameters(), c.parameters()))


def test_low_and_double_precision_models():
    # Values are drawn in float32 (float64 for float64 models) and rounded once, so a bf16 model
    # holds the rounded float32 draw and a float64 model has genuine float64 draws.
    half = _fresh_model().to(torch.bfloat16)
    single = _fresh_model()
    apply_init(half, InitSpec(dist="normal", scale=1.0), torch.Generator().manual_seed(1))
    apply_init(single, InitSpec(dist="normal", scale=1.0), torch.Generator().manual_seed(1))
    assert all(torch.equal(h, s.to(torch.bfloat16)) for h, s in zip(half.parameters(), single.parameters()))
    double = _fresh_model().double()
    apply_init(double, InitSpec(dist="uniform", scale=1.0), torch.Generator().manual_seed(1))
    values = _all_values(double)
    assert not np.array_equal(values, values.astype(np.float32).astype(np.float64))


def test_norm_gains_and_shifts_stay_one_and_zero_unless_norms():
    model = _fresh_model()
    apply_init(model, InitSpec(dist="normal", scale=3.0), torch.Generator().manual_seed(0))
    norm_names = [n for n, _ in model.named_parameters() if "norm" in n]
    assert len(norm_names) == 6  # norm1, norm2 of the block and the final norm: weight and bias each
    for name, p in model.named_parameters():
        if "norm" in name:
            assert torch.equal(p, torch.full_like(p, 1.0 if name.endswith("weight") else 0.0)), name
        else:
            assert p.abs().max() > 0.5, name  # drawn from N(0, 9)


def test_a_parameter_depends_on_its_name_and_the_member_only():
    # Renaming nothing but visiting another model with a subset of the names gives the same draws
    # for the shared names: what makes a zoo model and its ONNX export the same member.
    from torch import nn

    full = nn.ModuleDict({"a": nn.Linear(3, 4), "b": nn.Linear(4, 2)})
    part = nn.ModuleDict({"b": nn.Linear(4, 2)})
    for model in (full, part):
        apply_init(model, InitSpec(dist="uniform", scale=1.0), torch.Generator().manual_seed(9))
    assert torch.equal(full["b"].weight, part["b"].weight) and torch.equal(full["b"].bias, part["b"].bias)
