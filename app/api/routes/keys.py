"""API keys over the API (admin scope): ``POST /keys`` returns the key once; list; revoke."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.auth import AdminAccess
from app.deps import RuntimeDep, SessionDep
from app.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyRead
from app.services.api_keys import KeyNotFound, create_key, list_keys, revoke_key

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, operation_id="create_key")
def create(body: ApiKeyCreate, session: SessionDep, runtime: RuntimeDep, _: AdminAccess) -> ApiKeyCreated:
    """A new key; the response is the only place the key itself ever appears."""
    record, key = create_key(session, body.name, body.scope, runtime.settings.api_key_pepper)
    return ApiKeyCreated.model_validate({**ApiKeyRead.model_validate(record).model_dump(), "key": key})


@router.get("", response_model=ApiKeyList, operation_id="list_keys")
def list_all(session: SessionDep, _: AdminAccess) -> ApiKeyList:
    records = list_keys(session)
    return ApiKeyList(data=[ApiKeyRead.model_validate(r) for r in records], count=len(records))


@router.delete("/{key_ref}", response_model=ApiKeyRead, operation_id="revoke_key")
def revoke(key_ref: str, session: SessionDep, _: AdminAccess) -> ApiKeyRead:
    """Revoke a key by id or prefix; it stops working at once (the row stays for the record)."""
    try:
        return ApiKeyRead.model_validate(revoke_key(session, key_ref))
    except KeyNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
