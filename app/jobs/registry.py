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
from app.runtime import Runtime
from app.services.execution import process_run
from app.services.shards import process_shard
from app.services.webhooks import attempt_delivery, record_run_event

log = logging.getLogger(__name__)

RUN = "run"
SHARD = "shard"
WEBHOOK = "webhook"


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
    if outcome in ("succeeded", "failed"):  # "cancelled" was announced by the cancel request itself
        notify_run_finished(context.runtime, context.queue, args["run_id"])
    return outcome


def _shard(context: JobContext, args: dict[str, Any]) -> str:
    return process_shard(args["shard_id"], context.runtime, context.worker)


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
    )
}


def execute(kind: str, context: JobContext, args: dict[str, Any]) -> str:
    job = JOBS.get(kind)
    if job is None:
        raise LookupError(f"no job kind {kind!r}; known kinds: {sorted(JOBS)}")
    return job.function(context, args)
