from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


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
    conversion: dict | None = None  # ONNX uploads: agreement with onnxruntime, checked at upload
    created_at: datetime


class ModelCreated(ModelRead):
    already_stored: bool  # the same bytes were uploaded before: stored once, new record


class ModelList(BaseModel):
    data: list[ModelRead]
    count: int
