"""Model references: a model id, or ``latest:<name>`` for the newest model of a lineage."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.orm import ModelRecord
from priorprobe_client.schemas.models import LATEST_PREFIX


def newest_first(query):
    return query.order_by(ModelRecord.created_at.desc(), ModelRecord.id.desc())


def find_model(session: Session, ref: str) -> ModelRecord | None:
    """The model ``ref`` names (an id or ``latest:<name>``), or None."""
    if ref.startswith(LATEST_PREFIX):
        name = ref[len(LATEST_PREFIX):]
        return session.scalars(newest_first(select(ModelRecord).where(ModelRecord.name == name)).limit(1)).first()
    return session.get(ModelRecord, ref)


def resolve_model_id(session: Session, ref: str | None) -> str | None:
    """``ref`` as a model id for filters: ``latest:<name>`` resolved; an unknown lineage matches nothing."""
    if ref is None or not ref.startswith(LATEST_PREFIX):
        return ref
    record = find_model(session, ref)
    return record.id if record else ref
