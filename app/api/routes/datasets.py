"""Uploaded datasets: ``POST /datasets`` (multipart .npz/.safetensors), ``GET /datasets[/{id}]``, ``DELETE``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status

from app.api.auth import AdminAccess, ReadAccess, WriteAccess
from app.deps import RuntimeDep, SessionDep
from app.schemas.datasets import DatasetCreated, DatasetList, DatasetRead
from app.services import catalog
from app.services.removal import StillReferenced, delete_dataset
from app.services.uploads import create_dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetCreated, operation_id="create_dataset")
def upload_dataset(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: WriteAccess,
    file: Annotated[UploadFile, File(description=".npz or .safetensors with X_train, y_train, X_test, y_test.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetCreated:
    record, already_stored = create_dataset(
        session, runtime.store, handle=file.file, filename=file.filename, name=name,
        created_by=caller.key_name, max_bytes=runtime.settings.max_upload_bytes,
    )  # fmt: skip
    return DatasetCreated.model_validate({**DatasetRead.model_validate(record).model_dump(), "already_stored": already_stored})


@router.get("", response_model=DatasetList, operation_id="list_datasets")
def list_datasets(
    session: SessionDep,
    _: ReadAccess,
    sha256: Annotated[str | None, Query(max_length=64, description="datasets with exactly these bytes")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DatasetList:
    records, count = catalog.list_datasets(session, sha256=sha256, limit=limit, offset=offset)
    return DatasetList(data=[DatasetRead.model_validate(r) for r in records], count=count)


@router.get("/{dataset_id}", response_model=DatasetRead, operation_id="get_dataset")
def get_dataset(dataset_id: str, session: SessionDep, _: ReadAccess) -> DatasetRead:
    return DatasetRead.model_validate(catalog.get_dataset(session, dataset_id))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_dataset")
def remove_dataset(dataset_id: str, session: SessionDep, _: AdminAccess) -> None:
    """Delete a dataset no run references (409 naming the runs otherwise)."""
    try:
        delete_dataset(session, catalog.get_dataset(session, dataset_id))
    except StillReferenced as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
