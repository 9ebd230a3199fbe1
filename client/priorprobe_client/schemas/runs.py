"""Runs as the API serves them (``RunRead``, ``RunSummary`` in lists) and their statuses."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from priorprobe_client.schemas.timestamps import Timestamp


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


class RunSummary(BaseModel):
    """A run as listed: status and links, without the spec (a spec can be large, e.g. a long
    ``task.input_permutation``; ``GET /runs/{id}`` has it)."""

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
    created_by: str | None = None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class RunRead(RunSummary):
    spec: dict


class RunList(BaseModel):
    data: list[RunSummary]
    count: int
