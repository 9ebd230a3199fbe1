"""Execute one run spec and assemble its report: the code path shared by the CLI, the Celery task
and the embedded in-process worker. It knows nothing about the database or the broker: callers
resolve ids to files and pass a progress callback.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.loading import load_checkpoint
from models.registry import build_model, count_parameters
from models.graph.store import load_graph, uploaded_model
from models.specs import ArchSpec, OnnxSpec, input_signature
from workers.data.builtin import load_builtin
from workers.data.dataset import Dataset
from workers.data.files import load_dataset_file
from models.errors import InputError
from workers.probes.base import LocalShardExecutor, ProbeContext, ProgressFn, ShardExecutor
from workers.probes.registry import instantiate_probes
from workers.report import REPORT_FORMAT_VERSION, Artifact, Environment, ProbeTiming, Report, probe_metrics, probe_warnings
from workers.runspec import BuiltinDatasetRef, PathDatasetRef, RunSpec, UploadedDatasetRef, with_data_input
# Stores one named array and returns its JSON descriptor (where to fetch it, its digest).
ArtifactSink = Callable[[str, np.ndarray], dict[str, Any]]


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` uses CUDA when present; asking for ``cuda`` without one is an error, not a fallback."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False on this worker")
    if preference in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def load_task_dataset(
    spec: RunSpec,
    *,
    uploaded_dataset_file: Callable[[str], tuple[Path, str]] | None = None,
    base_dir: Path | None = None,
) -> Dataset | None:
    """Materialise the task's dataset from whichever source the spec names.

    ``uploaded_dataset_file`` maps an uploaded dataset id to its stored file and format (API/worker);
    ``base_dir`` anchors relative ``path`` references (CLI: the spec file's directory).
    """
    if spec.task is None:
        return None
    ref = spec.task.dataset
    if isinstance(ref, BuiltinDatasetRef):
        params = {k: v for k, v in ref.model_dump().items() if k != "builtin"}
        return load_builtin(ref.builtin, params, seed=spec.seed)
    if isinstance(ref, UploadedDatasetRef):
        if uploaded_dataset_file is None:
            raise InputError.at(["task", "dataset", "id"], "uploaded dataset ids only work through the API; use 'path'")
        stored_path, file_format = uploaded_dataset_file(ref.id)
        return load_dataset_file(stored_path, name=ref.id, format=file_format)
    assert isinstance(ref, PathDatasetRef)
    path = Path(ref.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise InputError.at(["task", "dataset", "path"], f"no such file: {path}")
    return load_dataset_file(path, name=path.name)


def environment_info(device: torch.device, dtype: torch.dtype) -> Environment:
    from importlib.metadata import PackageNotFoundError, version

    try:
        priorprobe_version = version("priorprobe")
    except PackageNotFoundError:
        priorprobe_version = "unknown"
    info: dict[str, Any] = {
        "priorprobe": priorprobe_version,
        "report_format": REPORT_FORMAT_VERSION,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    return Environment(**info)


@dataclass
class ProgressSplitter:
    """Maps each probe's own 0..1 progress onto its slice of the whole run's 0..1."""

    report: ProgressFn
    n_probes: int
    index: int = 0
    name: str = ""

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        overall = (self.index + fraction) / self.n_probes
        self.report(overall, f"{self.name}: {message}" if message else self.name)


@dataclass
class PreparedModel:
    """The run's hypothesis space and its member under study, built once per run (or shard)."""

    arch: ArchSpec
    model: torch.nn.Module
    has_uploaded_weights: bool
    device: torch.device

    def make_member(self, seed: int) -> torch.nn.Module:
        return build_model(self.arch, seed=seed, device=self.device)


def prepare_model(
    spec: RunSpec, *, weights_path: Path | None, weights_format: str | None = None, device: torch.device
) -> PreparedModel:
    if spec.model.arch is None:
        raise InputError.at(["model", "arch"], "an architecture spec is required")
    if isinstance(spec.model.arch, OnnxSpec):
        return _prepare_graph(spec.model.arch, weights_path, device)
    model = build_model(spec.model.arch, seed=spec.seed, device=device)
    if weights_path is not None:
        load_checkpoint(weights_path, model, format=weights_format)
    return PreparedModel(spec.model.arch, model, weights_path is not None, device)


def _prepare_graph(arch: OnnxSpec, weights_path: Path | None, device: torch.device) -> PreparedModel:
    """An ONNX space: its file is the uploaded member, and must be the graph ``arch`` names."""
    if weights_path is None:
        raise InputError.at(["model", "weights"], "an ONNX architecture needs its .onnx file (or uploaded model id) as weights")
    sha, _ = load_graph(weights_path, bind=tuple(arch.input.shape))
    if sha != arch.graph:
        raise InputError.at(
            ["model", "arch", "graph"], f"names graph {arch.graph[:12]}... but the weights file is graph {sha[:12]}..."
        )
    return PreparedModel(arch, uploaded_model(sha).to(device).eval(), True, device)


def in_model_shape(dataset: Dataset | None, arch: ArchSpec) -> Dataset | None:
    """The dataset with samples in the shape ``arch`` takes (flattened for flat-vector models)."""
    if dataset is None:
        return None
    _, shape = input_signature(arch)
    if dataset.sample_shape == tuple(shape) or math.prod(dataset.sample_shape) != math.prod(shape):
        return dataset
    return dataclasses.replace(
        dataset,
        X_train=dataset.X_train.reshape(dataset.X_train.shape[0], *shape),
        X_test=dataset.X_test.reshape(dataset.X_test.shape[0], *shape),
    )


def probe_context(
    spec: RunSpec,
    prepared: PreparedModel,
    dataset: Dataset | None,
    *,
    progress: ProgressFn | None = None,
    shards: ShardExecutor | None = None,
) -> ProbeContext:
    return ProbeContext(
        data_input=spec.task.input if spec.task is not None else None,
        arch=prepared.arch,
        model=prepared.model,
        has_uploaded_weights=prepared.has_uploaded_weights,
        make_member=prepared.make_member,
        seed=spec.seed,
        device=prepared.device,
        dtype=torch.float32,
        dataset=in_model_shape(dataset, prepared.arch),
        task=spec.task,
        progress=progress or (lambda fraction, message: None),
        shards=shards or LocalShardExecutor(),
    )


def execute_run(
    spec: RunSpec,
    *,
    weights_path: Path | None,
    weights_format: str | None = None,
    dataset: Dataset | None,
    progress: ProgressFn | None = None,
    device: torch.device | None = None,
    run_info: dict[str, Any] | None = None,
    shards: ShardExecutor | None = None,
    artifact_sink: ArtifactSink | None = None,
) -> Report:
    """Run every probe in ``spec`` and return the typed report.

    Args:
        spec: a validated run spec whose ``model.arch`` is set.
        weights_path: checkpoint file for the uploaded weights, or None to probe a seeded random
            member of the hypothesis space (the report says which).
        weights_format: the checkpoint's format when the path has no telling suffix (stored blobs).
        dataset: the task's dataset, already loaded (see ``load_task_dataset``), or None.
        progress: called with (fraction of the whole run, message).
        device: where probes run; defaults to ``pick_device("auto")``.
        run_info: extra fields of ``report.run`` (``id``, ``model_id``, ``model_name``).
        shards: how probes that split their work run the pieces (default: in this process).
        artifact_sink: stores each array a probe set aside (``context.artifacts``) and returns
            the location fields of its descriptor (``stored``, ``sha256``/``url`` or ``path``);
            without one, descriptors say the array was not kept.

    Returns:
        ``Report`` (``workers/report.py``); ``report.model_dump(mode="json")`` is the JSON document.

    Raises:
        InputError for problems with the user's input; anything else is a probe failure.
    """
    if spec.model.arch is None:
        raise InputError.at(["model", "arch"], "an architecture spec is required (uploaded model ids work only through the API)")
    spec = with_data_input(spec, dataset.describe() if dataset is not None else None)
    probes = instantiate_probes(spec)
    device = device or pick_device("auto")
    prepared = prepare_model(spec, weights_path=weights_path, weights_format=weights_format, device=device)
    splitter = ProgressSplitter(progress or (lambda fraction, message: None), n_probes=len(probes))
    results: dict[str, Any] = {}
    metrics, warnings = [], []
    timing: dict[str, ProbeTiming] = {}
    artifacts: dict[str, Artifact] = {}
    for index, (name, probe) in enumerate(probes.items()):
        splitter.index, splitter.name = index, name
        splitter(0.0, "starting")
        context = probe_context(spec, prepared, dataset, progress=splitter, shards=shards)
        started = time.perf_counter()
        result = probe.run(context)
        total = time.perf_counter() - started
        results[name] = result
        metrics.extend(probe_metrics(name, result))
        warnings.extend(probe_warnings(name, result))
        timing[name] = ProbeTiming(total_s=round(total, 6), phases={k: round(v, 6) for k, v in context.timing.items()})
        for artifact_name, array in context.artifacts.items():
            key = f"{name}.{artifact_name}"
            location = artifact_sink(key, array) if artifact_sink else {"stored": False}
            artifacts[key] = Artifact(shape=list(array.shape), dtype=str(array.dtype), **location)
        splitter(1.0, "done")

    return Report(
        run={
            "spec": spec,
            "seed": spec.seed,
            "weights": "uploaded" if weights_path is not None else "random_init",
            "parameter_count": count_parameters(prepared.model),
            "dataset": dataset.describe() if dataset is not None else None,
            "probe_versions": {name: probe.version for name, probe in probes.items()},
            **(run_info or {}),
        },
        probes=results,
        metrics=metrics,
        warnings=warnings,
        timing=timing,
        environment=environment_info(device, torch.float32),
        artifacts=artifacts,
    )
