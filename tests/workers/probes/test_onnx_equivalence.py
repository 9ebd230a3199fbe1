"""A probe measures the function and its hypothesis space, not the file format: on the ONNX export
of a zoo model with the same weights, every probe gives the native model's numbers.

The spaces coincide for the MLP and the CNN (every parameter of theirs is a weight, bias or norm
role in the graph, drawn per name by ``models.init``), so the probes that compare random members
agree too; for the ViT and transformer the positional table is a fixed constant of the graph
(``models.graph.roles``), so there only the probes of the uploaded weights are compared.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.graph.describe import describe_graph
from models.loading import save_safetensors
from models.specs import parse_arch
from tests.models.graph.exports import ZOO_ARCHS, export, sample_shape, zoo_model
from workers.probes.registry import PROBES
from workers.runner import execute_run, load_task_dataset
from workers.runspec import RunSpec

INIT = {"dist": "normal", "scale": 1.0}
WEIGHT_PROBES = ("invariance", "sharpness")
# Result fields that name the space rather than measure it.
_DESCRIPTIVE = {"arch"}


def _close(a, b, path="", skip=_DESCRIPTIVE) -> list[str]:
    """Paths where ``a`` and ``b`` differ beyond float32 evaluation noise.

    Keys in ``skip`` are ignored; with ``"init"`` in it, every key starting with ``init`` is (the
    random members' numbers, e.g. ``init_mean`` in a ranking).
    """
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        kept = [k for k in a if k not in skip and not ("init" in skip and k.startswith("init"))]
        return [d for k in kept for d in _close(a[k], b[k], f"{path}.{k}", skip)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, f"{path}[{i}]", skip)]
    if isinstance(a, float) and isinstance(b, float):
        # Same arithmetic in another order (graph ops vs nn modules): float32 rounding, amplified
        # at most a few times by the probes' estimators.
        if math.isnan(a) and math.isnan(b) or math.isclose(a, b, rel_tol=2e-4, abs_tol=1e-6):
            return []
        return [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _reports(family: str, probe: str, tmp_path):
    model = zoo_model(family, seed=5)
    # As after training: no two parameters equal. (The exporter merges identical initializers,
    # e.g. two fresh LayerNorms' gains of ones, into one shared tensor: another space.)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    onnx_path = export(model, sample_shape(family), tmp_path / f"{family}.onnx")
    weights = tmp_path / f"{family}.safetensors"
    save_safetensors(model, weights)
    task = None
    if PROBES[probe].requires_task:
        task = {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3}, "target_error": 0.5}
    graph_spec, _ = describe_graph(onnx_path)
    reports = []
    for arch, path in (({**ZOO_ARCHS[family], "init": INIT}, weights), ({**graph_spec.model_dump(mode="json"), "init": INIT}, onnx_path)):
        spec = RunSpec.model_validate({"model": {"arch": arch}, "task": task, "probes": {probe: {}}, "seed": 2})
        reports.append(execute_run(spec, weights_path=path, dataset=load_task_dataset(spec)).model_dump(mode="json"))
    return reports


CASES = [(f, p) for f in ("mlp", "cnn") for p in sorted(PROBES)] + [
    (f, p) for f in ("vit", "transformer") for p in WEIGHT_PROBES
]


@pytest.mark.slow
@pytest.mark.parametrize("family,probe", CASES)
def test_probe_numbers_equal_on_native_and_onnx(family, probe, tmp_path):
    if PROBES[probe].requires_task and family != "mlp":
        pytest.skip("task-based probes are compared on the MLP/gaussian_clusters pairing")
    from models.specs import input_signature

    if input_signature(parse_arch(ZOO_ARCHS[family]))[0] not in PROBES[probe].supported_input_kinds:
        pytest.skip(f"{probe} does not take this input kind")
    native, graph = _reports(family, probe, tmp_path)
    if family in ("mlp", "cnn"):
        assert native["run"]["parameter_count"] == graph["run"]["parameter_count"]
    # Where the spaces differ (fixed positional table), only the uploaded weights' numbers compare.
    same_space = family in ("mlp", "cnn")
    skip = _DESCRIPTIVE if same_space else _DESCRIPTIVE | {"init", "versus_init"}
    assert _close(native["probes"], graph["probes"], skip=skip) == []

    def values(report):
        return {m["key"]: m["value"] for m in report["metrics"] if same_space or ".init." not in m["key"]}

    assert _close(values(native), values(graph)) == []
