"""Every kind of background job, written once.

A job is a function of a ``JobContext`` (the process's runtime, this worker's name, the queue to
enqueue follow-up jobs on) and its JSON args, returning a one-word outcome for the logs. Celery
workers register one task per entry (``app/jobs/celery_app.py``) and the embedded worker runs the
same entries in a thread (``app/jobs/embedded.py``), so a new kind of job is one function here.
Messages may be delivered twice, so every job must be idempotent (claims are conditional UPDATEs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.jobs.queue import JobQueue
from app.runtime import Runtime
from app.services.execution import process_run
from app.services.shards import process_shard

RUN = "run"
SHARD = "shard"


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
    return process_run(args["run_id"], context.runtime, context.worker, submit_shard=submit_shard)


def _shard(context: JobContext, args: dict[str, Any]) -> str:
    return process_shard(args["shard_id"], context.runtime, context.worker)


JOBS: dict[str, Job] = {
    job.kind: job
    for job in (
        Job(RUN, _run, "claim a queued run, execute its probes, store the report"),
        Job(SHARD, _shard, "compute one shard of a running run, if no other worker has"),
    )
}


def execute(kind: str, context: JobContext, args: dict[str, Any]) -> str:
    job = JOBS.get(kind)
    if job is None:
        raise LookupError(f"no job kind {kind!r}; known kinds: {sorted(JOBS)}")
    return job.function(context, args)
