"""Sync routes release their database connection in their own thread, before the response is built.

FastAPI runs a sync endpoint on a thread of the default pool, then validates and serialises its
return value on *another* thread of that pool, and only then exits the function-scoped
dependencies that close the session. Under load every pooled thread ends up waiting for a
database connection while the connections are held by requests that finished their query and wait
for a thread to serialise their response: the collapse measured in issue 14 (54 connections "idle
in transaction", pool timeouts, no request completing). Closing the endpoint's sessions in the
endpoint's own thread, as its last step, breaks that cycle: a connection is held only while a
thread is using it. Endpoints build their pydantic responses inside the function, so nothing is
lazily loaded after the close.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import Session


def closing_sessions(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        finally:
            for value in kwargs.values():
                if isinstance(value, Session):
                    value.close()

    return run


class SessionRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = closing_sessions(endpoint)
        super().__init__(path, endpoint, **kwargs)
