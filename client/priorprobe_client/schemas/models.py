"""Uploaded models: a lineage ``name``, an optional ``version`` and the git provenance of the upload."""

from __future__ import annotations


from pydantic import BaseModel, ConfigDict

from priorprobe_client.schemas.timestamps import Timestamp

# Anywhere a model id is accepted, ``latest:<name>`` means the newest model of that lineage.
LATEST_PREFIX = "latest:"


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    version: str | None = None
    commit: str | None = None
    branch: str | None = None
    ci_url: str | None = None
    tags: list[str]
    arch: dict
    family: str
    sha256: str
    size_bytes: int
    format: str
    parameter_count: int
    created_by: str | None = None
    conversion: dict | None = None  # ONNX uploads: agreement with onnxruntime, checked at upload
    created_at: Timestamp


class ModelCreated(ModelRead):
    already_stored: bool  # the same bytes were uploaded before: stored once, new record


class ModelList(BaseModel):
    data: list[ModelRead]
    count: int
