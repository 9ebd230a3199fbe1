"""Uploaded datasets: ``POST /datasets`` (multipart .npz/.safetensors), ``GET /datasets[/{id}]``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status

from app.deps import RuntimeDep, SessionDep
from app.services import catalog
from app.schemas.datasets import DatasetCreated, DatasetList, DatasetRead
from app.services.uploads import create_dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetCreated, operation_id="create_dataset")
def upload_dataset(
    session: SessionDep,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description=".npz or .safetensors with X_train, y_train, X_test, y_test.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetCreated:
    record, already_stored = create_dataset(
        session, runtime.store, handle=file.file, filename=file.filename, name=name, max_bytes=runtime.settings.max_upload_bytes
    )
    return DatasetCreated.model_validate({**DatasetRead.model_validate(record).model_dump(), "already_stored": already_stored})


@router.get("", response_model=DatasetList, operation_id="list_datasets")
def list_datasets(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DatasetList:
    records, count = catalog.list_datasets(session, limit=limit, offset=offset)
    return DatasetList(data=[DatasetRead.model_validate(r) for r in records], count=count)


@router.get("/{dataset_id}", response_model=DatasetRead, operation_id="get_dataset")
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetRead:
    return DatasetRead.model_validate(catalog.get_dataset(session, dataset_id))
