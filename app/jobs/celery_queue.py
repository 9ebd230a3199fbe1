"""Delivering jobs through a Celery broker: one message per job, named after its kind."""

from __future__ import annotations

import base64
import json
from typing import Any

from celery import Celery

from app.config import Queue

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

    def waiting(self, kind: str) -> list[dict[str, Any]]:
        """Read from Redis (the supported broker): every queue's list and kombu's ``unacked`` hash."""
        name = task_name(kind)
        with self._celery.connection_for_read() as connection:
            client = connection.default_channel.client
            raw = [message for queue in Queue for message in client.lrange(queue.value, 0, -1)]
            raw += [json.loads(entry)[0] for entry in client.hvals("unacked")]
        found = []
        for message in raw:
            payload = json.loads(message) if isinstance(message, (bytes, str)) else message
            if payload.get("headers", {}).get("task") != name:
                continue
            body = payload["body"]
            if payload.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            _args, kwargs, _embed = json.loads(body)
            found.append(kwargs)
        return found

    def ping(self) -> None:
        with self._celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def close(self) -> None:
        self._celery.close()
