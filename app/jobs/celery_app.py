"""The Celery application: configured from the same settings object as the API, with one task
per job kind of ``app/jobs/registry.py``.

Runs are long and GPU-bound, so: one message prefetched at a time, late acks with redelivery if a
worker dies (safe because every job is idempotent, see app/services/run_state.py), hard time
limits, and worker recycling so GPU memory is handed back.

``priorprobe worker`` starts a worker; ``celery -A app.jobs.celery_app:celery_app ...`` (inspect,
events) finds the same app built from the environment.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery
from kombu import Queue as KombuQueue
from sqlalchemy.exc import OperationalError

from app.config import Queue, Settings, get_settings
from app.jobs.celery_queue import CeleryJobQueue, task_name
from app.jobs.registry import JOBS, JobContext, execute
from app.runtime import Runtime

# Every job is idempotent, so late acks and redelivery are safe. Only a database that is briefly
# unreachable is worth retrying; job errors are recorded in their rows.
_TASK_OPTIONS = dict(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=120,
    max_retries=5,
)


def _register(app: Celery, kind: str, runtime) -> None:
    def task(self, **args: Any) -> str:
        context = JobContext(runtime(), self.request.hostname or "celery", CeleryJobQueue(self.app))
        return execute(kind, context, args)

    task.__name__ = task.__qualname__ = f"job_{kind}"
    app.task(name=task_name(kind), **_TASK_OPTIONS)(task)


def create_celery(settings: Settings) -> Celery:
    app = Celery("priorprobe", broker=settings.broker_url, set_as_current=False)
    # The visibility timeout must outlast the longest run, or Redis redelivers a run that is still
    # executing; claiming would then refuse it, but the duplicate would waste a worker slot.
    visibility_timeout = settings.task_time_limit_s + 600
    app.conf.update(
        task_queues=[KombuQueue(queue.value) for queue in Queue],
        task_default_queue=Queue.cpu.value,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # the rows are the status API, not the result backend
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(settings.task_time_limit_s - 60, 1),
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility_timeout},
    )

    @cache
    def runtime() -> Runtime:
        # One engine (and one cache of prepared runs) per process, built on the first job, so
        # forked pool children never share database connections with their parent.
        return Runtime(settings)

    for kind in JOBS:
        _register(app, kind, runtime)
    return app


@cache
def _app_from_environment() -> Celery:
    return create_celery(get_settings())


def __getattr__(name: str) -> Celery:
    # Built on first access rather than on import, so importing ``create_celery`` (the API does)
    # does not build a second app from the environment.
    if name == "celery_app":
        return _app_from_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
