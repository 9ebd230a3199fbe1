"""Delivering jobs through a Celery broker: one message per job, named after its kind."""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.jobs.queue import DispatchError


def task_name(kind: str) -> str:
    return f"priorprobe.{kind}"


class CeleryJobQueue:
    parallel = True  # every worker consuming the queue may take a message

    def __init__(self, celery: Celery):
        self._celery = celery

    def enqueue(self, kind: str, args: dict[str, Any], queue: str, delay_s: float = 0.0) -> None:
        try:
            # Only ids travel; the worker reads everything else from committed rows.
            self._celery.send_task(task_name(kind), kwargs=args, queue=queue, retry=True, countdown=delay_s or None,
                                   retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
        except Exception as exc:  # kombu raises several transport-specific types
            raise DispatchError(f"could not reach the broker: {exc}") from exc

    def ping(self) -> None:
        with self._celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def close(self) -> None:
        self._celery.close()
