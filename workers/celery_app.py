"""The Celery application, configured from the same settings object as the API.

Runs are long and GPU-bound, so: one message prefetched at a time, late acks with redelivery if a
worker dies (safe because claiming a run is idempotent, see app/services/run_state.py), hard time
limits, and worker recycling so GPU memory is handed back.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue as KombuQueue

from app.config import Queue, Settings, get_settings

RUN_TASK = "probes.run"
SHARD_TASK = "probes.run_shard"


def create_celery(settings: Settings) -> Celery:
    app = Celery("priorprobe", broker=settings.broker_url, include=["workers.tasks"])
    # The visibility timeout must outlast the longest run, or Redis redelivers a run that is still
    # executing; claiming would then refuse it, but the duplicate would waste a worker slot.
    visibility_timeout = settings.task_time_limit_s + 600
    app.conf.update(
        task_queues=[KombuQueue(queue.value) for queue in Queue],
        task_default_queue=Queue.cpu.value,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # the run row is the status API, not the result backend
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
    return app


celery_app = create_celery(get_settings())
