"""The probe catalogue and the service's health."""

from __future__ import annotations

from pydantic import BaseModel, Field

from priorprobe_client.schemas.metrics import MetricDefinition


class ProbeInfo(BaseModel):
    name: str
    version: str
    summary: str
    paper: str
    requires_task: bool
    params_schema: dict
    result_schema: dict
    metrics: list[MetricDefinition] = Field(description="the metric keys this probe reports and what each means")


class ProbeList(BaseModel):
    data: list[ProbeInfo]
    count: int


class Health(BaseModel):
    status: str  # "ok" or "degraded"
    mode: str  # "embedded" or "distributed"
    database: str
    broker: str
    # "ok" (at the Alembic head) or what is wrong and the command that fixes it; servers before
    # the schema check do not send it.
    migrations: str = "unknown"
