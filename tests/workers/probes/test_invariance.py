import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from models.registry import build_model
from models.specs import parse_arch
from workers.data.builtin import load_builtin
from models.errors import InputError
from workers.probes.base import ProbeContext
from workers.probes.functional.invariance import StackedEnsemble, linear_permutation_ratio
from workers.probes.invariance import EXACT_TOLERANCE, Invariance, _transform_seed, select_inputs
from workers.runspec import TaskSpec
from workers.transforms import build_transform

CIRCULAR_CNN = {"name": "cnn", "in_channels": 1, "image_size": 6, "channels": [4], "out_dim": 3, "padding": "circular"}
VIT = {"name": "vit", "in_channels": 1, "image_size": 4, "patch_size": 2, "dim": 8, "depth": 1, "heads": 2, "out_dim": 3}
LINEAR = {"name": "mlp", "in_dim": 6, "hidden": [], "out_dim": 4}
SEQ2SEQ = {"name": "transformer", "input": {"type": "features", "dim": 3}, "seq_len": 5, "dim": 8, "depth": 1,
           "heads": 2, "out_dim": 3, "pool": "none"}
TOKENS = {"name": "transformer", "input": {"type": "tokens", "vocab_size": 7}, "seq_len": 4, "dim": 8, "depth": 1,
          "heads": 2, "out_dim": 2}
FAST = {"n_inputs": 32, "n_init_samples": 2, "bootstrap": 50}


def context(arch_dict, *, seed=0, dataset=None, task=None, dtype=torch.float32, model=None, member=None, uploaded=True):
    arch = parse_arch(arch_dict)
    member = member or (lambda s: build_model(arch, seed=s).to(dtype))
    return ProbeContext(
        arch=arch, model=model if model is not None else member(seed), has_uploaded_weights=uploaded,
        make_member=member, seed=seed, device=torch.device("cpu"), dtype=dtype, dataset=dataset, task=task,
    )


def run(ctx, **params):
    return Invariance(Invariance.Params(**{**FAST, **params})).run(ctx)


def task(permutation=None):
    return TaskSpec(dataset={"builtin": "teacher"}, target_error=1.0, input_permutation=permutation)


def test_circular_cnn_is_exactly_shift_invariant_for_the_weights_and_every_member():
    result = run(context(CIRCULAR_CNN), transforms=["circular_shift", "translate"])
    shift = result.transforms["circular_shift"]
    assert shift.invariance_ratio.value < 1e-10
    assert shift.invariance_ratio.ci95[1] < 1e-10
    assert all(v < 1e-10 for v in shift.init.invariance_ratio.values)
    assert shift.consistency.value == 1.0
    assert result.transforms["translate"].invariance_ratio.value > 1e-3  # zero padding breaks it
    assert result.summary.exactly_invariant == ["circular_shift"] == result.summary.built_in
    assert result.summary.ranking[0].versus_init == "exact_at_both"
    assert [row.name for row in result.summary.ranking] == ["circular_shift", "translate"]
    assert shift.equivariance_ratio is None and "image-to-image" in shift.equivariance_note
    assert shift.kind == "discrete" and shift.lie_derivative is None and shift.magnitude == 2


def test_linear_map_under_a_permutation_matches_the_closed_form():
    permutation = [3, 0, 1, 2, 5, 4]
    ctx = context(LINEAR, task=task(permutation), dtype=torch.float64)
    result = run(ctx, transforms=["custom"], n_inputs=4000, bootstrap=200, n_init_samples=0)
    closed = linear_permutation_ratio(ctx.model.layers[0].weight.detach().numpy(), permutation)
    ratio = result.transforms["custom"].invariance_ratio
    assert result.inputs == "synthetic" and result.n_inputs == 4000
    assert ratio.value == pytest.approx(closed, rel=0.08)
    assert ratio.ci95[0] < closed < ratio.ci95[1]
    assert result.transforms["custom"].init is None


@pytest.mark.parametrize("name", ["translate", "rotate", "scale", "brightness", "contrast", "gaussian_noise"])
def test_lie_derivative_matches_a_central_finite_difference(name):
    ctx = context(CIRCULAR_CNN, dtype=torch.float64)
    result = run(ctx, transforms=[name], n_inputs=16, n_init_samples=0)
    transform = build_transform(name, "image", (1, 6, 6))
    x, _ = select_inputs(ctx, "image", (1, 6, 6), 16)
    seed = _transform_seed(ctx.seed, name)
    model, h = ctx.model, 1e-6
    with torch.no_grad():
        outputs = model(x)
        variance = ((outputs - outputs.mean(0)) ** 2).sum(1).mean()
        squares = []
        for k in range(len(transform.generators)):
            step = torch.zeros(16, len(transform.generators), dtype=torch.float64)
            step[:, k] = h
            fd = (model(transform.flow(x, step, seed)) - model(transform.flow(x, -step, seed))) / (2 * h)
            squares.append((fd**2).sum(1).mean() / variance)
    lie = result.transforms[name].lie_derivative
    assert lie.value == pytest.approx(float(np.mean(squares)), rel=1e-5)
    assert list(lie.per_generator.values()) == pytest.approx([float(s) for s in squares], rel=1e-5)
    assert lie.t_unit == transform.t_unit and lie.unit == f"1/({transform.t_unit})^2"
    assert lie.ci95[0] <= lie.value <= lie.ci95[1]


def test_sequence_model_without_positions_is_exactly_equivariant_to_reordering():
    def member(seed):
        model = build_model(parse_arch(SEQ2SEQ), seed=seed)
        with torch.no_grad():
            model.pos_embed.zero_()  # self-attention without positions commutes with any reordering
        return model

    result = run(context(SEQ2SEQ, member=member))
    assert result.output_shape == [5, 3]
    for name in ("cyclic_shift", "reversal", "position_permutation"):
        report = result.transforms[name]
        assert report.equivariance_ratio.value < 1e-10 and report.equivariance_note is None
        assert all(v < 1e-10 for v in report.init.equivariance_ratio.values)
        assert report.invariance_ratio.value > 0.1  # the outputs move with the positions
        assert report.consistency.value == 1.0  # argmax per position compared with g f(x)


def test_image_to_image_model_is_equivariant_to_circular_shifts():
    def member(seed):
        torch.manual_seed(seed)  # test-only builder; the probe itself never touches global RNG
        return nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular").eval()

    result = run(context(CIRCULAR_CNN, member=member), transforms=["circular_shift", "brightness"])
    assert result.output_shape == [2, 6, 6] and result.classifier is False
    assert result.transforms["circular_shift"].equivariance_ratio.value < 1e-10
    assert result.transforms["circular_shift"].invariance_ratio.value > 0.1
    assert result.transforms["brightness"].equivariance_ratio is None
    assert "only invariance" in result.transforms["brightness"].equivariance_note


def test_task_test_set_is_subsampled_and_classifier_metrics_follow_the_task():
    dataset = load_builtin("digits", {"flatten": False, "n_classes": 3}, seed=0)
    arch = {**VIT, "image_size": 8, "patch_size": 4}
    ctx = context(arch, dataset=dataset)
    result = run(ctx, transforms=["horizontal_flip", "brightness"])
    assert result.inputs == "task_test_set" and result.n_inputs == 32 and result.classifier
    x, source = select_inputs(ctx, "image", (1, 8, 8), 32)
    rows = {tuple(row.flatten().tolist()) for row in dataset.X_test}
    assert source == "task_test_set" and all(tuple(row.flatten().tolist()) in rows for row in x)
    consistency = result.transforms["horizontal_flip"].consistency
    assert 0 <= consistency.ci95[0] <= consistency.value <= consistency.ci95[1] <= 1
    regression = load_builtin("teacher", {"in_dim": 6, "out_dim": 4}, seed=0)
    assert run(context(LINEAR, dataset=regression), transforms=["sign_flip"]).classifier is False


def test_token_inputs_are_synthetic_ids_with_sequence_transforms_by_default():
    ctx = context(TOKENS)
    x, source = select_inputs(ctx, "tokens", (4,), 64)
    assert source == "synthetic" and x.dtype == torch.long and 0 <= x.min() and x.max() < 7
    result = run(ctx)
    assert list(result.transforms) == ["cyclic_shift", "reversal", "position_permutation"]
    assert all(r.lie_derivative is None and r.equivariance_ratio is None for r in result.transforms.values())


def test_batch_size_does_not_change_the_numbers():
    ctx = context(CIRCULAR_CNN)
    small = run(ctx, transforms=["rotate", "gaussian_noise", "vertical_flip"], n_inputs=12, batch_size=5)
    large = run(ctx, transforms=["rotate", "gaussian_noise", "vertical_flip"], n_inputs=12, batch_size=256)
    for name in small.transforms:
        a, b = small.transforms[name], large.transforms[name]
        assert a.invariance_ratio.value == pytest.approx(b.invariance_ratio.value, rel=1e-5)
        if a.lie_derivative is not None:
            assert a.lie_derivative.value == pytest.approx(b.lie_derivative.value, rel=1e-4)
        assert a.init.invariance_ratio.values == pytest.approx(b.init.invariance_ratio.values, rel=1e-5)


def test_deterministic_per_seed_and_result_is_strict_json():
    first = run(context(CIRCULAR_CNN, seed=3), transforms=["translate", "vertical_flip"])
    second = run(context(CIRCULAR_CNN, seed=3), transforms=["translate", "vertical_flip"])
    other = run(context(CIRCULAR_CNN, seed=4), transforms=["translate", "vertical_flip"])
    assert first == second and first != other
    payload = json.dumps(first.model_dump(mode="json"), allow_nan=False)
    assert Invariance.Result.model_validate_json(payload) == first
    assert first.init_seeds == second.init_seeds != other.init_seeds


def test_stacked_ensemble_equals_each_member_called_alone():
    arch = parse_arch(VIT)
    members = [build_model(arch, seed=s) for s in range(2)]
    ensemble = StackedEnsemble(members)
    x, tangents = torch.rand(5, 1, 4, 4), torch.randn(2, 5, 1, 4, 4)
    with torch.no_grad():
        stacked, derivatives = ensemble(x), ensemble.lie_derivative(x, tangents)
    assert derivatives.shape == (2, 2, 5, 3)
    for i, member in enumerate(members):
        torch.testing.assert_close(stacked[i], member(x))
        for k in range(2):
            _, reference = torch.autograd.functional.jvp(member, x, tangents[k])
            torch.testing.assert_close(derivatives[k, i], reference, atol=1e-5, rtol=1e-4)


def test_model_is_left_untouched_and_never_called():
    ctx = context(VIT)
    model = ctx.model
    model.train()
    model.head.weight.requires_grad_(False)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    run(ctx, transforms=["rotate", "circular_shift"])
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()].count(False) == 1 and not model.head.weight.requires_grad
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert calls == [] and len(model._forward_hooks) == 1


def test_summary_ranks_and_compares_with_random_init():
    result = run(context(CIRCULAR_CNN), transforms=["rotate", "brightness", "horizontal_flip"], n_init_samples=3)
    ratios = [row.invariance_ratio for row in result.summary.ranking]
    assert ratios == sorted(ratios)
    for row in result.summary.ranking:
        report = result.transforms[row.name]
        assert row.init_mean == pytest.approx(np.mean(report.init.invariance_ratio.values))
        assert row.versus_init in ("more_invariant", "less_invariant", "within_init_range")
    metrics = {metric.key: metric for metric in Invariance.metrics(result)}
    rotate = metrics["invariance.rotate.invariance_ratio"]
    assert rotate.value == result.transforms["rotate"].invariance_ratio.value
    assert rotate.ci95 == result.transforms["rotate"].invariance_ratio.ci95 and rotate.scope == "trained"
    at_init = metrics["invariance.rotate.init.invariance_ratio"]
    assert at_init.scope == "init" and at_init.n == 3
    assert at_init.ci95[0] < at_init.value < at_init.ci95[1]
    assert EXACT_TOLERANCE < min(ratios)


def test_magnitudes_are_applied_and_reported():
    result = run(context(CIRCULAR_CNN), transforms=[{"name": "rotate", "magnitude": 90}, "brightness"])
    assert result.transforms["rotate"].magnitude == 90.0 and "degrees" in result.transforms["rotate"].magnitude_meaning
    assert result.transforms["brightness"].magnitude == 0.1


def test_padding_is_applied_to_the_warps_and_reported():
    zeros = run(context(CIRCULAR_CNN), transforms=["translate", "horizontal_flip"]).transforms
    reflected = run(context(CIRCULAR_CNN), transforms=[{"name": "translate", "padding": "reflection"}]).transforms
    assert zeros["translate"].padding == "zeros" and zeros["horizontal_flip"].padding is None
    assert reflected["translate"].padding == "reflection"
    # Only the border pixels' generator changes; on a 6x6 image that is most of the signal.
    lie_zeros, lie_reflected = zeros["translate"].lie_derivative.value, reflected["translate"].lie_derivative.value
    assert abs(lie_reflected - lie_zeros) > 0.05 * lie_zeros


@pytest.mark.parametrize(
    "transforms, loc, fragment",
    [
        (["rotate", "shear"], ["probes", "invariance", "transforms", 1], "'shear'"),
        (["reversal"], ["probes", "invariance", "transforms", 0], "not image"),
        ([{"name": "rotate", "magnitude": 500}], ["probes", "invariance", "transforms", 0, "magnitude"], "degrees"),
        (["rotate", "rotate"], ["probes", "invariance", "transforms", 1], "twice"),
        (["custom"], ["probes", "invariance", "transforms"], "input_permutation"),
        ([{"name": "brightness", "padding": "reflection"}], ["probes", "invariance", "transforms", 0, "padding"], "border"),
    ],
)
def test_check_inputs_refuses_transforms_that_do_not_fit(transforms, loc, fragment):
    probe = Invariance(Invariance.Params(transforms=transforms))
    with pytest.raises(InputError) as info:
        probe.check_inputs(parse_arch(VIT), None)
    (error,) = info.value.errors
    assert error["loc"] == loc and fragment in error["msg"]
    if "'shear'" == fragment:
        assert "'circular_shift'" in error["msg"] and "'gaussian_noise'" in error["msg"]
    with pytest.raises(InputError):
        probe.run(context(VIT))


def test_check_dataset_needs_two_test_inputs():
    probe = Invariance()
    probe.check_dataset(load_builtin("digits", {"flatten": False, "n_classes": 2}, seed=0).describe())
    with pytest.raises(InputError) as info:
        probe.check_dataset({"n_test": 1})
    assert info.value.errors[0]["loc"] == ["task", "dataset"]


def test_custom_needs_a_permutation_of_the_right_length():
    probe = Invariance(Invariance.Params(transforms=["custom"]))
    probe.check_inputs(parse_arch(LINEAR), task(list(range(6))[::-1]))
    with pytest.raises(InputError) as info:
        probe.check_inputs(parse_arch(LINEAR), task([1, 0]))
    assert info.value.errors[0]["loc"] == ["task", "input_permutation"]


def test_params_have_bounds_and_defaults():
    params = Invariance.Params()
    assert (params.transforms, params.n_inputs, params.n_init_samples, params.bootstrap) == (None, 256, 8, 200)
    for bad in ({"n_inputs": 1}, {"bootstrap": 10}, {"n_init_samples": 65}, {"transforms": []}, {"seed": 1}):
        with pytest.raises(ValidationError):
            Invariance.Params(**bad)
    assert Invariance.name == "invariance"


def test_mlp_and_cnn_on_the_same_images_circular_shift():
    """The classic comparison: the same 8x8 digits (``flatten: false``, so the task's input is
    inferred as images) through an MLP, which consumes them flattened, and a circular CNN with
    global pooling, exactly shift-invariant by construction (METHODS §2). The MLP has no such
    symmetry: a shifted digit moves as far in output space as another digit does (ratio ~ 1)."""
    from workers.runner import execute_run, load_task_dataset
    from workers.runspec import RunSpec

    task = {"dataset": {"builtin": "digits", "flatten": False, "n_classes": 3}, "loss": "cross_entropy", "target_error": 0.5}
    archs = {
        "mlp": {"name": "mlp", "in_dim": 64, "hidden": [32], "out_dim": 3},
        "cnn": {"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [8], "padding": "circular", "out_dim": 3},
    }
    ratios = {}
    for label, arch in archs.items():
        spec = RunSpec.model_validate({"model": {"arch": arch}, "task": task, "seed": 0, "probes": {
            "invariance": {"transforms": ["circular_shift"], "n_inputs": 64, "n_init_samples": 2, "bootstrap": 50}}})
        report = execute_run(spec, weights_path=None, dataset=load_task_dataset(spec))
        assert report.run.spec.task.input.model_dump() == {"kind": "image", "shape": [1, 8, 8], "vocab_size": None}
        result = report.probes.invariance
        assert result.input_kind == "image" and result.sample_shape == [1, 8, 8]
        ratios[label] = result.transforms["circular_shift"].invariance_ratio
    assert ratios["cnn"].value < 1e-10
    assert ratios["mlp"].ci95[0] > 0.3
