"""A run's metrics, and one metric's trend across runs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from priorprobe_client.schemas.metrics import Better, Metric, Scope


class RunMetricList(BaseModel):
    run_id: str
    data: list[Metric]
    count: int


class TrendPoint(BaseModel):
    run_id: str
    model_id: str | None
    model_name: str | None
    finished_at: datetime | None
    value: float | None
    ci95: tuple[float | None, float | None] | None
    n: int | None


class MetricTrend(BaseModel):
    """One metric across succeeded runs, oldest first: what baselines and trend charts read."""

    key: str
    unit: str | None = Field(description="null when no run has this metric")
    better: Better | None
    scope: Scope | None
    description: str | None
    data: list[TrendPoint]
    count: int = Field(description="points matching the filters (data is one page of them)")
