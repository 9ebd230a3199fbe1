"""Webhooks: what is registered, what each delivery sends, and the delivery log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from priorprobe_client.schemas.metrics import Metric


class WebhookEvent(StrEnum):
    run_succeeded = "run.succeeded"
    run_failed = "run.failed"
    run_cancelled = "run.cancelled"


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, description="http(s) URL; link-local, metadata and (by default) private addresses are refused")
    events: list[WebhookEvent] = Field(min_length=1, description="which run events to deliver")
    secret: str = Field(min_length=16, max_length=200, description="signs each delivery (HMAC-SHA256); never served back")


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[WebhookEvent]
    created_by: str | None
    created_at: datetime


class WebhookList(BaseModel):
    data: list[WebhookRead]
    count: int


class WebhookAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None = Field(description="the receiver's HTTP status; null when no answer came")
    latency_ms: float | None
    error: str | None = Field(description="why the attempt failed; null when it got a 2xx")
    created_at: datetime


class WebhookDeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    event: WebhookEvent
    run_id: str
    status: str = Field(description="pending, succeeded, or failed (attempts exhausted or target refused)")
    attempts: int
    created_at: datetime
    finished_at: datetime | None
    log: list[WebhookAttemptRead]


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryRead]
    count: int


class WebhookRun(BaseModel):
    id: str
    status: str
    model_id: str | None
    model_name: str | None
    error: str | None
    finished_at: datetime | None
    url: str = Field(description="the run's API path, relative to the server")


class WebhookPayload(BaseModel):
    """The JSON body of a delivery (the same bytes on every attempt of it)."""

    event: WebhookEvent
    delivery_id: str
    run: WebhookRun
    metrics: list[Metric] = Field(description="the run's metrics (empty unless it succeeded)")
