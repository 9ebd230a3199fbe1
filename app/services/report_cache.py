"""Report bytes kept in memory, least recently used first out, bounded in bytes.

A report is written once, in the transaction that marks its run succeeded, and never changed
afterwards (``record_success`` only moves a *running* run to succeeded). So its stored JSON text
and ETag can be kept and served without touching the database or a worker thread: under load,
reads of the same reports (dashboards polling, CI comparing runs) cost one dictionary lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedReport:
    etag: str
    body: bytes


class ReportCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedReport] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # filled from worker threads, read on the event loop

    def get(self, run_id: str) -> CachedReport | None:
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is not None:
                self._entries.move_to_end(run_id)
            return entry

    def put(self, run_id: str, entry: CachedReport) -> None:
        if len(entry.body) > self.max_bytes:
            return  # larger than the whole cache: served from the database each time
        with self._lock:
            previous = self._entries.pop(run_id, None)
            if previous is not None:
                self._bytes -= len(previous.body)
            self._entries[run_id] = entry
            self._bytes += len(entry.body)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.body)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
