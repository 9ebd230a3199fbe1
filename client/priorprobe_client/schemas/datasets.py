"""Uploaded datasets."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    sha256: str
    size_bytes: int
    format: str
    description: dict
    created_by: str | None = None
    created_at: datetime


class DatasetCreated(DatasetRead):
    already_stored: bool


class DatasetList(BaseModel):
    data: list[DatasetRead]
    count: int
