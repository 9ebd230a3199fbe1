"""Creating runs: resolve references, validate everything, commit, then enqueue."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import Queue, Settings
from app.orm import DatasetRecord, ModelRecord, Run, RunStatus
from app.orm.base import utcnow
from app.jobs.queue import DispatchError, JobQueue
from app.jobs.registry import RUN
from app.services.model_refs import find_model
from models.specs import parse_arch
from models.errors import InputError
from workers.preflight import preflight
from workers.probes.base import Probe
from workers.runner import load_task_dataset
from workers.runspec import BuiltinDatasetRef, PathDatasetRef, RunSpec, UploadedDatasetRef, with_data_input


def _without_init(arch: dict) -> dict:
    return {key: value for key, value in arch.items() if key != "init"}


def _resolve_model(session: Session, spec: RunSpec) -> ModelRecord | None:
    """Fill ``spec.model.arch`` from the uploaded model and check the two agree."""
    if spec.model.weights is None:
        return None
    record = find_model(session, spec.model.weights)
    if record is None:
        raise InputError.at(["model", "weights"], f"no uploaded model '{spec.model.weights}' (see GET /api/v1/models)")
    spec.model.weights = record.id  # the run keeps the model it measured, not the moving `latest:` label
    stored_arch = parse_arch(record.arch)
    if spec.model.arch is None:
        spec.model.arch = stored_arch
    elif _without_init(spec.model.arch.model_dump()) != _without_init(stored_arch.model_dump()):
        # The init may differ (it chooses the prior the weights are compared against); the
        # layers must not, or the checkpoint would not fit.
        raise InputError.at(
            ["model", "arch"],
            "differs from the architecture the model was uploaded with (only 'init' may differ); omit 'arch' to use the stored one",
        )
    return record


def _resolve_dataset(session: Session, spec: RunSpec) -> tuple[DatasetRecord | None, dict | None]:
    """Find the task's dataset; return its record (uploads) and its description for ``preflight``."""
    if spec.task is None:
        return None, None
    ref = spec.task.dataset
    loc = ("task", "dataset")
    if isinstance(ref, PathDatasetRef):
        raise InputError.at([*loc, "path"], "file paths work on the CLI only; upload the file with POST /api/v1/datasets and use {\"id\": ...}")
    if isinstance(ref, UploadedDatasetRef):
        record = session.get(DatasetRecord, ref.id)
        if record is None:
            raise InputError.at([*loc, "id"], f"no uploaded dataset with id '{ref.id}' (see GET /api/v1/datasets)")
        return record, record.description
    assert isinstance(ref, BuiltinDatasetRef)
    # Built-in datasets are small and seeded: generating one validates its params and yields the
    # exact shapes to check against the architecture.
    dataset = load_task_dataset(spec)
    assert dataset is not None
    return None, dataset.describe()


def choose_queue(probes: dict[str, Probe], settings: Settings) -> Queue:
    if settings.gpu_queue and any(probe.benefits_from_gpu for probe in probes.values()):
        return Queue.gpu
    return Queue.cpu


def create_run(
    session: Session, spec: RunSpec, settings: Settings, jobs: JobQueue, created_by: str | None = None
) -> Run:
    """Validate and store a run, then hand it to a worker.

    Raises ``InputError`` (locations relative to the run spec) before anything is stored, and
    ``DispatchError`` if the broker is unreachable (the run is then stored as failed, saying so).
    """
    model = _resolve_model(session, spec)
    dataset, description = _resolve_dataset(session, spec)
    spec = with_data_input(spec, description)
    # The same checks as ``priorprobe run``: one function, so the CLI refuses what the API refuses.
    probes = preflight(spec, description)
    queue = choose_queue(probes, settings)
    run = Run(
        spec=spec.model_dump(mode="json"),
        model_id=model.id if model else None,
        dataset_id=dataset.id if dataset else None,
        queue=queue.value,
        status=RunStatus.queued,
        progress=0.0,
        attempts=0,
        created_by=created_by,
    )
    session.add(run)
    session.commit()  # enqueue only after commit: the worker must find the row
    try:
        jobs.enqueue(RUN, {"run_id": run.id}, queue.value)
    except DispatchError as exc:
        run.status, run.error, run.finished_at = RunStatus.failed, f"not queued: {exc}", utcnow()
        session.commit()
        raise
    return run
