"""Webhooks: register, list, delete; record a run event as deliveries; make one delivery attempt.

A delivery is a row (``webhook_deliveries``) made in the process that saw the event, then a
background job per attempt (``app.jobs.registry``: the same job in Celery and the embedded
worker). An attempt is claimed by a conditional UPDATE on the attempt number, so a message
delivered twice sends once. Retries wait exponentially longer, with jitter, up to
``webhook_max_attempts``; a 2xx ends the delivery, anything else (a 3xx too: redirects are not
followed) is a failed attempt.
"""

from __future__ import annotations

import json
import logging
import time

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.orm import ModelRecord, Run, RunStatus, Webhook, WebhookAttempt, WebhookDelivery
from app.orm.base import utcnow
from app.runtime import Runtime
from app.services.run_metrics import run_metrics
from app.services.webhook_targets import TargetRefused, check_target
from priorprobe_client.client import RetryPolicy
from priorprobe_client.schemas.webhooks import WebhookCreate, WebhookEvent, WebhookPayload, WebhookRun
from priorprobe_client.signatures import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

EVENT_OF_STATUS = {
    RunStatus.succeeded: WebhookEvent.run_succeeded,
    RunStatus.failed: WebhookEvent.run_failed,
    RunStatus.cancelled: WebhookEvent.run_cancelled,
}


def create_webhook(session: Session, request: WebhookCreate, settings: Settings, created_by: str | None) -> Webhook:
    """Store a webhook; raises ``TargetRefused`` for a URL it may not call."""
    check_target(request.url, settings.webhook_allow_private)
    webhook = Webhook(url=request.url, events=sorted({event.value for event in request.events}), secret=request.secret,
                      created_by=created_by)  # fmt: skip
    session.add(webhook)
    session.commit()
    return webhook


def record_run_event(session: Session, run_id: str) -> list[str]:
    """A pending delivery for each webhook that wants the run's final status; their ids."""
    run = session.get(Run, run_id)
    event = EVENT_OF_STATUS.get(run.status) if run is not None else None
    if event is None:
        return []
    webhooks = [w for w in session.scalars(select(Webhook).order_by(Webhook.created_at)) if event.value in w.events]
    if not webhooks:
        return []
    model = session.get(ModelRecord, run.model_id) if run.model_id else None
    metrics = run_metrics(session, run_id) if run.status == RunStatus.succeeded else []
    ids = []
    for webhook in webhooks:
        delivery = WebhookDelivery(webhook_id=webhook.id, event=event.value, run_id=run_id, payload={}, status="pending", attempts=0)
        session.add(delivery)
        session.flush()  # assigns the id, which the payload carries
        delivery.payload = WebhookPayload(
            event=event, delivery_id=delivery.id, metrics=metrics,
            run=WebhookRun(id=run.id, status=run.status, model_id=run.model_id, model_name=model.name if model else None,
                           error=run.error, finished_at=run.finished_at, url=f"/api/v1/runs/{run.id}"),
        ).model_dump(mode="json")  # fmt: skip
        ids.append(delivery.id)
    session.commit()
    return ids


def payload_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def retry_policy(settings: Settings) -> RetryPolicy:
    # The client's backoff (exponential, capped, full jitter), so both retry the same way.
    return RetryPolicy(retries=settings.webhook_max_attempts - 1, base_s=settings.webhook_retry_base_s,
                       max_s=settings.webhook_retry_max_s)  # fmt: skip


def attempt_delivery(runtime: Runtime, delivery_id: str, attempt: int) -> float | None:
    """Make attempt number ``attempt`` of a delivery; returns the delay before the next attempt, or
    None when the delivery is finished (or this attempt was already made by another worker)."""
    settings, factory = runtime.settings, runtime.session_factory
    with session_scope(factory) as session:
        claimed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending", WebhookDelivery.attempts == attempt - 1)
            .values(attempts=attempt)
        ).rowcount
        if claimed != 1:
            return None
        delivery = session.get(WebhookDelivery, delivery_id)
        webhook = session.get(Webhook, delivery.webhook_id)
        url, secret, event, payload = webhook.url, webhook.secret, delivery.event, delivery.payload
    body = payload_bytes(payload)
    status_code, error, final = None, None, False
    started = time.perf_counter()
    try:
        check_target(url, settings.webhook_allow_private)
        headers = {"Content-Type": "application/json", "User-Agent": "PriorProbe-Webhooks/1",
                   SIGNATURE_HEADER: sign(secret, int(time.time()), body), "PriorProbe-Event": event,
                   "PriorProbe-Delivery": delivery_id}  # fmt: skip
        response = httpx.post(url, content=body, headers=headers, timeout=settings.webhook_timeout_s, follow_redirects=False)
        status_code = response.status_code
        if 300 <= status_code < 400:
            error = f"HTTP {status_code}: redirects are not followed"
        elif not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except TargetRefused as exc:
        error, final = f"target refused: {exc}", True  # a retry would be refused the same way
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    latency_ms = 1000 * (time.perf_counter() - started)
    done = error is None or final or attempt >= settings.webhook_max_attempts
    with session_scope(factory) as session:
        session.add(WebhookAttempt(delivery_id=delivery_id, attempt=attempt, status_code=status_code,
                                   latency_ms=latency_ms, error=error))  # fmt: skip
        if done:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                            .values(status="succeeded" if error is None else "failed", finished_at=utcnow()))  # fmt: skip
    if error is not None:
        log.info("webhook delivery %s attempt %d failed: %s", delivery_id, attempt, error)
    return None if done else retry_policy(settings).delay(attempt - 1)
