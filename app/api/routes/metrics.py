"""Metrics across runs: ``GET /metrics?key=...`` is one metric's trend (baselines, dashboard charts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.auth import ReadAccess
from app.deps import SessionDep
from app.schemas.metrics import MetricTrend, TrendPoint
from app.services.model_refs import resolve_model_id
from app.services.run_metrics import metric_trend

router = APIRouter(prefix="/metrics", tags=["metrics"])


@router.get("", response_model=MetricTrend, operation_id="get_metric_trend")
def get_metric_trend(
    session: SessionDep,
    _: ReadAccess,
    key: Annotated[str, Query(min_length=1, max_length=300, description="a metric key, e.g. inductive_bias.bits")],
    model_name: Annotated[str | None, Query(max_length=200, description="only runs of models with this name")] = None,
    model_id: Annotated[str | None, Query(max_length=210, description="a model id or latest:<name>")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> MetricTrend:
    """One metric across succeeded runs, oldest first, with each value's interval."""
    rows, count = metric_trend(session, key, model_name=model_name, model_id=resolve_model_id(session, model_id), limit=limit, offset=offset)
    first = rows[0][0] if rows else None
    return MetricTrend(
        key=key,
        unit=first.unit if first else None,
        better=first.better if first else None,
        scope=first.scope if first else None,
        description=first.description if first else None,
        data=[
            TrendPoint(run_id=run.id, model_id=run.model_id, model_name=model.name if model else None,
                       finished_at=run.finished_at, value=metric.value,
                       ci95=None if metric.ci_low is None and metric.ci_high is None else (metric.ci_low, metric.ci_high),
                       n=metric.n)  # fmt: skip
            for metric, run, model in rows
        ],
        count=count,
    )
