"""Deleting a model or a dataset, refused while runs reference it (their reports point at it).

The blob stays in content-addressed storage: other records and artifacts may share the same bytes.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.orm import DatasetRecord, ModelRecord, Run

_NAMED_RUNS = 20


class StillReferenced(Exception):
    def __init__(self, what: str, run_ids: list[str], total: int):
        more = f" and {total - len(run_ids)} more" if total > len(run_ids) else ""
        super().__init__(f"{what} is used by {total} run(s): {', '.join(run_ids)}{more}; delete or keep those runs first")
        self.run_ids = run_ids


def _referencing_runs(session: Session, column, record_id: str) -> tuple[list[str], int]:
    ids = session.scalars(select(Run.id).where(column == record_id).order_by(Run.created_at)).all()
    return list(ids[:_NAMED_RUNS]), len(ids)


def delete_model(session: Session, record: ModelRecord) -> None:
    run_ids, total = _referencing_runs(session, Run.model_id, record.id)
    if total:
        raise StillReferenced(f"model '{record.id}'", run_ids, total)
    session.delete(record)
    session.commit()


def delete_dataset(session: Session, record: DatasetRecord) -> None:
    run_ids, total = _referencing_runs(session, Run.dataset_id, record.id)
    if total:
        raise StillReferenced(f"dataset '{record.id}'", run_ids, total)
    session.delete(record)
    session.commit()
