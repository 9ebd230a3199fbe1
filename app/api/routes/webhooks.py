"""Webhooks: ``POST /webhooks`` (url, events, secret), ``GET /webhooks``, ``DELETE /webhooks/{id}``,
and the delivery log ``GET /webhooks/{id}/deliveries``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select

from app.api.auth import AdminAccess, ReadAccess, WriteAccess
from app.deps import RuntimeDep, SessionDep
from app.orm import Webhook, WebhookAttempt, WebhookDelivery
from app.schemas.webhooks import (
    WebhookCreate,
    WebhookDeliveryList,
    WebhookDeliveryRead,
    WebhookList,
    WebhookRead,
)
from app.services.webhook_targets import TargetRefused
from app.services.webhooks import create_webhook

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookRead, operation_id="create_webhook")
def create(body: WebhookCreate, session: SessionDep, runtime: RuntimeDep, caller: WriteAccess) -> WebhookRead:
    """Register a URL for run events; deliveries are signed with the secret (see docs/ci.md)."""
    try:
        webhook = create_webhook(session, body, runtime.settings, caller.key_name)
    except TargetRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{"loc": ["body", "url"], "msg": str(exc), "type": "target_refused"}]) from None
    return WebhookRead.model_validate(webhook)


@router.get("", response_model=WebhookList, operation_id="list_webhooks")
def list_all(session: SessionDep, _: ReadAccess) -> WebhookList:
    webhooks = session.scalars(select(Webhook).order_by(Webhook.created_at, Webhook.id)).all()
    return WebhookList(data=[WebhookRead.model_validate(w) for w in webhooks], count=len(webhooks))


def _get(session, webhook_id: str) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no webhook with id '{webhook_id}'")
    return webhook


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_webhook")
def delete(webhook_id: str, session: SessionDep, _: AdminAccess) -> None:
    """Delete a webhook with its delivery log; pending retries find it gone and stop."""
    session.delete(_get(session, webhook_id))
    session.commit()


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryList, operation_id="list_webhook_deliveries")
def deliveries(
    webhook_id: str,
    session: SessionDep,
    _: ReadAccess,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> WebhookDeliveryList:
    """Newest first, each with its attempts: status code, latency, error."""
    _get(session, webhook_id)
    count = session.scalar(select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)) or 0
    page = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).offset(offset).limit(limit)
    ).all()  # fmt: skip
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in page}
    for attempt in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(attempts)).order_by(WebhookAttempt.attempt)):
        attempts[attempt.delivery_id].append(attempt)
    data = [WebhookDeliveryRead.model_validate({**{k: getattr(d, k) for k in ("id", "event", "run_id", "status", "attempts",
                                                "created_at", "finished_at")}, "log": attempts[d.id]}) for d in page]  # fmt: skip
    return WebhookDeliveryList(data=data, count=count)
