"""What a worker does with a run id: claim it, run its probes, record the outcome.

Shared by the Celery task and the embedded in-process worker, so both behave identically.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from app.orm import DatasetRecord, ModelRecord, Run
from app.runtime import Runtime
from app.services import run_state
from workers.errors import InputError
from workers.runner import execute_run, load_task_dataset, pick_device
from workers.runspec import RunSpec

log = logging.getLogger(__name__)


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


class _Heartbeat(threading.Thread):
    """Keeps ``heartbeat_at`` fresh while a probe computes without reporting progress."""

    def __init__(self, runtime: Runtime, run_id: str):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self._runtime, self._run_id = runtime, run_id
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._runtime.settings.heartbeat_every_s):
            try:
                run_state.heartbeat(self._runtime.session_factory, self._run_id)
            except Exception:  # a missed heartbeat is harmless; the next one may succeed
                log.warning("heartbeat for run %s failed", self._run_id, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return f"invalid input: {exc}"
    return f"{type(exc).__name__}: {exc}"


def process_run(run_id: str, runtime: Runtime, worker: str) -> str:
    """Claim and execute one run. Returns the final status, or ``"skipped"`` if not claimable."""
    settings, factory = runtime.settings, runtime.session_factory
    if not run_state.claim(factory, run_id, worker, settings.stale_run_after_s):
        log.info("run %s not claimable (already taken or finished); skipping", run_id)
        return "skipped"

    heartbeat = _Heartbeat(runtime, run_id)
    heartbeat.start()
    try:
        with factory() as session:
            run = session.get(Run, run_id)
            assert run is not None
            spec = RunSpec.model_validate(run.spec)
            model = session.get(ModelRecord, run.model_id) if run.model_id else None
            uploaded_datasets = {run.dataset_id: session.get(DatasetRecord, run.dataset_id)} if run.dataset_id else {}

        def dataset_file(dataset_id: str) -> tuple[Path, str]:
            record = uploaded_datasets.get(dataset_id)
            if record is None:
                raise InputError.at(["task", "dataset", "id"], f"no uploaded dataset with id {dataset_id}")
            return runtime.store.path_for(record.sha256), record.format

        dataset = load_task_dataset(spec, uploaded_dataset_file=dataset_file)
        report = execute_run(
            spec,
            weights_path=runtime.store.path_for(model.sha256) if model else None,
            weights_format=model.format if model else None,
            dataset=dataset,
            progress=_ThrottledProgress(runtime, run_id),
            device=pick_device(settings.device),
            run_info={"id": run_id, "model_id": model.id if model else None, "model_name": model.name if model else None},
        )
    except Exception as exc:
        log.exception("run %s failed", run_id)
        run_state.record_failure(factory, run_id, describe_failure(exc))
        return "failed"
    finally:
        heartbeat.stop()

    if not run_state.record_success(factory, run_id, report):
        log.warning("run %s finished but was no longer running (claimed elsewhere?)", run_id)
        return "skipped"
    return "succeeded"
