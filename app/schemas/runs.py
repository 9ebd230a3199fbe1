from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.orm import RunStatus


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
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunRead(RunSummary):
    spec: dict


class RunList(BaseModel):
    data: list[RunSummary]
    count: int
