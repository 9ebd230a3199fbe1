from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from app.schemas.timestamps import Timestamp


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    tags: list[str]
    arch: dict
    family: str
    sha256: str
    size_bytes: int
    format: str
    parameter_count: int
    created_at: Timestamp


class ModelCreated(ModelRead):
    already_stored: bool  # the same bytes were uploaded before: stored once, new record


class ModelList(BaseModel):
    data: list[ModelRead]
    count: int
