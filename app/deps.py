"""Request dependencies as ``Annotated`` aliases so routes read as typed parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.runtime import Runtime
from app.jobs.queue import JobQueue


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    with runtime.session_factory() as session:
        yield session


def get_jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
JobQueueDep = Annotated[JobQueue, Depends(get_jobs)]
