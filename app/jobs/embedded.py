"""The embedded worker: executes jobs one at a time in a background thread of the API process."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from app.jobs.queue import DispatchError
from app.jobs.registry import JobContext, execute
from app.services.liveness import worker_id
from app.runtime import Runtime

log = logging.getLogger(__name__)


class EmbeddedJobQueue:
    parallel = False  # one thread (see JobQueue.parallel)

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="priorprobe-embedded-worker")
        self._worker = worker_id("embedded")
        self._waiting: Counter[tuple[str, str]] = Counter()  # (kind, args as JSON) submitted, not finished
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()

    def enqueue(self, kind: str, args: dict[str, Any], queue: str, delay_s: float = 0.0) -> None:
        # ``queue`` routes between kinds of workers; the one embedded worker takes every queue.
        if delay_s > 0:
            # A timer, not a sleep in the worker thread: runs keep going while a retry waits.
            timer = threading.Timer(delay_s, self._enqueue_later, args=(kind, args, queue))
            timer.daemon = True
            with self._lock:
                self._timers.add(timer)
            timer.start()
            return
        key = (kind, json.dumps(args, sort_keys=True))
        with self._lock:
            self._waiting[key] += 1
        try:
            future = self._executor.submit(self._execute, key, kind, args)
        except RuntimeError as exc:  # shut down: the next start resumes what is queued
            with self._lock:
                self._waiting[key] -= 1
            raise DispatchError(f"the embedded worker is shutting down ({exc})") from exc
        future.add_done_callback(self._log_crash)

    def _execute(self, key: tuple[str, str], kind: str, args: dict[str, Any]) -> str:
        try:
            return execute(kind, JobContext(self._runtime, self._worker, self), args)
        finally:
            with self._lock:
                self._waiting[key] -= 1

    def waiting(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(args) for (k, args), count in self._waiting.items() if k == kind and count > 0]

    def _enqueue_later(self, kind: str, args: dict[str, Any], queue: str) -> None:
        with self._lock:
            self._timers.discard(threading.current_thread())  # type: ignore[arg-type]
        try:
            self.enqueue(kind, args, queue)
        except DispatchError:
            log.info("embedded worker closed before a delayed %s job was due; dropped", kind)

    @staticmethod
    def _log_crash(future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("embedded worker crashed", exc_info=future.exception())

    def ping(self) -> None:
        return None  # nothing between the API and this worker can be unreachable

    def close(self) -> None:
        # The running job stops at its next progress point and re-queues its run (resumed at the
        # next start), so shutting down takes seconds, not the rest of a long run.
        self._runtime.stopping.set()
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
