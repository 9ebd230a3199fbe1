"""Uploaded models: ``POST /models`` (multipart), ``GET /models``, ``GET /models/{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status

from app.deps import RuntimeDep, SessionDep
from app.services import catalog
from app.schemas.models import ModelCreated, ModelList, ModelRead
from app.services.uploads import create_model

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelCreated, operation_id="create_model")
def upload_model(
    session: SessionDep,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description="Checkpoint: .safetensors (preferred) or a weights-only .pt state dict.")],
    arch: Annotated[str, Form(description='Architecture spec as JSON, e.g. {"name": "mlp", "in_dim": 64, ...}.')],
    name: Annotated[str | None, Form(max_length=200)] = None,
    tags: Annotated[str | None, Form(description="JSON list or comma-separated.")] = None,
) -> ModelCreated:
    record, already_stored = create_model(
        session,
        runtime.store,
        handle=file.file,
        filename=file.filename,
        arch_json=arch,
        name=name,
        tags=tags,
        max_bytes=runtime.settings.max_upload_bytes,
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
    page, count = catalog.list_models(session, family=family, tag=tag, limit=limit, offset=offset)
    return ModelList(data=[ModelRead.model_validate(r) for r in page], count=count)


@router.get("/{model_id}", response_model=ModelRead, operation_id="get_model")
def get_model(model_id: str, session: SessionDep) -> ModelRead:
    return ModelRead.model_validate(catalog.get_model(session, model_id))
