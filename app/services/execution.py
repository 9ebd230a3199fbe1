"""What a worker does with a run id (or a shard id): claim it, compute, record the outcome.

Shared by the Celery tasks and the embedded in-process worker, so both behave identically.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.orm import DatasetRecord, ModelRecord, Run
from app.runtime import Runtime
from app.services import run_state, shard_state
from app.services.heartbeat import Heartbeat
from workers.data.dataset import Dataset
from models.errors import InputError
from workers.probes.registry import instantiate_probes
from workers.runner import execute_run, load_task_dataset, pick_device, prepare_model, probe_context
from workers.runspec import RunSpec

log = logging.getLogger(__name__)

SubmitShard = Callable[[str, str], None]  # (shard id, queue) -> None


class _ThrottledProgress:
    """Writes progress to the run row at most every ``min_interval_s`` (plus the first write)."""

    def __init__(self, runtime: Runtime, run_id: str, min_interval_s: float = 0.5):
        self._runtime, self._run_id, self._min_interval_s = runtime, run_id, min_interval_s
        self._last = float("-inf")

    def __call__(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._min_interval_s:
            self._last = now
            run_state.record_progress(self._runtime.session_factory, self._run_id, fraction, message)


@dataclass
class RunInputs:
    spec: RunSpec
    model: ModelRecord | None
    weights_path: Path | None
    dataset: Dataset | None


def load_run_inputs(runtime: Runtime, run_id: str) -> RunInputs:
    """Everything a worker needs for a run, read from its committed row and the blob store."""
    with runtime.session_factory() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run with id {run_id}")
        spec = RunSpec.model_validate(run.spec)
        model = session.get(ModelRecord, run.model_id) if run.model_id else None
        dataset_record = session.get(DatasetRecord, run.dataset_id) if run.dataset_id else None

    def dataset_file(dataset_id: str) -> tuple[Path, str]:
        if dataset_record is None or dataset_record.id != dataset_id:
            raise InputError.at(["task", "dataset", "id"], f"no uploaded dataset with id {dataset_id}")
        return runtime.store.path_for(dataset_record.sha256), dataset_record.format

    dataset = load_task_dataset(spec, uploaded_dataset_file=dataset_file)
    weights_path = runtime.store.path_for(model.sha256) if model else None
    return RunInputs(spec, model, weights_path, dataset)


def blob_artifact_sink(runtime: Runtime, run_id: str):
    """Stores a probe's arrays as .npy blobs, served by ``GET /api/v1/runs/{id}/artifacts/{name}``."""

    def sink(key: str, array: np.ndarray) -> dict:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        stored = runtime.store.put_chunks([buffer.getvalue()], max_bytes=buffer.tell() + 1, suffix=".npy")
        return {"stored": True, "sha256": stored.sha256, "url": f"/api/v1/runs/{run_id}/artifacts/{key}"}

    return sink


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return f"invalid input: {exc}"
    return f"{type(exc).__name__}: {exc}"


def process_run(run_id: str, runtime: Runtime, worker: str, submit_shard: SubmitShard | None = None) -> str:
    """Claim and execute one run. Returns the final status, or ``"skipped"`` if not claimable.

    With ``submit_shard`` (Celery workers), probes that split their work spread the shards over
    every worker; without it (embedded, CLI) shards run here, one after another.
    """
    settings, factory = runtime.settings, runtime.session_factory
    if not run_state.claim(factory, run_id, worker, settings.stale_run_after_s):
        log.info("run %s not claimable (already taken or finished); skipping", run_id)
        return "skipped"

    beat = Heartbeat(lambda: run_state.heartbeat(factory, run_id), settings.heartbeat_every_s, f"heartbeat-run-{run_id}")
    try:
        with beat:
            inputs = load_run_inputs(runtime, run_id)
            shards = None
            if submit_shard is not None:
                from app.services.sharding import DistributedShardExecutor

                shards = DistributedShardExecutor(runtime, run_id, submit_shard, worker)
            report = execute_run(
                inputs.spec,
                weights_path=inputs.weights_path,
                weights_format=inputs.model.format if inputs.model else None,
                dataset=inputs.dataset,
                progress=_ThrottledProgress(runtime, run_id),
                device=pick_device(settings.device),
                run_info={"id": run_id, "model_id": inputs.model.id if inputs.model else None,
                          "model_name": inputs.model.name if inputs.model else None},
                shards=shards,
                artifact_sink=blob_artifact_sink(runtime, run_id),
            )
    except run_state.RunCancelled:
        log.info("run %s was cancelled; stopped at a progress point", run_id)
        return "cancelled"
    except Exception as exc:
        log.exception("run %s failed", run_id)
        run_state.record_failure(factory, run_id, describe_failure(exc))
        return "failed"

    if not run_state.record_success(factory, run_id, report):
        log.warning("run %s finished but was no longer running (claimed elsewhere?)", run_id)
        return "skipped"
    return "succeeded"


def execute_shard(runtime: Runtime, run_id: str, probe_name: str, shard: dict) -> dict:
    """Compute one shard of ``probe_name`` for the run, from the run's committed inputs."""
    inputs = load_run_inputs(runtime, run_id)
    probe = instantiate_probes(inputs.spec)[probe_name]
    prepared = prepare_model(
        inputs.spec,
        weights_path=inputs.weights_path,
        weights_format=inputs.model.format if inputs.model else None,
        device=pick_device(runtime.settings.device),
    )
    return probe.run_shard(probe_context(inputs.spec, prepared, inputs.dataset), shard)


def process_shard(shard_id: str, runtime: Runtime, worker: str) -> str:
    """Claim one shard by id and compute it (a Celery ``probes.run_shard`` message)."""
    factory, settings = runtime.session_factory, runtime.settings
    shard = shard_state.claim(factory, worker, settings.stale_run_after_s, shard_id=shard_id)
    if shard is None:
        return "skipped"  # already done, or being done by the run's own task
    return shard_state.execute_claimed(runtime, shard, worker)
