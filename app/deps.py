"""Request dependencies as ``Annotated`` aliases so routes read as typed parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.jobs.queue import JobQueue
from app.runtime import Runtime


# Plain attribute reads: async so they never wait for a thread of the (possibly busy) pool.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_session(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[Session]:
    """A session for one route. Routes of ``SessionRoute`` close it in their own thread as their
    last step (see ``app/api/session_route.py``); this close is the safety net.

    Creating a session does no I/O, so it happens on the event loop, and so does closing one that
    holds no connection. Closing one that does (rollback, return the connection) runs in a thread,
    but not one of the default pool that serves the routes, which may all be waiting for a
    connection that only this close would return.
    """
    session = runtime.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await anyio.to_thread.run_sync(session.close, limiter=request.app.state.session_close_limiter)
        else:
            session.close()


async def get_jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
# scope="function": the session (and its connection) is closed as soon as the route returns, not
# after the response has been sent; holding connections across slow clients starved the pool.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
JobQueueDep = Annotated[JobQueue, Depends(get_jobs)]
