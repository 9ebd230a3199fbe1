import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy import stats
from torch import nn

from models.registry import build_model
from models.specs import parse_arch
from tests.workers.probes.functional.test_complexity import (
    lz76_kaspar_schuster,
    mean_frequency_reference,
    poly_order_reference,
)
from workers.data.dataset import Dataset
from models.errors import InputError
from workers.probes.base import ProbeContext
from workers.probes.functional.complexity import max_radius
from workers.probes.simplicity import MAX_VALUES_PER_NETWORK, Simplicity, member_seeds

MLP_2D = {"name": "mlp", "in_dim": 2, "hidden": [8, 8], "out_dim": 2, "activation": "tanh"}
CNN = {"name": "cnn", "in_channels": 1, "image_size": 4, "channels": [3], "out_dim": 2}
SMALL = {"grid_size": 16, "n_init_samples": 3}


def context(arch_dict, model=None, seed=0, uploaded=True, dataset=None, progress=None) -> ProbeContext:
    arch = parse_arch(arch_dict)
    extra = {} if progress is None else {"progress": progress}
    return ProbeContext(
        arch=arch,
        model=model if model is not None else build_model(arch, seed=seed),
        has_uploaded_weights=uploaded,
        make_member=lambda s: build_model(arch, seed=s),
        seed=seed,
        device=torch.device("cpu"),
        dataset=dataset,
        **extra,
    )


def run(arch_dict=MLP_2D, model=None, seed=0, dataset=None, **params):
    return Simplicity(Simplicity.Params(**{**SMALL, **params})).run(context(arch_dict, model, seed, dataset=dataset))


class CosineField(nn.Module):
    """cos(2 pi k i / G) along the box's first axis: i is the grid index of x_1 on [-2, 2] (no dataset)."""

    def __init__(self, k: int, size: int):
        super().__init__()
        self.k, self.size = k, size

    def forward(self, x):
        index = (x[:, :1] + 2.0) * (self.size - 1) / 4.0
        return torch.cos(2 * math.pi * self.k * index / self.size).expand(-1, 2)


class Constant(nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 2), 3.0)


class PixelSum(nn.Module):
    """A linear function of the image: on every plane it is a ramp."""

    def forward(self, x):
        total = x.flatten(1).sum(dim=1, keepdim=True)
        return torch.cat([total, -2.0 * total + 1.0], dim=1)


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("k", [1, 3])
def test_cosine_field_scores_k_over_r_max(k):
    result = run(model=CosineField(k, 32), grid_size=32, window="none", n_init_samples=0)
    assert result.grid.kind == "box" and result.grid.through == "origin"
    assert result.model.mean_frequency == pytest.approx(k / max_radius(32, 2), abs=1e-5)
    for channel in result.model.per_channel:
        assert channel.mean_frequency == pytest.approx(k / max_radius(32, 2), abs=1e-5)


def test_linear_model_matches_numpy_reference_on_the_box():
    arch = {"name": "mlp", "in_dim": 2, "hidden": [], "out_dim": 2}
    model = build_model(parse_arch(arch), seed=0)
    result = run(arch, model=model, n_init_samples=0, grid_size=16)
    s = np.linspace(-2, 2, 16)
    xx, yy = np.meshgrid(s, s, indexing="ij")  # first grid axis = first input coordinate
    weight, bias = model.layers[0].weight.double().detach().numpy(), model.layers[0].bias.double().detach().numpy()
    for c, channel in enumerate(result.model.per_channel):
        f = weight[c, 0] * xx + weight[c, 1] * yy + bias[c]
        assert channel.poly_order == pytest.approx(1.0, abs=1e-6)
        assert channel.poly_order == pytest.approx(poly_order_reference(f, 8), abs=1e-6)
        assert channel.mean_frequency == pytest.approx(mean_frequency_reference(f, "hann"), rel=1e-4)
        bits = (f.ravel() > np.sort(f.ravel())[f.size // 2 - 1]).astype(int)
        assert channel.lz_complexity == pytest.approx(lz76_kaspar_schuster(bits) * 8 / 256)


def test_linear_function_of_images_is_a_ramp_on_every_plane():
    result = run(CNN, model=PixelSum(), n_init_samples=0, n_planes=3)
    assert (result.grid.kind, result.grid.planes, result.grid.through) == ("planes", 3, "standard_normal_points")
    for channel in result.model.per_channel:
        assert channel.poly_order == pytest.approx(1.0, abs=1e-6)
        assert channel.mean_frequency < 0.15  # a windowed ramp at G = 16 (calibration: 0.136)


def test_constant_model_scores_zero():
    result = run(model=Constant(), n_init_samples=0)
    assert result.model.mean_frequency == 0.0 and result.model.poly_order == 0.0
    assert result.model.lz_complexity == pytest.approx(2 * 8 / 256)


# ----------------------------------------------------------------------------- the ensemble


def test_vmapped_members_match_members_evaluated_one_by_one():
    result = run(n_init_samples=3)
    assert result.init.seeds == member_seeds(0, 3)
    for i, seed in enumerate(result.init.seeds):
        alone = run(model=build_model(parse_arch(MLP_2D), seed=seed), n_init_samples=0)
        assert result.init.mean_frequency.values[i] == pytest.approx(alone.model.mean_frequency, rel=1e-5)
        assert result.init.poly_order.values[i] == pytest.approx(alone.model.poly_order, rel=1e-5)
        assert result.init.lz_complexity.values[i] == pytest.approx(alone.model.lz_complexity, abs=0.02)


def test_members_in_several_batches_match_one_batch(monkeypatch):
    whole = run(n_init_samples=4)
    monkeypatch.setattr("workers.probes.simplicity.MAX_VALUES_PER_NETWORK", 2 * 256 * 3)  # 3 members per batch
    batched = run(n_init_samples=4)
    assert batched.init == whole.init


def test_interval_and_percentile_follow_the_documented_rules():
    few = run(n_init_samples=5)
    spread = few.init.poly_order
    values = np.array(spread.values)
    half = stats.t.ppf(0.975, 4) * values.std(ddof=1) * math.sqrt(1 + 1 / 5)
    assert spread.interval == "t_prediction"
    assert (spread.low, spread.high) == pytest.approx((values.mean() - half, values.mean() + half))
    assert spread.model_percentile == pytest.approx(stats.percentileofscore(values, few.model.poly_order, kind="mean"))

    many = run(n_init_samples=20, max_degree=4)
    spread = many.init.mean_frequency
    assert spread.interval == "percentile" and spread.n == 20
    assert (spread.low, spread.high) == pytest.approx(tuple(np.percentile(spread.values, [2.5, 97.5])))


def test_model_that_is_a_member_sits_inside_the_distribution():
    seed = member_seeds(0, 4)[0]
    result = run(model=build_model(parse_arch(MLP_2D), seed=seed), n_init_samples=4)
    assert result.model.poly_order == pytest.approx(result.init.poly_order.values[0], rel=1e-5)
    assert 0 < result.init.poly_order.model_percentile < 100


# ----------------------------------------------------------------------------- inputs, layouts, contract


def test_planes_go_through_test_points_of_the_dataset():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(30, 1, 4, 4, generator=generator)
    dataset = Dataset("imgs", x[:0], torch.zeros(0, dtype=torch.long), x, torch.zeros(30, dtype=torch.long),
                      "classification", n_classes=2)  # fmt: skip
    result = run(CNN, dataset=dataset)
    assert result.grid.through == "test_points" and result.grid.planes == 4
    bad = Dataset("flat", x[:0].flatten(1), torch.zeros(0), torch.randn(5, 7), torch.zeros(5), "regression")
    with pytest.raises(InputError) as info:
        run(CNN, dataset=bad)
    assert info.value.errors[0]["loc"] == ["task", "dataset"]


def test_one_dimensional_inputs_use_a_line_and_a_1d_spectrum():
    arch = {"name": "mlp", "in_dim": 1, "hidden": [8], "out_dim": 1, "activation": "sin"}
    result = run(arch)
    assert (result.grid.kind, result.grid.dims, result.grid.planes) == ("line", 1, 1)
    cos = {c.signal: c for c in result.calibration}["cos_4"]
    assert cos.mean_frequency_no_window == pytest.approx(4 / 8)


def test_sequence_features_are_gridded_in_the_flattened_input():
    arch = {"name": "transformer", "input": {"type": "features", "dim": 2}, "seq_len": 3, "dim": 4, "depth": 1,
            "heads": 2, "pool": "none", "out_dim": 2}  # fmt: skip
    result = run(arch, n_init_samples=2)
    assert result.grid.kind == "planes" and len(result.model.per_channel) == 6  # seq_len x out_dim
    assert result.init.n_members == 2


def test_token_inputs_are_refused():
    arch = {"name": "transformer", "input": {"type": "tokens", "vocab_size": 5}, "seq_len": 3, "dim": 4,
            "depth": 1, "heads": 2, "out_dim": 2}  # fmt: skip
    with pytest.raises(InputError) as info:
        Simplicity().check_inputs(parse_arch(arch), None)
    assert info.value.errors[0]["loc"] == ["probes", "simplicity"]
    assert "token" in info.value.errors[0]["msg"]
    with pytest.raises(InputError):
        run(arch)


def test_workload_limits_name_the_field_to_change():
    wide = parse_arch({"name": "mlp", "in_dim": 3, "hidden": [], "out_dim": 2000})
    with pytest.raises(InputError) as info:
        Simplicity().check_inputs(wide, None)
    assert info.value.errors[0]["loc"] == ["probes", "simplicity", "grid_size"]
    assert f"{MAX_VALUES_PER_NETWORK:,}" in info.value.errors[0]["msg"]
    Simplicity(Simplicity.Params(grid_size=32, n_init_samples=0)).check_inputs(wide, None)  # 2000 x 1024 fits

    many = parse_arch({"name": "mlp", "in_dim": 3, "hidden": [], "out_dim": 100})
    with pytest.raises(InputError) as info:
        Simplicity(Simplicity.Params(n_init_samples=256)).check_inputs(many, None)
    assert info.value.errors[0]["loc"] == ["probes", "simplicity", "n_init_samples"]


@pytest.mark.parametrize(
    "params, field",
    [({"grid_size": 8}, "grid_size"), ({"grid_size": 512}, "grid_size"), ({"n_planes": 0}, "n_planes"),
     ({"n_planes": 33}, "n_planes"), ({"n_init_samples": 257}, "n_init_samples"), ({"window": "hamming"}, "window"),
     ({"grid_size": 16, "max_degree": 9}, "max_degree"), ({"grid_siz": 16}, "grid_siz")],
)  # fmt: skip
def test_params_out_of_bounds_are_rejected(params, field):
    with pytest.raises(ValidationError) as info:
        Simplicity.Params(**params)
    error = InputError.from_validation(info.value, prefix=["probes", "simplicity"])
    assert error.errors[0]["loc"] == ["probes", "simplicity", field]


def test_deterministic_per_seed():
    first = run(seed=3).model_dump()
    assert run(seed=3).model_dump() == first
    assert run(seed=4).model_dump() != first


def test_leaves_the_model_untouched():
    arch = parse_arch(MLP_2D)
    model = build_model(arch, seed=0)
    model.train()
    model.layers[1].eval()
    model.layers[0].weight.requires_grad_(False)
    hook = model.register_forward_hook(lambda *args: None)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    Simplicity(Simplicity.Params(**SMALL)).run(context(MLP_2D, model))
    assert model.training and not model.layers[1].training and model.layers[2].training
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * (len(list(model.parameters())) - 1)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert list(model._forward_hooks) == [hook.id]


def test_report_contract_metrics_and_progress():
    seen = []
    result = Simplicity(Simplicity.Params(**SMALL)).run(
        context(MLP_2D, progress=lambda fraction, message: seen.append(fraction))
    )
    dumped = result.model_dump(mode="json")
    assert set(dumped) == {"model", "init", "calibration", "grid"}
    for block in ("model", "init"):
        assert {"mean_frequency", "poly_order", "lz_complexity"} <= set(dumped[block])
    assert dumped["grid"]["size"] == 16 and dumped["grid"]["window"] == "hann"
    assert Simplicity.Result.model_validate(dumped) == result
    calibration = {c["signal"]: c for c in dumped["calibration"]}
    assert calibration["ramp"]["mean_frequency"] < calibration["ramp"]["mean_frequency_no_window"]
    assert calibration["white_noise"]["lz_complexity"] > 0.8 > calibration["cos_1"]["lz_complexity"]
    metrics = {metric.key: metric for metric in Simplicity.metrics(result)}
    assert metrics["simplicity.poly_order"].value == dumped["model"]["poly_order"]
    assert metrics["simplicity.poly_order"].ci95 is None
    init = dumped["init"]["poly_order"]
    assert metrics["simplicity.init.poly_order"].value == init["mean"]
    assert metrics["simplicity.init.poly_order"].ci95 == (init["low"], init["high"])
    percentile = metrics["simplicity.mean_frequency_percentile"]
    assert percentile.value == dumped["init"]["mean_frequency"]["model_percentile"] and 0 <= percentile.value <= 100
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_large_test_sets_are_subsampled_deterministically(monkeypatch):
    x = torch.randn(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    dataset = Dataset("imgs", x[:0], torch.zeros(0, dtype=torch.long), x, torch.zeros(40, dtype=torch.long),
                      "classification", n_classes=2)  # fmt: skip
    full = run(CNN, dataset=dataset, n_init_samples=0)
    monkeypatch.setattr("workers.probes.simplicity.MAX_REFERENCE_INPUTS", 10)
    subset = run(CNN, dataset=dataset, n_init_samples=0)
    assert subset.grid.through == "test_points"
    assert subset.grid.half_widths != full.grid.half_widths
    assert run(CNN, dataset=dataset, n_init_samples=0) == subset


@pytest.mark.parametrize("activation", ["tanh", "gaussian"])
def test_layernorm_mlp_is_scale_flat_through_the_run_spec(activation):
    """Neural Redshift: with a LayerNorm after every hidden layer, the function's complexity does
    not depend on the weight scale. Through the public spec, with norm gains 1 and shifts 0 (the
    default), mean frequency is the same at scale 0.5 and 8: each hidden pre-activation is
    normalised, so scaling the weights changes nothing but the output's (frequency-free) scale.
    Drawing the gains and shifts too (``init.norms``) breaks that, and complexity grows with scale
    (measured: tanh 0.036 -> 0.29, gaussian 0.048 -> 0.51)."""
    from workers.runner import execute_run
    from workers.runspec import RunSpec

    def mean_frequency(scale: float, norms: bool) -> float:
        arch = {"name": "mlp", "in_dim": 2, "hidden": [64, 64, 64], "out_dim": 1, "activation": activation,
                "layernorm": True, "init": {"dist": "normal", "scale": scale, "norms": norms}}
        spec = RunSpec.model_validate(
            {"model": {"arch": arch}, "probes": {"simplicity": {"grid_size": 32, "n_init_samples": 0}}, "seed": 0}
        )
        report = execute_run(spec, weights_path=None, dataset=None)
        return next(m.value for m in report.metrics if m.key == "simplicity.mean_frequency")

    # Equal up to float32 rounding (LayerNorm's epsilon is the only scale-dependent term).
    assert mean_frequency(8.0, False) == pytest.approx(mean_frequency(0.5, False), rel=1e-3)
    assert mean_frequency(8.0, True) > 3 * mean_frequency(0.5, True)
