"""The converted graph as a torch module: same function as the exported model, differentiable
under the transforms the probes use, and members re-drawn by role."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from models.graph.describe import describe_graph
from models.graph.store import load_graph
from models.registry import build_model
from models.specs import OnnxSpec
from tests.models.graph.exports import HANDMADE, ZOO_ARCHS, export_named, handmade_model, sample_shape, zoo_model

NAMES = [*ZOO_ARCHS, *HANDMADE]


def _native(name: str):
    return handmade_model(name) if name in HANDMADE else zoo_model(name)


@pytest.mark.parametrize("name", NAMES)
def test_converted_graph_computes_the_exported_function(name, tmp_path):
    _, module = load_graph(export_named(name, tmp_path))
    x = torch.randn(5, *sample_shape(name), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # float32 evaluation of the same operations in another order: a few ulps of O(1) outputs.
        torch.testing.assert_close(module(x), _native(name)(x), rtol=1e-5, atol=1e-5)


def test_dynamo_exporter_output_loads_too(tmp_path):
    # torch.onnx.export's default exporter in torch 2.13; external_data=False keeps the weights
    # inside the file (the default writes them beside it, which uploads refuse).
    model, path = _native("resnet"), tmp_path / "resnet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), opset_version=17, dynamo=True,
                          external_data=False, verbose=False)
    _, module = load_graph(path)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-5, atol=1e-5)


def test_probes_transforms_run_on_the_graph(tmp_path):
    """vmap over stacked parameters, jvp along the input and double backward: what the invariance,
    simplicity and sharpness probes do to a model, compared with the native module."""
    from torch.func import functional_call, jvp, vmap

    _, module = load_graph(export_named("small_transformer", tmp_path))
    native = _native("small_transformer")
    x = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(2))
    params = {k: v.detach() for k, v in module.named_parameters()}
    stacked = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
    out = vmap(lambda p: functional_call(module, p, (x,)))(stacked)
    assert out.shape == (2, 4, 3)
    torch.testing.assert_close(out[0], native(x).detach(), rtol=1e-5, atol=1e-5)
    # (The native nn.TransformerEncoder cannot do this: its fused attention has no forward AD.)
    _, tangent = jvp(module, (x,), (torch.ones_like(x),))
    with torch.no_grad():
        # Central difference: error O(h^2) ~ 1e-6 plus float32 rounding eps/h ~ 1e-4 of O(1) outputs.
        h = 1e-2
        difference = (native(x + h) - native(x - h)) / (2 * h)
    torch.testing.assert_close(tangent, difference, rtol=1e-2, atol=2e-3)
    weights = list(module.parameters())
    grads = torch.autograd.grad(module(x).square().sum(), weights, create_graph=True)
    hvp = torch.autograd.grad(sum(g.sum() for g in grads), weights)
    assert all(torch.isfinite(h).all() for h in hvp)


def test_each_sample_is_evaluated_on_its_own(tmp_path):
    _, module = load_graph(export_named("resnet", tmp_path))
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(module(x)[2:3], module(x[2:3]))


def test_default_init_draws_by_role(tmp_path):
    spec, module = describe_graph(export_named("resnet", tmp_path))
    assert isinstance(spec, OnnxSpec) and spec.input.kind == "image" and spec.output_shape == [3]
    roles = {name: role.role for name, role in module.roles.items()}
    assert roles == {
        "stem.weight": "weight", "bn0.weight": "norm_gain", "bn0.bias": "norm_shift",
        "conv1.weight": "weight", "bn1.weight": "norm_gain", "bn1.bias": "norm_shift",
        "conv2.weight": "weight", "bn2.weight": "norm_gain", "bn2.bias": "norm_shift",
        "head.weight": "weight", "head.bias": "bias",
    }
    member = build_model(spec, seed=4)
    # Constants (BatchNorm running statistics) stay as uploaded; parameters are re-drawn.
    assert torch.equal(member.const.bn1.running_var, module.const.bn1.running_var)
    assert torch.equal(member.bn1.weight, torch.ones(4)) and torch.equal(member.bn1.bias, torch.zeros(4))
    # PyTorch's rule for a conv weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4 * 3 * 3.
    values = member.conv1.weight.detach().double().numpy().ravel()
    bound = 1 / np.sqrt(36)
    assert values.min() >= -bound and values.max() <= bound
    assert scipy.stats.kstest(values, scipy.stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
    again, other = build_model(spec, seed=4), build_model(spec, seed=5)
    assert torch.equal(again.conv1.weight, member.conv1.weight) and not torch.equal(other.conv1.weight, member.conv1.weight)


def test_normal_init_with_norms(tmp_path):
    spec, _ = describe_graph(export_named("resnet", tmp_path))
    member = build_model(spec.model_copy(update={"init": spec.init.model_copy(update={"dist": "normal", "scale": 2.0, "norms": True})}), seed=0)
    gains = member.bn0.weight.detach()
    assert not torch.equal(gains, torch.ones_like(gains))
    values = torch.cat([p.detach().flatten() for p in member.parameters()]).double().numpy()
    assert scipy.stats.kstest(values, scipy.stats.norm(0, 2.0).cdf).pvalue > 1e-3
