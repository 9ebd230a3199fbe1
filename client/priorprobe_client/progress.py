"""Following a run's progress: a bar on a terminal, one line per step otherwise (CI logs)."""

from __future__ import annotations

from typing import TextIO

from priorprobe_client.schemas.runs import RunRead

_BAR = 30


class ProgressDisplay:
    def __init__(self, stream: TextIO, tty: bool | None = None):
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._last: tuple | None = None

    def update(self, run: RunRead) -> None:
        message = run.progress_message or run.status.value
        if self._tty:
            filled = round(_BAR * run.progress)
            self._stream.write(f"\r[{'#' * filled}{'-' * (_BAR - filled)}] {100 * run.progress:5.1f}% {message[:50]:<50}")
            self._stream.flush()
            return
        step = (run.status, message)
        if step != self._last:  # a CI log gets one line per step, not one per poll
            self._last = step
            self._stream.write(f"[{100 * run.progress:5.1f}%] {run.status.value}: {message}\n")
            self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
