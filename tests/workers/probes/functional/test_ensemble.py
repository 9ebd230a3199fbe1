"""Stacked ensembles: members equal ``build_model`` one by one, and the batched forward equals each
member's own forward."""

from __future__ import annotations

import pytest
import torch

from models.registry import build_model
from models.specs import parse_arch
from workers.probes.functional.ensemble import (
    build_members,
    data_order_seed,
    ensemble_forward,
    ensemble_forward_each,
    hypothesis_seed,
    unstack_member,
)

ARCHS = {
    "mlp": {"name": "mlp", "in_dim": 5, "hidden": [7, 6], "out_dim": 3},
    "mlp_ln_residual_tanh": {
        "name": "mlp", "in_dim": 5, "hidden": [6, 6, 6], "out_dim": 2, "activation": "tanh",
        "layernorm": True, "residual": True, "init": {"dist": "normal", "scale": 0.7},
    },
    "mlp_linear_no_bias": {"name": "mlp", "in_dim": 5, "hidden": [], "out_dim": 4, "bias": False},
    "cnn": {"name": "cnn", "in_channels": 2, "image_size": 4, "channels": [3, 2], "out_dim": 3},
    "transformer": {
        "name": "transformer", "input": {"type": "features", "dim": 3}, "seq_len": 4, "dim": 4, "depth": 1,
        "heads": 2, "out_dim": 2,
    },
}
INPUT_SHAPES = {"mlp": (5,), "mlp_ln_residual_tanh": (5,), "mlp_linear_no_bias": (5,), "cnn": (2, 4, 4), "transformer": (4, 3)}


def test_hypothesis_seeds_depend_only_on_seed_and_index():
    seeds = [hypothesis_seed(3, i) for i in range(200)]
    assert seeds == [hypothesis_seed(3, i) for i in range(200)]
    assert len(set(seeds)) == 200
    assert seeds[:5] != [hypothesis_seed(4, i) for i in range(5)]
    assert all(0 <= s < 2**63 for s in seeds)
    # The data-order stream is a different seed from the init stream.
    assert all(data_order_seed(s) != s for s in seeds)
    with pytest.raises(ValueError):
        hypothesis_seed(-1, 0)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_members_equal_build_model_per_seed(name):
    arch = parse_arch(ARCHS[name])
    seeds = [11, 5, 11]
    ensemble = build_members(arch, seeds)
    assert ensemble.size == 3
    for j, seed in enumerate(seeds):
        reference = build_model(arch, seed).state_dict()
        assert set(reference) == set(ensemble.params) | set(ensemble.buffers)
        unstacked = unstack_member(ensemble, j).state_dict()
        for key, value in ensemble.params.items():
            assert torch.equal(value[j], reference[key])
            assert torch.equal(unstacked[key], reference[key])
            assert value.requires_grad
    # Same seed, same member.
    assert all(torch.equal(v[0], v[2]) for v in ensemble.params.values())


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_forward_equals_each_member_alone(name):
    arch = parse_arch(ARCHS[name])
    seeds = [1, 2, 3, 4]
    ensemble = build_members(arch, seeds)
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(6, *INPUT_SHAPES[name], generator=generator)
    X_each = torch.randn(4, 5, *INPUT_SHAPES[name], generator=generator)
    with torch.no_grad():
        shared = ensemble_forward(ensemble, X)
        each = ensemble_forward_each(ensemble, X_each)
        for j, seed in enumerate(seeds):
            model = build_model(arch, seed)
            torch.testing.assert_close(shared[j], model(X), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(each[j], model(X_each[j]), rtol=1e-5, atol=1e-6)


def test_forward_each_checks_member_count():
    ensemble = build_members(parse_arch(ARCHS["mlp"]), [0, 1])
    with pytest.raises(ValueError, match="3 batches for 2 members"):
        ensemble_forward_each(ensemble, torch.zeros(3, 2, 5))


def test_gradients_flow_to_each_member_separately():
    # Member j's gradient of the summed loss is the gradient of its own loss, nothing else.
    arch = parse_arch(ARCHS["mlp_ln_residual_tanh"])
    ensemble = build_members(arch, [7, 8])
    X_each = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1))
    ensemble_forward_each(ensemble, X_each).pow(2).sum().backward()
    for j, seed in enumerate([7, 8]):
        model = build_model(arch, seed)
        model(X_each[j]).pow(2).sum().backward()
        for key, param in model.named_parameters():
            # Batched and single float32 backward passes sum in different orders (and split work by
            # thread count), so a small entry carries rounding of the order of the tensor's largest
            # ones: measured up to 1.3e-6 of max|grad| with 2 threads, against float64. 1e-5 of
            # max|grad| (~80 float32 ulps) bounds that; a gradient leaking between members would be
            # of the order of max|grad| itself.
            scale = float(param.grad.abs().max())
            torch.testing.assert_close(ensemble.params[key].grad[j], param.grad, rtol=1e-5, atol=1e-5 * scale)
