"""Every registered probe, on tiny members of every architecture family: runs on CPU in seconds,
accepts its default params, is deterministic per seed, and leaves the model as it found it."""

from __future__ import annotations

import pytest
import torch

from models.registry import build_model
from models.specs import input_signature, parse_arch
from workers.data.builtin import load_builtin
from workers.probes.base import ProbeContext
from workers.probes.metrics import definition_for
from workers.probes.registry import PROBES
from workers.runner import execute_run, load_task_dataset
from workers.runspec import RunSpec

TINY_ARCHS = {
    "mlp": {"name": "mlp", "in_dim": 2, "hidden": [16, 16], "out_dim": 3, "layernorm": True},
    "cnn": {"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [8], "out_dim": 3, "padding": "circular"},
    "vit": {"name": "vit", "in_channels": 1, "image_size": 8, "patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "out_dim": 3},
    "transformer": {"name": "transformer", "input": {"type": "tokens", "vocab_size": 11}, "seq_len": 6, "dim": 16,
                    "depth": 1, "heads": 2, "out_dim": 3},
}
PROBE_NAMES = sorted(PROBES)


def _spec(probe: str, family: str, seed: int) -> RunSpec:
    task = None
    if PROBES[probe].requires_task:
        task = {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3}, "target_error": 0.5}
    return RunSpec.model_validate({"model": {"arch": TINY_ARCHS[family]}, "task": task, "probes": {probe: {}}, "seed": seed})


# Default params on these pairings take 4-9 s with one thread (--durations): the full suite runs
# them, the fast loop (-m "not slow") leaves them out.
SLOW_PAIRINGS = {("inductive_bias", "mlp"), ("simplicity", "cnn"), ("simplicity", "vit")}


@pytest.mark.parametrize(
    "probe, family",
    [
        pytest.param(probe, family, id=f"{probe}-{family}",
                     marks=[pytest.mark.slow] if (probe, family) in SLOW_PAIRINGS else [])
        for probe in PROBE_NAMES
        for family in sorted(TINY_ARCHS)
    ],
)
def test_default_params_run_and_are_deterministic(probe, family):
    if PROBES[probe].requires_task and family != "mlp":
        pytest.skip("task-based probes are exercised on the MLP/gaussian_clusters pairing here")
    kind, _ = input_signature(parse_arch(TINY_ARCHS[family]))
    if kind not in PROBES[probe].supported_input_kinds:
        pytest.skip(f"{probe} does not take {kind} inputs")

    def run(seed: int) -> dict:
        spec = _spec(probe, family, seed)
        return execute_run(spec, weights_path=None, dataset=load_task_dataset(spec)).model_dump(mode="json")["probes"]

    first, second = run(3), run(3)
    assert first == second
    PROBES[probe].Result.model_validate(first[probe])
    assert run(4) != first


@pytest.mark.parametrize(
    "probe",
    # inductive_bias trains its default 1000 hypotheses here: 3.5 s with one thread.
    [pytest.param(p, marks=[pytest.mark.slow] if p == "inductive_bias" else []) for p in PROBE_NAMES],
)
def test_probe_leaves_the_model_untouched(probe):
    arch = parse_arch(TINY_ARCHS["mlp"])
    model = build_model(arch, seed=0)
    model.train()
    model.layers[0].weight.requires_grad_(False)
    hooks_before = (dict(model._forward_hooks), dict(model._forward_pre_hooks))
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = {name: p.requires_grad for name, p in model.named_parameters()}
    context = ProbeContext(
        arch=arch, model=model, has_uploaded_weights=True, make_member=lambda s: build_model(arch, seed=s),
        seed=0, device=torch.device("cpu"),
        dataset=load_builtin("gaussian_clusters", {"in_dim": 2, "n_classes": 3}, seed=0),
        task=_spec(probe, "mlp", 0).task,
    )
    PROBES[probe]().run(context)
    assert model.training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == grads_before
    assert all(torch.equal(state_before[k], v) for k, v in model.state_dict().items())
    assert (dict(model._forward_hooks), dict(model._forward_pre_hooks)) == hooks_before


@pytest.mark.parametrize("probe", PROBE_NAMES)
def test_metrics_come_from_declared_definitions(probe):
    """Every metric key is built from one of the probe's declared patterns, so ``GET /probes``
    documents every key a report can contain; keys carry no parameter values."""
    spec = _spec(probe, "mlp", 0)
    report = execute_run(spec, weights_path=None, dataset=load_task_dataset(spec))
    cls = PROBES[probe]
    assert cls.metric_definitions, f"{probe} declares no metrics"
    assert report.metrics, f"{probe} reported no metrics"
    for metric in report.metrics:
        definition = definition_for(cls.metric_definitions, metric.key)
        assert definition is not None, f"{metric.key} matches no declared pattern of {probe}"
        assert metric.key.startswith(f"{probe}.")
        assert (metric.unit, metric.better, metric.description) == (definition.unit, definition.better, definition.description)
        assert definition.scope in (None, metric.scope)
        assert "=" not in metric.key and " " not in metric.key
        if metric.ci95 is not None and metric.value is not None:
            low, high = metric.ci95
            assert (low is None or low <= metric.value * (1 + 1e-12) + 1e-300) and (high is None or metric.value <= high * (1 + 1e-12) + 1e-300)
    assert len({metric.key for metric in report.metrics}) == len(report.metrics), "duplicate metric keys"


def test_docs_list_every_metric_key():
    from pathlib import Path

    docs = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    for name, probe in PROBES.items():
        for definition in probe.metric_definitions:
            assert f"`{definition.key}`" in docs, f"docs/metrics.md does not list {definition.key}"


# ONNX exports (opset 17, made in the test) of every zoo family and of two hand-built models.
ONNX_MODELS = ("mlp", "cnn", "vit", "transformer", "resnet", "small_transformer")


@pytest.mark.slow
@pytest.mark.parametrize("name", ONNX_MODELS)
@pytest.mark.parametrize("probe", PROBE_NAMES)
def test_every_probe_runs_on_onnx_exports(probe, name, tmp_path):
    from models.graph.describe import describe_graph
    from tests.models.graph.exports import export_named

    if PROBES[probe].requires_task and name != "mlp":
        pytest.skip("task-based probes are exercised on the MLP/gaussian_clusters pairing here")
    path = export_named(name, tmp_path)
    arch, _ = describe_graph(path)
    if arch.input.kind not in PROBES[probe].supported_input_kinds:
        pytest.skip(f"{probe} does not take {arch.input.kind} inputs")
    task = _spec(probe, "mlp", 0).task
    spec = RunSpec.model_validate({"model": {"arch": arch.model_dump(mode="json")}, "probes": {probe: {}}, "seed": 3,
                                   "task": None if task is None else task.model_dump(mode="json")})
    report = execute_run(spec, weights_path=path, dataset=load_task_dataset(spec))
    assert report.run.weights == "uploaded"
    PROBES[probe].Result.model_validate(report.model_dump(mode="json")["probes"][probe])
    assert report.metrics and all(m.key.startswith(f"{probe}.") for m in report.metrics)
