"""Reading and writing the ``run_metrics`` rows: one run's metrics, and one metric's trend across runs.

The API routes and the dashboard both read through these functions, so there is one set of queries.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.orm import ModelRecord, Run, RunMetric, RunStatus
from workers.probes.metrics import Metric


def metric_rows(run_id: str, metrics: Iterable[Metric]) -> list[dict]:
    """Column values of ``run_metrics`` for a run's metrics (a report's ``metrics`` list)."""
    rows = []
    for metric in metrics:
        low, high = metric.ci95 if metric.ci95 is not None else (None, None)
        rows.append({
            "run_id": run_id, "key": metric.key, "probe": metric.key.split(".", 1)[0], "value": metric.value,
            "ci_low": low, "ci_high": high, "unit": metric.unit, "better": metric.better, "n": metric.n,
            "scope": metric.scope, "description": metric.description,
        })  # fmt: skip
    return rows


def as_metric(row: RunMetric) -> Metric:
    ci95 = None if row.ci_low is None and row.ci_high is None else (row.ci_low, row.ci_high)
    return Metric(key=row.key, value=row.value, ci95=ci95, unit=row.unit, better=row.better, n=row.n,
                  scope=row.scope, description=row.description)  # fmt: skip


def run_metrics(session: Session, run_id: str) -> list[Metric]:
    """A run's metrics in key order (empty until it succeeded)."""
    rows = session.scalars(select(RunMetric).where(RunMetric.run_id == run_id).order_by(RunMetric.key))
    return [as_metric(row) for row in rows]


def metric_trend(
    session: Session, key: str, *, model_name: str | None = None, model_id: str | None = None,
    limit: int = 100, offset: int = 0,
) -> tuple[list[tuple[RunMetric, Run, ModelRecord | None]], int]:
    """One metric across succeeded runs, oldest first, with each run and its model; and the total count."""
    filters = [RunMetric.key == key, Run.status == RunStatus.succeeded]
    if model_name is not None:
        filters.append(ModelRecord.name == model_name)
    if model_id is not None:
        filters.append(Run.model_id == model_id)
    joined = (
        select(RunMetric, Run, ModelRecord)
        .join(Run, Run.id == RunMetric.run_id)
        .outerjoin(ModelRecord, ModelRecord.id == Run.model_id)
        .where(*filters)
    )
    count = session.scalar(select(func.count()).select_from(joined.subquery())) or 0
    rows = session.execute(joined.order_by(Run.finished_at, Run.id).offset(offset).limit(limit)).all()
    return [(row[0], row[1], row[2]) for row in rows], count


def lineage_metric_keys(session: Session, model_name: str) -> list[str]:
    """Every metric key recorded for succeeded runs of models named ``model_name``, in key order."""
    rows = session.scalars(
        select(RunMetric.key).distinct()
        .join(Run, Run.id == RunMetric.run_id).join(ModelRecord, ModelRecord.id == Run.model_id)
        .where(ModelRecord.name == model_name, Run.status == RunStatus.succeeded)
        .order_by(RunMetric.key)
    )  # fmt: skip
    return list(rows)
