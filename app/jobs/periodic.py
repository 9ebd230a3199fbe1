"""Running the recovery jobs (reap, reconcile) every ``recover_every_s``.

They are jobs of the registry like any other, but they run here, in a thread of their own, rather
than as broker messages: a message would wait behind hours-long runs when every worker slot is
busy, and a broker that lost its messages is exactly what the reconciler repairs. Both jobs are
idempotent (conditional updates), so several schedulers (API replicas, a restarted one) are safe.

Where it runs: a thread of ``priorprobe serve`` in the embedded default; in a distributed
deployment, ``priorprobe scheduler`` (the ``scheduler`` service of docker-compose.yml).
"""

from __future__ import annotations

import logging
import threading

from app.jobs.queue import JobQueue
from app.jobs.registry import REAP, RECONCILE, JobContext, execute
from app.runtime import Runtime
from app.services.liveness import worker_id

log = logging.getLogger(__name__)

RECOVERY_JOBS = (REAP, RECONCILE)


class PeriodicJobs(threading.Thread):
    def __init__(self, runtime: Runtime, queue: JobQueue, kinds: tuple[str, ...] = RECOVERY_JOBS):
        super().__init__(name="priorprobe-periodic-jobs", daemon=True)
        self._runtime, self._queue, self._kinds = runtime, queue, kinds
        self._stop_event = threading.Event()

    def run_once(self) -> dict[str, str]:
        """Execute each job once; a job that raises (database down) is logged and retried next period."""
        context = JobContext(self._runtime, worker_id("scheduler"), self._queue)
        outcomes = {}
        for kind in self._kinds:
            try:
                outcomes[kind] = execute(kind, context, {})
            except Exception as exc:
                log.warning("periodic job %s failed: %s", kind, exc)
                outcomes[kind] = f"error: {type(exc).__name__}"
        return outcomes

    def run(self) -> None:
        while not self._stop_event.wait(self._runtime.settings.recover_every_s):
            self.run_once()

    def stop(self) -> None:
        self._stop_event.set()
