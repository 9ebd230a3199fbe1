"""Uploading models and datasets: stream to storage, validate, then record.

The file is streamed into a temporary blob with the size limit enforced chunk by chunk, validated
from there, and only then committed to content-addressed storage and recorded in the database. A
rejected upload leaves nothing behind; the same bytes uploaded twice are stored once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.orm import DatasetRecord, ModelRecord
from app.storage import BlobStore, IncomingBlob
from models.loading import load_checkpoint
from models.registry import build_model, count_parameters
from models.specs import parse_arch
from workers.data.files import load_dataset_file
from models.errors import InputError

CHUNK_BYTES = 1 << 20
MODEL_FORMATS = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt", ".pt2": "pt2"}
DATASET_FORMATS = {".npz": "npz", ".safetensors": "safetensors"}


def file_format(filename: str | None, formats: dict[str, str]) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix not in formats:
        raise InputError.at(
            ["file"], f"file name '{filename}' has no supported extension; use one of {sorted(formats)}"
        )
    return formats[suffix]


def parse_tags(raw: str | None) -> list[str]:
    """Tags as a JSON list (``["a", "b"]``) or a comma-separated string (``a,b``)."""
    if not raw or not raw.strip():
        return []
    if raw.lstrip().startswith("["):
        try:
            tags = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError.at(["tags"], f"not valid JSON: {exc}") from None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InputError.at(["tags"], "must be a JSON list of strings or a comma-separated string")
    else:
        tags = raw.split(",")
    tags = [t.strip() for t in tags if t.strip()]
    if any(len(t) > 64 for t in tags) or len(tags) > 64:
        raise InputError.at(["tags"], "at most 64 tags of at most 64 characters each")
    return tags


@dataclass(frozen=True)
class ModelProvenance:
    """Where a checkpoint came from, as the uploader (usually a CI job) reports it."""

    version: str | None = None
    commit: str | None = None
    branch: str | None = None
    ci_url: str | None = None


@contextmanager
def _staged_upload(store: BlobStore, handle: BinaryIO, max_bytes: int, fmt: str) -> Iterator[IncomingBlob]:
    """Copy the upload into a temporary blob; the caller validates ``blob.path`` then commits."""
    with store.begin(max_bytes, suffix="." + fmt) as blob:
        while chunk := handle.read(CHUNK_BYTES):
            blob.write(chunk)
        blob.flush()
        yield blob


def create_model(
    session: Session,
    store: BlobStore,
    *,
    handle: BinaryIO,
    filename: str | None,
    arch_json: str,
    name: str | None,
    tags: str | None,
    max_bytes: int,
    provenance: ModelProvenance = ModelProvenance(),
    created_by: str | None = None,
) -> tuple[ModelRecord, bool]:
    """Validate the arch and the checkpoint against it; return (record, bytes already stored)."""
    try:
        arch = parse_arch(arch_json)
    except ValidationError as exc:
        raise InputError.from_validation(exc, prefix=["arch"]) from None
    fmt = file_format(filename, MODEL_FORMATS)
    tag_list = parse_tags(tags)
    with _staged_upload(store, handle, max_bytes, fmt) as blob:
        model = build_model(arch, seed=0)
        load_checkpoint(blob.path, model, format=fmt)  # raises CheckpointMismatch listing every problem
        stored = blob.commit()
    record = ModelRecord(
        name=(name or Path(filename or "model").stem)[:200],
        tags=tag_list,
        arch=arch.model_dump(mode="json"),
        family=arch.name,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        format=fmt,
        parameter_count=count_parameters(model),
        created_by=created_by,
        **{field: (value or None) for field, value in asdict(provenance).items()},
    )
    session.add(record)
    session.commit()
    return record, stored.already_stored


def create_dataset(
    session: Session,
    store: BlobStore,
    *,
    handle: BinaryIO,
    filename: str | None,
    name: str | None,
    max_bytes: int,
    created_by: str | None = None,
) -> tuple[DatasetRecord, bool]:
    fmt = file_format(filename, DATASET_FORMATS)
    with _staged_upload(store, handle, max_bytes, fmt) as blob:
        display_name = (name or Path(filename or "dataset").stem)[:200]
        dataset = load_dataset_file(blob.path, name=display_name, format=fmt)
        stored = blob.commit()
    record = DatasetRecord(
        name=display_name,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        format=fmt,
        description=dataset.describe(),
        created_by=created_by,
    )
    session.add(record)
    session.commit()
    return record, stored.already_stored
