"""Every kind of background job, written once.

A job is a function of a ``JobContext`` (the process's runtime, this worker's name, the queue to
enqueue follow-up jobs on) and its JSON args, returning a one-word outcome for the logs. Celery
workers register one task per entry (``app/jobs/celery_app.py``) and the embedded worker runs the
same entries in a thread (``app/jobs/embedded.py``), so a new kind of job is one function here.
Messages may be delivered twice, so every job must be idempotent (claims are conditional UPDATEs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config import Queue
from app.jobs.queue import DispatchError, JobQueue
from app.observability import worker_metrics
from app.runtime import Runtime
from app.services import run_state, shard_state
from app.services.execution import process_run
from app.services.shards import process_shard
from app.services.webhooks import attempt_delivery, record_run_event

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

RUN = "run"
SHARD = "shard"
WEBHOOK = "webhook"
REAP = "reap"
RECONCILE = "reconcile"


@dataclass(frozen=True)
class JobContext:
    runtime: Runtime
    worker: str
    queue: JobQueue


JobFunction = Callable[[JobContext, dict[str, Any]], str]


@dataclass(frozen=True)
class Job:
    kind: str
    function: JobFunction
    summary: str


def _run(context: JobContext, args: dict[str, Any]) -> str:
    submit_shard = None
    if context.queue.parallel:
        def submit_shard(shard_id: str, queue: str) -> None:
            context.queue.enqueue(SHARD, {"shard_id": shard_id}, queue)
    outcome = process_run(args["run_id"], context.runtime, context.worker, submit_shard=submit_shard)
    if outcome == "requeued":
        _enqueue_again(context, RUN, args, run_state.queue_of(context.runtime.session_factory, args["run_id"]))
    if outcome in ("succeeded", "failed"):  # "cancelled" was announced by the cancel request itself
        notify_run_finished(context.runtime, context.queue, args["run_id"])
    return outcome


def _shard(context: JobContext, args: dict[str, Any]) -> str:
    outcome = process_shard(args["shard_id"], context.runtime, context.worker)
    if outcome == "requeued":
        _enqueue_again(context, SHARD, args, shard_state.queue_of(context.runtime.session_factory, args["shard_id"]))
    return outcome


def _enqueue_again(context: JobContext, kind: str, args: dict[str, Any], queue: str) -> None:
    """Send a new message for work handed back to the queue. If that fails (broker down, embedded
    worker shutting down) the row still says ``queued``: the reconciler (or the next embedded
    start) enqueues it, so nothing is lost."""
    try:
        context.queue.enqueue(kind, args, queue)
    except DispatchError as exc:
        log.warning("%s %s re-queued in the database only: %s", kind, args, exc)


def _reap(context: JobContext, args: dict[str, Any]) -> str:
    """Runs and shards whose holder is dead go back to the queue (a run only ``max_run_attempts``
    times, then it fails with the reason)."""
    settings, factory = context.runtime.settings, context.runtime.session_factory
    reaped = run_state.reap(factory, settings.stale_run_after_s, settings.max_run_attempts)
    for run_id, queue in reaped.requeued:
        _enqueue_again(context, RUN, {"run_id": run_id}, queue)
    shards = shard_state.reap(factory, settings.stale_run_after_s)
    for shard_id, queue in shards:
        _enqueue_again(context, SHARD, {"shard_id": shard_id}, queue)
    for run_id in reaped.failed:
        worker_metrics.RUN_FAILURES.labels(reason="worker_lost").inc()
        notify_run_finished(context.runtime, context.queue, run_id)
    if reaped.requeued or reaped.failed or shards:
        log.warning("reaper: re-queued runs %s, failed runs %s, re-queued shards %s",
                    [run_id for run_id, _ in reaped.requeued], reaped.failed, [shard_id for shard_id, _ in shards])
    return f"requeued {len(reaped.requeued)} runs, failed {len(reaped.failed)}, requeued {len(shards)} shards"


def _reconcile(context: JobContext, args: dict[str, Any]) -> str:
    """Runs queued for ``requeue_after_s`` with no message in the broker (lost in a broker restart,
    or never sent) get a message. A duplicate is harmless: only one claim succeeds."""
    settings = context.runtime.settings
    waiting = {job.get("run_id") for job in context.queue.waiting(RUN)}
    missing = [(run_id, queue) for run_id, queue in run_state.queued_before(context.runtime.session_factory, settings.requeue_after_s)
               if run_id not in waiting]
    for run_id, queue in missing:
        _enqueue_again(context, RUN, {"run_id": run_id}, queue)
    if missing:
        log.warning("reconciler: enqueued %d queued runs that had no message: %s", len(missing), [r for r, _ in missing])
    return f"enqueued {len(missing)} runs"


def _webhook(context: JobContext, args: dict[str, Any]) -> str:
    attempt = args["attempt"]
    delay = attempt_delivery(context.runtime, args["delivery_id"], attempt)
    if delay is None:
        return "done"
    context.queue.enqueue(WEBHOOK, {"delivery_id": args["delivery_id"], "attempt": attempt + 1}, Queue.cpu.value, delay_s=delay)
    return "retry scheduled"


def notify_run_finished(runtime: Runtime, queue: JobQueue, run_id: str) -> None:
    """Queue a delivery job for every webhook that wants this run's final status.

    Called after the status is committed, never inside the run's transaction: a slow or dead
    receiver cannot hold up a run, and the run's outcome stands whatever the deliveries do.
    """
    with runtime.session_factory() as session:
        delivery_ids = record_run_event(session, run_id)
    for delivery_id in delivery_ids:
        try:
            queue.enqueue(WEBHOOK, {"delivery_id": delivery_id, "attempt": 1}, Queue.cpu.value)
        except DispatchError:
            log.exception("webhook delivery %s of run %s could not be queued; it stays pending", delivery_id, run_id)


JOBS: dict[str, Job] = {
    job.kind: job
    for job in (
        Job(RUN, _run, "claim a queued run, execute its probes, store the report"),
        Job(SHARD, _shard, "compute one shard of a running run, if no other worker has"),
        Job(WEBHOOK, _webhook, "make one attempt of a webhook delivery; queue the next after a backoff if it failed"),
        Job(REAP, _reap, "re-queue (or, after max_run_attempts, fail) runs and shards whose worker died"),
        Job(RECONCILE, _reconcile, "enqueue queued runs that have no message in the broker"),
    )
}


def execute(kind: str, context: JobContext, args: dict[str, Any]) -> str:
    job = JOBS.get(kind)
    if job is None:
        raise LookupError(f"no job kind {kind!r}; known kinds: {sorted(JOBS)}")
    outcome = job.function(context, args)
    worker_metrics.JOBS.labels(kind=kind, outcome=outcome if kind in (RUN, SHARD) else "done").inc()
    return outcome
