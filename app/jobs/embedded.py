"""The embedded worker: executes jobs one at a time in a background thread of the API process."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from app.jobs.registry import JobContext, execute
from app.runtime import Runtime

log = logging.getLogger(__name__)


class EmbeddedJobQueue:
    parallel = False  # one thread (see JobQueue.parallel)

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="priorprobe-embedded-worker")

    def enqueue(self, kind: str, args: dict[str, Any], queue: str) -> None:
        # ``queue`` routes between kinds of workers; the one embedded worker takes every queue.
        future = self._executor.submit(execute, kind, JobContext(self._runtime, "embedded", self), args)
        future.add_done_callback(self._log_crash)

    @staticmethod
    def _log_crash(future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("embedded worker crashed", exc_info=future.exception())

    def ping(self) -> None:
        return None  # nothing between the API and this worker can be unreachable

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
