"""Uploaded models: ``POST /models`` (multipart), ``GET /models[?name=]``, ``GET|DELETE /models/{id}``.

``{id}`` may be ``latest:<name>``: the newest model of that lineage.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status

from app.api.auth import AdminAccess, ReadAccess, WriteAccess
from app.api.responses import errors, links
from app.api.session_route import SessionRoute
from app.api.storable import require_storable
from app.deps import RuntimeDep, SessionDep
from app.orm import DatasetRecord, ModelRecord
from app.schemas.models import ModelCreated, ModelList, ModelRead
from app.services import catalog
from app.services.model_refs import find_model
from app.services.removal import StillReferenced, delete_model
from app.services.uploads import ModelProvenance, create_model
from models.errors import InputError

router = APIRouter(prefix="/models", tags=["models"], route_class=SessionRoute)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelCreated, operation_id="create_model",
             responses={**errors(400, 401, 403, 413, 422), 201: {"description": "Stored", "links": links(
                 "model_ref", GetModel="get_model", DeleteModel="delete_model")}})
def upload_model(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: WriteAccess,
    file: Annotated[
        UploadFile,
        File(description="Checkpoint: .safetensors (preferred), a weights-only .pt state dict, a .pt2, or an .onnx graph."),
    ],
    arch: Annotated[
        str | None, Form(description='Architecture spec as JSON, e.g. {"name": "mlp", "in_dim": 64, ...}; none for .onnx.')
    ] = None,
    name: Annotated[str | None, Form(max_length=200, description="the lineage CI reports on; default: the file name")] = None,
    tags: Annotated[str | None, Form(description="JSON list or comma-separated.")] = None,
    version: Annotated[str | None, Form(max_length=100)] = None,
    commit: Annotated[str | None, Form(max_length=64, description="git commit the checkpoint was built from")] = None,
    branch: Annotated[str | None, Form(max_length=200)] = None,
    ci_url: Annotated[str | None, Form(max_length=500, description="the CI job that uploaded it")] = None,
    dataset: Annotated[
        str | None,
        Form(description=".onnx only: an uploaded dataset id whose samples bind dynamic input axes and feed the onnxruntime check."),
    ] = None,
) -> ModelCreated:
    require_storable({"file": file.filename, "arch": arch, "name": name, "tags": tags, "version": version, "commit": commit,
                      "branch": branch, "ci_url": ci_url,
                      "dataset": dataset}, ("body",))
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
        provenance=ModelProvenance(version=version, commit=commit, branch=branch, ci_url=ci_url),
        created_by=caller.key_name,
        max_bytes=runtime.settings.max_upload_bytes,
        graph_limits=runtime.settings.graph_limits(),
        dataset=dataset_record,
        dataset_path=runtime.store.path_for(dataset_record.sha256) if dataset_record else None,
    )
    return ModelCreated.model_validate({**ModelRead.model_validate(record).model_dump(), "already_stored": already_stored})


@router.get("", response_model=ModelList, operation_id="list_models", responses=errors(401, 403, 422))
def list_models(
    session: SessionDep,
    _: ReadAccess,
    name: Annotated[str | None, Query(max_length=200, description="one lineage, newest first")] = None,
    family: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    sha256: Annotated[str | None, Query(max_length=64, description="models with exactly these bytes")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> ModelList:
    page, count = catalog.list_models(session, family=family, tag=tag, name=name, sha256=sha256, limit=limit, offset=offset)
    return ModelList(data=[ModelRead.model_validate(r) for r in page], count=count)


def _get_model(session, model_ref: str) -> ModelRecord:
    record = find_model(session, model_ref)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no model '{model_ref}'")
    return record


@router.get("/{model_ref}", response_model=ModelRead, operation_id="get_model", responses=errors(401, 403, 404, 422))
def get_model(model_ref: str, session: SessionDep, _: ReadAccess) -> ModelRead:
    """A model by id, or ``latest:<name>``."""
    return ModelRead.model_validate(_get_model(session, model_ref))


@router.delete("/{model_ref}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_model",
               responses=errors(401, 403, 404, 409, 422))
def remove_model(model_ref: str, session: SessionDep, _: AdminAccess) -> None:
    """Delete a model no run references (409 naming the runs otherwise)."""
    try:
        delete_model(session, _get_model(session, model_ref))
    except StillReferenced as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
