"""The long-lived objects a process needs, built once from the settings: engine, sessions, store,
and the cache of runs prepared for computing shards."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, make_session_factory
from app.services.prepared_runs import PreparedRunCache
from app.services.report_cache import ReportCache
from app.storage import BlobStore


@dataclass
class Runtime:
    settings: Settings
    # Set when the process shuts down: jobs stop at their next progress point and re-queue their run.
    stopping: threading.Event = field(default_factory=threading.Event)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def store(self) -> BlobStore:
        return BlobStore(self.settings.resolved_storage_dir)

    @cached_property
    def prepared_runs(self) -> PreparedRunCache:
        return PreparedRunCache()

    @cached_property
    def report_cache(self) -> ReportCache:
        return ReportCache(self.settings.report_cache_bytes)

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
