"""A background thread that keeps a row's heartbeat fresh while long work runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.observability import worker_metrics
from app.observability.log_context import copy_context_into_thread

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``every_s`` while long work runs without reporting progress.

    ``beat`` returns False when the row is no longer held by this worker; ``on_lost`` is then
    called once (the job stops at its next progress point, see app/services/interruption.py).
    """

    def __init__(self, beat: Callable[[], bool], every_s: float, name: str, on_lost: Callable[[], None] | None = None):
        super().__init__(name=name, daemon=True)
        self._beat, self._every_s, self._on_lost = beat, every_s, on_lost
        self._stop_event = threading.Event()
        self._enter_context = copy_context_into_thread()

    def run(self) -> None:
        self._enter_context()
        while not self._stop_event.wait(self._every_s):
            try:
                held = self._beat()
            except Exception:  # a missed heartbeat is harmless; the next one may succeed
                worker_metrics.HEARTBEATS.labels(outcome="error").inc()
                log.warning("%s failed", self.name, exc_info=True)
                continue
            worker_metrics.HEARTBEATS.labels(outcome="ok" if held else "lost").inc()
            if not held:
                if self._on_lost is not None:
                    self._on_lost()
                return

    def __enter__(self) -> "Heartbeat":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop_event.set()
