"""What a worker does with a run id: claim it, compute it, record the outcome.

Run by the run job of ``app/jobs/registry.py``, which the Celery worker and the embedded
in-process worker both execute, so both behave identically.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable

import numpy as np
from sqlalchemy.exc import OperationalError

from app.observability import worker_metrics
from app.observability.log_context import bound
from app.orm import RunStatus
from app.runtime import Runtime
from app.services import run_state
from app.services.failures import describe_failure
from app.services.heartbeat import Heartbeat
from app.services.interruption import Guard, Interrupted
from app.services.run_inputs import load_run_inputs
from app.services.sharding import DistributedShardExecutor, SubmitShard
from workers.runner import execute_run, pick_device

log = logging.getLogger(__name__)


class _ThrottledProgress:
    """Writes progress to the run row at most every ``min_interval_s`` (plus the first write), and
    is the job's interruption point: every call checks the guard."""

    def __init__(self, runtime: Runtime, run_id: str, worker: str, guard: Guard, min_interval_s: float = 0.5):
        self._runtime, self._run_id, self._worker, self._guard = runtime, run_id, worker, guard
        self._min_interval_s = min_interval_s
        self._last = float("-inf")

    def __call__(self, fraction: float, message: str) -> None:
        self._guard.check()
        now = time.monotonic()
        if now - self._last >= self._min_interval_s:
            self._last = now
            try:
                run_state.record_progress(self._runtime.session_factory, self._run_id, fraction, message, self._worker)
            except OperationalError:
                # Progress is advisory: a database outage must not fail a computation that can
                # still store its report once the database is back (see _store_with_retries).
                log.warning("progress of run %s not recorded (database unreachable)", self._run_id)


def _store_with_retries(store: Callable[[], bool], give_up_after_s: float) -> bool:
    """Call ``store`` until it stops raising OperationalError, for up to ``give_up_after_s``: a
    computed report is worth waiting for through a short database outage."""
    deadline = time.monotonic() + give_up_after_s
    delay = 0.5
    while True:
        try:
            return store()
        except OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while storing the outcome; retrying in %.1f s", delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def blob_artifact_sink(runtime: Runtime, run_id: str):
    """Stores a probe's arrays as .npy blobs, served by ``GET /api/v1/runs/{id}/artifacts/{name}``."""

    def sink(key: str, array: np.ndarray) -> dict:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        stored = runtime.store.put_chunks([buffer.getvalue()], max_bytes=buffer.tell() + 1, suffix=".npy")
        return {"stored": True, "sha256": stored.sha256, "url": f"/api/v1/runs/{run_id}/artifacts/{key}"}

    return sink


def process_run(run_id: str, runtime: Runtime, worker: str, submit_shard: SubmitShard | None = None) -> str:
    """Claim and execute one run. Returns the outcome: ``succeeded``, ``failed``, ``requeued``
    (interrupted by shutdown and handed back to the queue), ``interrupted`` (another attempt took
    it over) or ``skipped`` (not claimable: finished, or held by a live worker).

    With ``submit_shard`` (a job queue served by several workers), probes that split their work
    spread the shards over every worker; without it (embedded, CLI) shards run here, one after
    another.
    """
    with bound(run_id):
        return _process_run(run_id, runtime, worker, submit_shard)


def _process_run(run_id: str, runtime: Runtime, worker: str, submit_shard: SubmitShard | None) -> str:
    settings, factory = runtime.settings, runtime.session_factory
    if not run_state.claim(factory, run_id, worker, settings.stale_run_after_s):
        log.info("run %s not claimable (finished, or held by a live worker); skipping", run_id)
        return "skipped"

    log.info("run %s claimed by %s", run_id, worker)
    guard = Guard(runtime.stopping)
    beat = Heartbeat(lambda: run_state.heartbeat(factory, run_id, worker), settings.heartbeat_every_s,
                     f"heartbeat-run-{run_id}", on_lost=guard.lose)
    started = time.monotonic()
    try:
        with beat:
            guard.check()
            inputs = load_run_inputs(runtime, run_id)
            shards = None
            if submit_shard is not None:
                shards = DistributedShardExecutor(runtime, run_id, submit_shard, worker)
            report = execute_run(
                inputs.spec,
                weights_path=inputs.weights_path,
                weights_format=inputs.model.format if inputs.model else None,
                dataset=inputs.dataset,
                progress=_ThrottledProgress(runtime, run_id, worker, guard),
                device=pick_device(settings.device),
                run_info={"id": run_id, "model_id": inputs.model.id if inputs.model else None,
                          "model_name": inputs.model.name if inputs.model else None},
                shards=shards,
                artifact_sink=blob_artifact_sink(runtime, run_id),
            )
    except run_state.RunCancelled:
        log.info("run %s was cancelled; stopped at a progress point", run_id)
        return "cancelled"
    except Interrupted as stop:
        worker_metrics.RUN_DURATION.labels(outcome="interrupted").observe(time.monotonic() - started)
        if stop.requeue and run_state.requeue(factory, run_id, worker, f"re-queued: {stop}"):
            log.info("run %s interrupted (%s) and re-queued", run_id, stop)
            return "requeued"
        if run_state.status_of(factory, run_id) == RunStatus.cancelled:
            # The heartbeat saw the cancellation before a progress write did.
            log.info("run %s was cancelled; stopped at a progress point", run_id)
            return "cancelled"
        log.info("run %s interrupted: %s", run_id, stop)
        return "interrupted"
    except OperationalError:
        # The database went away mid-run: not the run's fault. The Celery task retries (the claim
        # lets this worker take back its own run); elsewhere the reaper re-queues it once the
        # heartbeat is stale.
        log.warning("run %s stopped: database unreachable", run_id)
        raise
    except Exception as exc:
        log.exception("run %s failed", run_id)
        worker_metrics.RUN_DURATION.labels(outcome="failed").observe(time.monotonic() - started)
        worker_metrics.RUN_FAILURES.labels(reason=type(exc).__name__).inc()
        _store_with_retries(lambda: run_state.record_failure(factory, run_id, describe_failure(exc), worker),
                            settings.stale_run_after_s)
        return "failed"

    if not _store_with_retries(lambda: run_state.record_success(factory, run_id, report, worker), settings.stale_run_after_s):
        log.warning("run %s finished but another attempt holds it now; result dropped", run_id)
        return "interrupted"
    elapsed = time.monotonic() - started
    log.info("run %s succeeded in %.1f s", run_id, elapsed)
    worker_metrics.RUN_DURATION.labels(outcome="succeeded").observe(elapsed)
    for probe, timing in report.timing.items():
        worker_metrics.PROBE_DURATION.labels(probe=probe).observe(timing.total_s)
    return "succeeded"
