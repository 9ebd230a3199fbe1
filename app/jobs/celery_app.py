"""The Celery application: configured from the same settings object as the API, with one task
per job kind of ``app/jobs/registry.py``.

Runs are long and GPU-bound, so: one message prefetched at a time, late acks with redelivery if a
worker dies (safe because every job is idempotent, see app/services/run_state.py), hard time
limits, and worker recycling so GPU memory is handed back.

``priorprobe worker`` starts a worker; ``celery -A app.jobs.celery_app:celery_app ...`` (inspect,
events) finds the same app built from the environment.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from celery import Celery, signals
from kombu import Queue as KombuQueue
from sqlalchemy.exc import OperationalError

from app.config import Queue, Settings, get_settings
from app.jobs.celery_queue import CeleryJobQueue, task_name
from app.jobs.registry import JOBS, JobContext, execute
from app.runtime import Runtime
from app.services.liveness import worker_id

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


@contextmanager
def _sigterm_stops_jobs(runtime: Runtime) -> Iterator[None]:
    """In a prefork pool child, SIGTERM during a job sets ``runtime.stopping`` instead of exiting.

    Installed per job, because billiard installs its own exit-at-once handler after the child
    starts; restored afterwards, so an idle child still exits on SIGTERM. The solo and threads
    pools run jobs in the main process, whose SIGTERM is Celery's own warm shutdown (see
    ``_stop_jobs_on_shutdown``): left alone.
    """
    from billiard.process import current_process

    if current_process().name == "MainProcess" or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: runtime.stopping.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _register(app: Celery, kind: str, runtime) -> None:
    def task(self, **args: Any) -> str:
        # Each pool child has its own worker id (node/host/pid): the claim can then tell that the
        # child holding a run died, though its node lives on.
        context = JobContext(runtime(), worker_id(self.request.hostname or "celery"), CeleryJobQueue(self.app))
        with _sigterm_stops_jobs(runtime()):
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
    _stop_jobs_on_shutdown(runtime)
    return app


def _stop_jobs_on_shutdown(runtime) -> None:
    """SIGTERM (or Ctrl-C) on a worker: its running jobs stop at their next progress point and
    re-queue their runs, so the worker exits in seconds instead of after the current run.

    Celery's warm shutdown waits for the pool children's current tasks. So the parent sends
    SIGTERM to its children when it starts shutting down, and a child executing a job handles
    SIGTERM by setting ``Runtime.stopping`` (``_sigterm_stops_jobs``).
    """

    def shutting_down(**_: Any) -> None:
        runtime().stopping.set()  # the solo and threads pools run jobs in this process
        from billiard import process

        for child in process.active_children():
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signals.worker_shutting_down.connect(shutting_down, weak=False, dispatch_uid="priorprobe-shutting-down")


@cache
def _app_from_environment() -> Celery:
    return create_celery(get_settings())


def __getattr__(name: str) -> Celery:
    # Built on first access rather than on import, so importing ``create_celery`` (the API does)
    # does not build a second app from the environment.
    if name == "celery_app":
        return _app_from_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
