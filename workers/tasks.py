"""Celery tasks: thin adapters from a message (a run id) to ``app.services.execution``."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.runtime import Runtime
from app.services.execution import process_run, process_shard
from workers.celery_app import RUN_TASK, SHARD_TASK, celery_app


@lru_cache(maxsize=1)
def worker_runtime() -> Runtime:
    # One engine per worker process; built lazily so forked children do not share connections.
    return Runtime(get_settings())


# Both tasks are idempotent (claims are conditional UPDATEs), so late acks and redelivery are safe.
# Only a database that is briefly unreachable is worth retrying; probe errors are recorded.
_TASK_OPTIONS = dict(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=120,
    max_retries=5,
)


@celery_app.task(name=RUN_TASK, **_TASK_OPTIONS)
def run_probes(self, run_id: str) -> str:
    return process_run(run_id, worker_runtime(), worker=self.request.hostname or "celery", submit_shard=_submit_shard)


@celery_app.task(name=SHARD_TASK, **_TASK_OPTIONS)
def run_shard(self, shard_id: str) -> str:
    return process_shard(shard_id, worker_runtime(), worker=self.request.hostname or "celery")


def _submit_shard(shard_id: str, queue: str) -> None:
    run_shard.apply_async(args=[shard_id], queue=queue)
