"""Writes wait for a database at the Alembic head: a deployment that forgot ``priorprobe db
upgrade`` answers a 503 naming the fix, not a 500 ``no such table`` on every write.

The check runs at start-up and again on a write while the schema is wrong (at most every
``_RECHECK_S``), so running the migration fixes the API without a restart.
"""

from __future__ import annotations

import logging
import threading
import time

from fastapi import FastAPI, Request

from app.api.errors import DATABASE_DOWN, dependency_down_response
from app.migrate import schema_problem
from app.runtime import Runtime

log = logging.getLogger(__name__)
_RECHECK_S = 5.0
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class SchemaState:
    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._lock = threading.Lock()
        self.problem: str | None = "not checked yet"
        self._checked_at = float("-inf")

    def check(self) -> str | None:
        """Check now; None when at head. A database that cannot be reached raises (callers answer 503)."""
        problem = schema_problem(self._runtime.engine)
        with self._lock:
            self.problem, self._checked_at = problem, time.monotonic()
        return problem

    def current_problem(self) -> str | None:
        if self.problem is not None and time.monotonic() - self._checked_at >= _RECHECK_S:
            return self.check()
        return self.problem


def install_schema_guard(app: FastAPI, state: SchemaState) -> None:
    @app.middleware("http")
    async def _refuse_writes_on_old_schema(request: Request, call_next):
        if request.method in _WRITES and request.url.path.startswith("/api/"):
            try:
                problem = state.current_problem()
            except DATABASE_DOWN as exc:
                # Raised in a middleware, outside the app's exception handlers: answer here.
                return dependency_down_response(f"the database is unreachable ({type(exc).__name__}); retry later")
            if problem is not None:
                return dependency_down_response(problem)
        return await call_next(request)
