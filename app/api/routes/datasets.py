"""Uploaded datasets: ``POST /datasets`` (multipart .npz/.safetensors), ``GET /datasets[/{id}]``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from sqlalchemy import func, select

from app.api.responses import errors
from app.api.session_route import SessionRoute
from app.api.storable import require_storable
from app.deps import RuntimeDep, SessionDep
from app.orm import DatasetRecord
from app.schemas.datasets import DatasetCreated, DatasetList, DatasetRead
from app.services.uploads import create_dataset

router = APIRouter(prefix="/datasets", tags=["datasets"], route_class=SessionRoute)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetCreated, operation_id="create_dataset",
             responses={**errors(400, 413, 422), 201: {"description": "Stored", "links": {
                 "GetDataset": {"operationId": "get_dataset", "parameters": {"dataset_id": "$response.body#/id"}}}}})
def upload_dataset(
    session: SessionDep,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description=".npz or .safetensors with X_train, y_train, X_test, y_test.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetCreated:
    require_storable({"file": file.filename, "name": name}, ("body",))
    record, already_stored = create_dataset(
        session, runtime.store, handle=file.file, filename=file.filename, name=name, max_bytes=runtime.settings.max_upload_bytes
    )
    return DatasetCreated.model_validate({**DatasetRead.model_validate(record).model_dump(), "already_stored": already_stored})


@router.get("", response_model=DatasetList, operation_id="list_datasets", responses=errors(422))
def list_datasets(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> DatasetList:
    count = session.scalar(select(func.count()).select_from(DatasetRecord)) or 0
    records = session.scalars(
        select(DatasetRecord).order_by(DatasetRecord.created_at.desc(), DatasetRecord.id).offset(offset).limit(limit)
    ).all()
    return DatasetList(data=[DatasetRead.model_validate(r) for r in records], count=count)


@router.get("/{dataset_id}", response_model=DatasetRead, operation_id="get_dataset", responses=errors(404, 422))
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetRead:
    record = session.get(DatasetRecord, dataset_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dataset with id '{dataset_id}'")
    return DatasetRead.model_validate(record)
