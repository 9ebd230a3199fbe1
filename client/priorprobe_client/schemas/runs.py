"""Runs as the API serves them (``RunRead``) and their statuses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: RunStatus
    progress: float
    progress_message: str | None
    error: str | None
    timing: dict[str, Any] | None
    queue: str
    attempts: int
    model_id: str | None
    dataset_id: str | None
    spec: dict
    created_by: str | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunList(BaseModel):
    data: list[RunRead]
    count: int
