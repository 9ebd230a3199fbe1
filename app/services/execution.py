"""What a worker does with a run id: claim it, compute it, record the outcome.

Run by the run job of ``app/jobs/registry.py``, which the Celery worker and the embedded
in-process worker both execute, so both behave identically.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np

from app.runtime import Runtime
from app.services import run_state
from app.services.failures import describe_failure
from app.services.heartbeat import Heartbeat
from app.services.run_inputs import load_run_inputs
from app.services.sharding import DistributedShardExecutor, SubmitShard
from workers.runner import execute_run, pick_device

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


def blob_artifact_sink(runtime: Runtime, run_id: str):
    """Stores a probe's arrays as .npy blobs, served by ``GET /api/v1/runs/{id}/artifacts/{name}``."""

    def sink(key: str, array: np.ndarray) -> dict:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        stored = runtime.store.put_chunks([buffer.getvalue()], max_bytes=buffer.tell() + 1, suffix=".npy")
        return {"stored": True, "sha256": stored.sha256, "url": f"/api/v1/runs/{run_id}/artifacts/{key}"}

    return sink


def process_run(run_id: str, runtime: Runtime, worker: str, submit_shard: SubmitShard | None = None) -> str:
    """Claim and execute one run. Returns the final status, or ``"skipped"`` if not claimable.

    With ``submit_shard`` (a job queue served by several workers), probes that split their work
    spread the shards over every worker; without it (embedded, CLI) shards run here, one after
    another.
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
