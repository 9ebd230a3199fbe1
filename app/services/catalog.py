"""Reading runs, models and datasets: the listings and lookups the API and the dashboard share.

Both front ends call these functions, so a filter or an ordering is written once and the dashboard
never grows a second set of queries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import String, cast, false, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.orm import DatasetRecord, ModelRecord, Report, Run
from app.services.model_refs import newest_first


class NotFound(LookupError):
    """No row with that id; the API answers 404 with this message, the dashboard its 404 page."""


@dataclass(frozen=True)
class RunFilters:
    model_id: str | None = None
    dataset_id: str | None = None
    status: str | None = None
    model_name: str | None = None
    probe: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class RunRow:
    """A run with its model (None for runs of a random init), for tables."""

    run: Run
    model: ModelRecord | None

    @property
    def model_name(self) -> str | None:
        return self.model.name if self.model is not None else None

    @property
    def model_version(self) -> str | None:
        # Model versions arrive with the provenance columns; older rows and schemas have none.
        return getattr(self.model, "version", None)


def _json_text_contains(column, fragment: str):
    # Model tags sit in a JSON list. Matching the JSON text ('"tag"') works the same on SQLite and
    # PostgreSQL, and the models table is small; autoescape keeps '_' and '%' literal.
    return cast(column, String).contains(fragment, autoescape=True)


_PROBE_NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")


def _has_probe(session: Session, probe: str):
    """Runs whose spec asks for ``probe`` (a key of ``spec.probes``).

    PostgreSQL tests the JSONB key with ``?`` (no text rendering of 10,000 documents: the Runs page
    budget), SQLite extracts the path; a name that cannot be a probe matches nothing.
    """
    if not _PROBE_NAME.match(probe):
        return false()
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(Run.spec, JSONB)["probes"].has_key(probe)
    return func.json_extract(Run.spec, f'$.probes."{probe}"').is_not(None)


def list_runs(session: Session, filters: RunFilters, *, limit: int, offset: int) -> tuple[list[RunRow], int]:
    """Runs newest first with their models, and the count matching ``filters``."""
    query = select(Run, ModelRecord).outerjoin(ModelRecord, ModelRecord.id == Run.model_id)
    conditions = []
    if filters.model_id:
        conditions.append(Run.model_id == filters.model_id)
    if filters.dataset_id:
        conditions.append(Run.dataset_id == filters.dataset_id)
    if filters.status:
        conditions.append(Run.status == filters.status)
    if filters.model_name:
        conditions.append(ModelRecord.name == filters.model_name)
    if filters.probe:
        conditions.append(_has_probe(session, filters.probe))
    if filters.tag:
        conditions.append(_json_text_contains(ModelRecord.tags, f'"{filters.tag}"'))
    query = query.where(*conditions)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(Run.created_at.desc(), Run.id).offset(offset).limit(limit)).all()
    return [RunRow(run=run, model=model) for run, model in rows], count


def runs_by_ids(session: Session, run_ids: Sequence[str]) -> list[RunRow]:
    """The given runs in the given order; raises ``NotFound`` naming the first unknown id."""
    rows = session.execute(
        select(Run, ModelRecord).outerjoin(ModelRecord, ModelRecord.id == Run.model_id).where(Run.id.in_(run_ids))
    ).all()
    found = {run.id: RunRow(run=run, model=model) for run, model in rows}
    for run_id in run_ids:
        if run_id not in found:
            raise NotFound(f"no run with id '{run_id}'")
    return [found[run_id] for run_id in run_ids]


def get_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run with id '{run_id}'")
    return run


def get_report_body(session: Session, run_id: str) -> dict | None:
    """The stored report JSON of a run, or None while it has none (queued, running, failed)."""
    report = session.get(Report, run_id)
    return report.body if report is not None else None


def get_model(session: Session, model_id: str) -> ModelRecord:
    record = session.get(ModelRecord, model_id)
    if record is None:
        raise NotFound(f"no model with id '{model_id}'")
    return record


def get_dataset(session: Session, dataset_id: str) -> DatasetRecord:
    record = session.get(DatasetRecord, dataset_id)
    if record is None:
        raise NotFound(f"no dataset with id '{dataset_id}'")
    return record


def list_models(
    session: Session, *, family: str | None = None, tag: str | None = None, name: str | None = None,
    sha256: str | None = None, limit: int, offset: int,
) -> tuple[list[ModelRecord], int]:
    """Models newest first, optionally one family, one tag, one name (a lineage) or one file's bytes."""
    conditions = []
    if sha256:
        conditions.append(ModelRecord.sha256 == sha256.lower())
    if family:
        conditions.append(ModelRecord.family == family)
    if name:
        conditions.append(ModelRecord.name == name)
    if tag:
        conditions.append(_json_text_contains(ModelRecord.tags, f'"{tag}"'))
    ordered = newest_first(select(ModelRecord).where(*conditions))
    count = session.scalar(select(func.count()).select_from(ModelRecord).where(*conditions)) or 0
    return list(session.scalars(ordered.offset(offset).limit(limit))), count


def model_lineages(session: Session) -> list[tuple[str, int, object]]:
    """``(name, number of models, newest upload)`` per model name, newest lineage first."""
    rows = session.execute(
        select(ModelRecord.name, func.count(), func.max(ModelRecord.created_at))
        .group_by(ModelRecord.name)
        .order_by(func.max(ModelRecord.created_at).desc())
    ).all()
    return [(name, count, newest) for name, count, newest in rows]


def list_datasets(session: Session, *, sha256: str | None = None, limit: int, offset: int) -> tuple[list[DatasetRecord], int]:
    """Datasets newest first, optionally only those with exactly these bytes."""
    conditions = [DatasetRecord.sha256 == sha256.lower()] if sha256 else []
    count = session.scalar(select(func.count()).select_from(DatasetRecord).where(*conditions)) or 0
    records = session.scalars(
        select(DatasetRecord).where(*conditions).order_by(DatasetRecord.created_at.desc(), DatasetRecord.id).offset(offset).limit(limit)
    ).all()
    return list(records), count
