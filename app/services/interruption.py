"""Stopping a job at its next progress point, instead of waiting hours for a long probe to end.

Two things stop a job: its process is shutting down (SIGTERM, Ctrl-C; ``Runtime.stopping``), and
then the job hands its run back to the queue; or its heartbeat found that another attempt took the
run over (this worker was presumed dead), and then it just stops, since the run is not its own.
"""

from __future__ import annotations

import threading


class Interrupted(BaseException):
    """Raised at a progress point. A ``BaseException``, like ``KeyboardInterrupt``, so the probes'
    own ``except Exception`` handlers cannot swallow it and the run is not recorded as failed."""

    def __init__(self, reason: str, requeue: bool):
        super().__init__(reason)
        self.requeue = requeue


class Guard:
    """What one job checks at each progress point."""

    def __init__(self, stopping: threading.Event):
        self._stopping = stopping
        self._lost = threading.Event()

    def lose(self) -> None:
        """Called by the heartbeat when the row is no longer held by this worker."""
        self._lost.set()

    def check(self) -> None:
        if self._lost.is_set():
            raise Interrupted("another attempt took the run over", requeue=False)
        if self._stopping.is_set():
            raise Interrupted("the worker is shutting down", requeue=True)
