"""Uploaded models: ``POST /models`` (multipart), ``GET /models``, ``GET /models/{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from sqlalchemy import func, select

from app.deps import RuntimeDep, SessionDep
from app.orm import DatasetRecord, ModelRecord
from app.schemas.models import ModelCreated, ModelList, ModelRead
from app.services.uploads import create_model
from models.errors import InputError

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelCreated, operation_id="create_model")
def upload_model(
    session: SessionDep,
    runtime: RuntimeDep,
    file: Annotated[
        UploadFile,
        File(description="Checkpoint: .safetensors (preferred), a weights-only .pt state dict, a .pt2, or an .onnx graph."),
    ],
    arch: Annotated[
        str | None, Form(description='Architecture spec as JSON, e.g. {"name": "mlp", "in_dim": 64, ...}; none for .onnx.')
    ] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    tags: Annotated[str | None, Form(description="JSON list or comma-separated.")] = None,
    dataset: Annotated[
        str | None,
        Form(description=".onnx only: an uploaded dataset id whose samples bind dynamic input axes and feed the onnxruntime check."),
    ] = None,
) -> ModelCreated:
    dataset_record = None
    if dataset:
        dataset_record = session.get(DatasetRecord, dataset)
        if dataset_record is None:
            raise InputError.at(["dataset"], f"no uploaded dataset with id '{dataset}'")
    record, already_stored = create_model(
        session,
        runtime.store,
        handle=file.file,
        filename=file.filename,
        arch_json=arch,
        name=name,
        tags=tags,
        max_bytes=runtime.settings.max_upload_bytes,
        graph_limits=runtime.settings.graph_limits(),
        dataset=dataset_record,
        dataset_path=runtime.store.path_for(dataset_record.sha256) if dataset_record else None,
    )
    return ModelCreated.model_validate({**ModelRead.model_validate(record).model_dump(), "already_stored": already_stored})


@router.get("", response_model=ModelList, operation_id="list_models")
def list_models(
    session: SessionDep,
    family: str | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ModelList:
    filters = [ModelRecord.family == family] if family else []
    ordered = select(ModelRecord).where(*filters).order_by(ModelRecord.created_at.desc(), ModelRecord.id)
    if tag:
        # Tags are a JSON list; filtering them in Python keeps one code path for SQLite and
        # PostgreSQL. Fine at registry scale; move to a JSONB containment query if that changes.
        records = [r for r in session.scalars(ordered) if tag in (r.tags or [])]
        count, page = len(records), records[offset : offset + limit]
    else:
        count = session.scalar(select(func.count()).select_from(ModelRecord).where(*filters)) or 0
        page = session.scalars(ordered.offset(offset).limit(limit)).all()
    return ModelList(data=[ModelRead.model_validate(r) for r in page], count=count)


@router.get("/{model_id}", response_model=ModelRead, operation_id="get_model")
def get_model(model_id: str, session: SessionDep) -> ModelRead:
    record = session.get(ModelRecord, model_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model with id '{model_id}'")
    return ModelRead.model_validate(record)
