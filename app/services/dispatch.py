"""Hand a committed run to whatever executes runs: Celery workers, or the embedded thread."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.runtime import Runtime

log = logging.getLogger(__name__)


class DispatchError(RuntimeError):
    """The run could not be handed to a worker (broker unreachable)."""


class Dispatcher(Protocol):
    def submit(self, run_id: str, queue: str) -> None: ...

    def close(self) -> None: ...


class CeleryDispatcher:
    def __init__(self, runtime: Runtime):
        from workers.celery_app import RUN_TASK, create_celery

        self._celery = create_celery(runtime.settings)
        self._task_name = RUN_TASK

    def submit(self, run_id: str, queue: str) -> None:
        try:
            # Only the id travels; the worker reads everything else from the committed row.
            self._celery.send_task(self._task_name, args=[run_id], queue=queue, retry=True,
                                   retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
        except Exception as exc:  # kombu raises several transport-specific types
            raise DispatchError(f"could not reach the broker: {exc}") from exc

    def ping(self) -> None:
        with self._celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def close(self) -> None:
        self._celery.close()


class EmbeddedDispatcher:
    """Runs queued runs one at a time in a background thread of the API process."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="priorprobe-embedded-worker")

    def submit(self, run_id: str, queue: str) -> None:
        from app.services.execution import process_run

        future = self._executor.submit(process_run, run_id, self._runtime, "embedded")
        future.add_done_callback(self._log_crash)

    @staticmethod
    def _log_crash(future) -> None:
        if future.exception() is not None:
            log.error("embedded worker crashed", exc_info=future.exception())

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def make_dispatcher(runtime: Runtime) -> Dispatcher:
    return EmbeddedDispatcher(runtime) if runtime.settings.embedded else CeleryDispatcher(runtime)
