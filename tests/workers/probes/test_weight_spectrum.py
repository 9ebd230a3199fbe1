import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy import stats
from torch import nn

from models.specs import MLPSpec
from tests.workers.probes.functional._reference import eigenvalues_numpy, fit_loop, fit_wwfit, metrics_reference
from models.errors import InputError
from workers.probes.base import ProbeContext
from workers.probes.functional.spectrum import METRIC_NAMES, WW_FIT_THRESHOLD
from workers.probes.registry import PROBES
from workers.probes.weight_spectrum import WeightSpectrum, init_member_seeds

ARCH = MLPSpec(name="mlp", in_dim=24, hidden=[24], out_dim=3)


class TinyNet(nn.Module):
    """One of each analysable layer type, attention projections as plain Linear, and a LayerNorm."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 24)
        self.q, self.k, self.v, self.out = (nn.Linear(24, 24) for _ in range(4))
        self.conv = nn.Conv2d(3, 12, 3)
        self.conv1d = nn.Conv1d(4, 16, 5)
        self.norm = nn.LayerNorm(24)
        self.head = nn.Linear(24, 3)  # 3 eigenvalues: norm metrics only


def seeded(build, seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def context(model, build=TinyNet, seed=0, uploaded=False, progress=None) -> ProbeContext:
    extra = {} if progress is None else {"progress": progress}
    return ProbeContext(
        arch=ARCH,
        model=model,
        has_uploaded_weights=uploaded,
        make_member=lambda s: seeded(build, s),
        seed=seed,
        device=torch.device("cpu"),
        **extra,
    )


def run(model, build=TinyNet, seed=0, **params):
    return WeightSpectrum(WeightSpectrum.Params(**params)).run(context(model, build, seed))


def reference_eigenvalues(weight: torch.Tensor) -> np.ndarray:
    w = weight.detach().double().numpy()
    if w.ndim == 2:
        return eigenvalues_numpy(w)
    slices = w.reshape(w.shape[0], w.shape[1], -1)
    return np.sort(np.concatenate([eigenvalues_numpy(slices[:, :, i]) for i in range(slices.shape[2])]))


def test_every_layer_matches_the_numpy_reference():
    model = seeded(TinyNet, 0)
    result = run(model, n_init_samples=0)
    expected = [("embed", "embedding"), ("q", "linear"), ("k", "linear"), ("v", "linear"), ("out", "linear"),
                ("conv", "conv2d"), ("conv1d", "conv1d"), ("head", "linear")]  # fmt: skip
    assert [(layer.name, layer.type) for layer in result.layers] == expected
    modules = dict(model.named_modules())
    for layer in result.layers:
        weight = modules[layer.name].weight
        assert layer.shape == list(weight.shape)
        lam = reference_eigenvalues(weight)
        assert layer.n_eigs == lam.size
        fit = fit_loop(lam, min_tail=10) if lam.size >= 20 else None
        for key, value in metrics_reference(lam, fit).items():
            assert getattr(layer, key) == pytest.approx(value, rel=1e-9, abs=1e-12), (layer.name, key)
    head = result.layers[-1]
    assert head.alpha is None and "2 * min_tail = 20" in head.skipped_reason and head.stable_rank is not None
    assert result.convention == "priorprobe" and result.conv_mode == "slices" and result.svd_dtype == "float64"


def test_summary_is_the_mean_over_layers_where_defined():
    result = run(seeded(TinyNet, 1), n_init_samples=0)
    for metric in METRIC_NAMES:
        values = [getattr(layer, metric) for layer in result.layers if getattr(layer, metric) is not None]
        assert getattr(result.summary, metric) == pytest.approx(np.mean(values))
    assert result.summary.n_layers == 8
    assert result.summary.n_layers_analysed == 8
    assert result.summary.n_layers_with_alpha == 7
    assert result.init is None


def test_result_is_strict_json_and_validates():
    result = run(seeded(TinyNet, 0), n_init_samples=2)
    payload = json.dumps(result.model_dump(mode="json"), allow_nan=False)
    assert WeightSpectrum.Result.model_validate_json(payload) == result
    with pytest.raises(ValidationError):
        WeightSpectrum.Result.model_validate({**result.model_dump(), "summary": {**result.summary.model_dump(), "alpha": float("nan")}})


def test_model_is_left_untouched():
    model = seeded(TinyNet, 0)
    model.eval()
    model.q.weight.requires_grad_(False)
    model.conv.weight.data = model.conv.weight.data.to(torch.float64)  # a dtype the SVD uses as is
    calls = []
    model.head.register_forward_hook(lambda *args: calls.append(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pointers = {k: v.data_ptr() for k, v in model.state_dict().items()}
    flags = [(m.training, len(m._forward_hooks)) for m in model.modules()]
    requires = [p.requires_grad for p in model.parameters()]

    run(model, n_init_samples=2)
    run(model, n_init_samples=0, convention="weightwatcher")

    after = model.state_dict()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in state.items())
    assert {k: v.data_ptr() for k, v in after.items()} == pointers
    assert [(m.training, len(m._forward_hooks)) for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == requires
    assert all(p.grad is None for p in model.parameters())
    assert calls == []


def test_deterministic_per_seed():
    model = seeded(TinyNet, 0)
    first = run(model, seed=5, n_init_samples=3).model_dump()
    assert run(model, seed=5, n_init_samples=3).model_dump() == first
    other = run(model, seed=6, n_init_samples=3).model_dump()
    assert other["layers"] == first["layers"]
    assert other["init"]["seeds"] != first["init"]["seeds"]
    assert other["init"]["metrics"]["log_norm"]["values"] != first["init"]["metrics"]["log_norm"]["values"]
    assert first["init"]["seeds"] == init_member_seeds(5, 3)
    assert 5 not in first["init"]["seeds"]


def test_weights_flag_follows_the_context():
    model = seeded(TinyNet, 0)
    uploaded = WeightSpectrum(WeightSpectrum.Params(n_init_samples=0)).run(context(model, uploaded=True))
    assert uploaded.weights == "uploaded"
    assert run(model, n_init_samples=0).weights == "random_init"


def gaussian_layer() -> nn.Module:
    # A 400 x 200 weight with N(0, 1) entries drawn from the (forked) global generator.
    layer = nn.Linear(200, 400, bias=False)
    with torch.no_grad():
        layer.weight.normal_()
    return layer


def test_init_block_shows_how_far_trained_weights_are_from_random_init():
    # "Trained" stand-in: heavy-tailed weights with a strong low-rank component.
    rng = np.random.default_rng(0)
    w = rng.standard_t(1.5, (400, 200)) + 30.0 * np.outer(rng.standard_normal(400), rng.standard_normal(200)) / 20
    trained = nn.Linear(200, 400, bias=False)
    trained.weight.data = torch.from_numpy(w).float()
    result = run(trained, build=gaussian_layer, seed=1, n_init_samples=4)

    init = result.init
    assert init.n_members == 4 and len(init.seeds) == 4
    stable = init.metrics["stable_rank"]
    # Random members follow Marchenko-Pastur: stable rank near M / (1 + sqrt(M/N))^2 = 68.6 (10%).
    assert stable.mean == pytest.approx(200 / (1 + np.sqrt(0.5)) ** 2, rel=0.10)
    assert stable.interval == "t_prediction" and stable.n == 4 and len(stable.values) == 4
    half = (stable.high - stable.low) / 2
    sd = np.std(stable.values, ddof=1)
    assert half == pytest.approx(stats.t.ppf(0.975, 3) * sd * np.sqrt(1.25))
    assert result.summary.stable_rank < stable.low
    # A Gaussian ESD has no power-law tail, so its fitted alpha is large and erratic (3.7-16 here);
    # the heavy-tailed weights sit well below every member.
    assert min(init.metrics["alpha"].values) > 3.0
    assert result.summary.alpha < 2.0


def test_percentile_interval_with_many_members_and_none_with_one():
    small = lambda: nn.Linear(40, 30)  # noqa: E731
    many = run(small(), build=small, n_init_samples=20).init.metrics["log_norm"]
    assert many.interval == "percentile"
    assert (many.low, many.high) == pytest.approx(tuple(np.percentile(many.values, [2.5, 97.5])))
    one = run(small(), build=small, n_init_samples=1).init.metrics["log_norm"]
    assert one.interval == "none" and one.low is None and one.high is None and one.mean == one.values[0]


def test_progress_goes_from_zero_to_one():
    reports = []
    probe = WeightSpectrum(WeightSpectrum.Params(n_init_samples=3))
    probe.run(context(seeded(TinyNet, 0), progress=lambda f, msg: reports.append((f, msg))))
    fractions = [f for f, _ in reports]
    assert fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)
    assert fractions == sorted(fractions) and len(reports) == 5
    assert all(isinstance(msg, str) and msg for _, msg in reports)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3)
        self.small = nn.Linear(100, 5)
        self.fc = nn.Linear(64, 32)


def test_weightwatcher_convention_scales_conv2d_and_applies_size_limits():
    model = seeded(ConvNet, 0)
    ours = {layer.name: layer for layer in run(model, build=ConvNet, n_init_samples=0).layers}
    ww = {layer.name: layer for layer in run(model, build=ConvNet, n_init_samples=0, convention="weightwatcher").layers}

    assert ww["conv"].log_norm == pytest.approx(ours["conv"].log_norm - np.log10(2.0))
    assert ww["conv"].stable_rank == pytest.approx(ours["conv"].stable_rank)
    lam = reference_eigenvalues(model.conv.weight) * 0.5
    reference = metrics_reference(lam, fit_wwfit(lam[lam > WW_FIT_THRESHOLD]))
    for key, value in reference.items():
        assert getattr(ww["conv"], key) == pytest.approx(value, rel=1e-9), key

    assert ww["fc"].log_norm == pytest.approx(ours["fc"].log_norm)  # Linear layers are not scaled
    assert ww["small"].log_norm is None and "min_evals = 10" in ww["small"].skipped_reason
    assert ours["small"].log_norm is not None


def test_conv_reshape_mode():
    model = seeded(ConvNet, 0)
    conv = run(model, build=ConvNet, n_init_samples=0, conv_mode="reshape").layers[0]
    assert conv.n_eigs == min(16, 8 * 9)
    lam = eigenvalues_numpy(model.conv.weight.detach().double().reshape(16, -1).numpy())
    assert conv.log_norm == pytest.approx(np.log10(lam.sum()))


def test_non_finite_weights_and_models_without_layers():
    model = seeded(ConvNet, 0)
    model.fc.weight.data[0, 0] = float("nan")
    fc = {layer.name: layer for layer in run(model, build=ConvNet, n_init_samples=0).layers}["fc"]
    assert fc.log_norm is None and "NaN" in fc.skipped_reason

    # +inf and -inf together (their sum is NaN), and a float64 layer (whose sum could overflow).
    for dtype, values in ((torch.float32, (float("inf"), float("-inf"))), (torch.float64, (float("inf"),))):
        model = seeded(ConvNet, 0).to(dtype)
        for k, value in enumerate(values):
            model.fc.weight.data[0, k] = value
        fc = {layer.name: layer for layer in run(model, build=ConvNet, n_init_samples=0).layers}["fc"]
        assert fc.log_norm is None and "NaN or inf" in fc.skipped_reason

    empty = run(nn.Sequential(nn.ReLU()), build=lambda: nn.Sequential(nn.ReLU()), n_init_samples=2)
    assert empty.layers == [] and empty.summary.n_layers == 0 and empty.summary.alpha is None
    assert empty.svd_dtype is None and empty.init.metrics["alpha"].n == 0


def test_params_defaults_bounds_and_convention_checks():
    params = WeightSpectrum.Params()
    assert (params.convention, params.conv_mode, params.min_tail, params.n_init_samples) == ("priorprobe", "slices", 10, 8)
    for bad in ({"min_tail": 4}, {"n_init_samples": 65}, {"n_init_samples": -1}, {"convention": "ww"}, {"typo": 1}):
        with pytest.raises(ValidationError):
            WeightSpectrum.Params(**bad)
    WeightSpectrum.Params(convention="weightwatcher", conv_mode="slices")
    for bad, field in (({"conv_mode": "reshape"}, "conv_mode"), ({"min_tail": 10}, "min_tail")):
        with pytest.raises(ValidationError) as exc:
            WeightSpectrum.Params(convention="weightwatcher", **bad)
        error = InputError.from_validation(exc.value, prefix=["probes", "weight_spectrum"])
        assert error.errors[0]["loc"] == ["probes", "weight_spectrum", field]
        assert "weightwatcher" in error.errors[0]["msg"]


def test_registered_with_its_metadata():
    assert PROBES["weight_spectrum"] is WeightSpectrum
    assert WeightSpectrum.name == "weight_spectrum" and WeightSpectrum.version
    assert WeightSpectrum.paper.startswith("https://www.nature.com/articles/s41467-021")
    schema = WeightSpectrum.Params.model_json_schema()
    assert schema["properties"]["min_tail"]["minimum"] == 5
    assert set(WeightSpectrum.Result.model_json_schema()["properties"]) == {
        "convention", "conv_mode", "weights", "svd_dtype", "layers", "summary", "init"}  # fmt: skip


def test_eigenvalues_of_every_analysed_layer_are_kept_as_artifacts():
    """The artifacts are the spectra the metrics came from: sum of eigenvalues = squared Frobenius norm."""
    import torch

    from models.registry import build_model
    from models.specs import parse_arch
    from workers.probes.base import ProbeContext
    from workers.probes.weight_spectrum import WeightSpectrum

    arch = parse_arch({"name": "mlp", "in_dim": 6, "hidden": [12], "out_dim": 3})
    model = build_model(arch, seed=0)
    context = ProbeContext(arch=arch, model=model, has_uploaded_weights=True, make_member=lambda s: build_model(arch, seed=s),
                           seed=0, device=torch.device("cpu"))  # fmt: skip
    result = WeightSpectrum(WeightSpectrum.Params(n_init_samples=0)).run(context)
    assert sorted(context.artifacts) == sorted(f"eigenvalues.{layer.name}" for layer in result.layers)
    for layer in result.layers:
        weight = dict(model.named_parameters())[f"{layer.name}.weight"].detach().double()
        eigenvalues = context.artifacts[f"eigenvalues.{layer.name}"]
        assert eigenvalues.shape == (layer.n_eigs,)
        assert abs(eigenvalues.sum() - float((weight**2).sum())) <= 1e-10 * float((weight**2).sum())
