"""A background thread that keeps a row's heartbeat fresh while long work runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``every_s`` while long work runs without reporting progress."""

    def __init__(self, beat: Callable[[], None], every_s: float, name: str):
        super().__init__(name=name, daemon=True)
        self._beat, self._every_s = beat, every_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._every_s):
            try:
                self._beat()
            except Exception:  # a missed heartbeat is harmless; the next one may succeed
                log.warning("%s failed", self.name, exc_info=True)

    def __enter__(self) -> "Heartbeat":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop_event.set()
