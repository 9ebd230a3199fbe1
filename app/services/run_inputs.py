"""A run's inputs, read from its committed row and the blob store: the spec, the uploaded model's
record and checkpoint file, and the task's dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.orm import DatasetRecord, ModelRecord, Run
from app.runtime import Runtime
from models.errors import InputError
from workers.data.dataset import Dataset
from workers.runner import load_task_dataset
from workers.runspec import RunSpec


@dataclass
class RunInputs:
    spec: RunSpec
    model: ModelRecord | None
    weights_path: Path | None
    dataset: Dataset | None

    @property
    def weights_format(self) -> str | None:
        return self.model.format if self.model else None


def load_run_inputs(runtime: Runtime, run_id: str) -> RunInputs:
    """Everything a worker needs for a run (validates the spec, builds or reads the dataset)."""
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
