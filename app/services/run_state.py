"""Every status transition of a run, each a single conditional UPDATE.

The run row is the only status API, so transitions are guarded in SQL: ``queued -> running``
succeeds for exactly one worker even when the broker delivers a message twice, and a finished run
is never reopened. A ``running`` run whose heartbeat went stale (its worker died) can be claimed
again by the redelivered message.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.orm import Report, Run, RunMetric, RunStatus
from app.orm.base import utcnow
from app.services.run_metrics import metric_rows
from workers.report import Report as ReportDocument

_MAX_ERROR_CHARS = 4000


def claim(factory: sessionmaker[Session], run_id: str, worker: str, stale_after_s: float) -> bool:
    """Move the run to ``running`` if it is queued or orphaned; True when this caller owns it."""
    now = utcnow()
    orphaned = and_(Run.status == RunStatus.running, Run.heartbeat_at < now - timedelta(seconds=stale_after_s))
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, or_(Run.status == RunStatus.queued, orphaned))
            .values(
                status=RunStatus.running,
                started_at=now,
                heartbeat_at=now,
                worker=worker[:200],
                attempts=Run.attempts + 1,
                progress=0.0,
                progress_message="starting",
            )
        )
        return result.rowcount == 1


class RunCancelled(Exception):
    """Raised at a progress point of a run whose row was cancelled: the probe stops there."""


def record_progress(factory: sessionmaker[Session], run_id: str, fraction: float, message: str) -> None:
    """Write progress; raises ``RunCancelled`` if the run was cancelled meanwhile."""
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.running)
            .values(progress=min(max(fraction, 0.0), 1.0), progress_message=message[:500], heartbeat_at=utcnow())
        )
        if result.rowcount == 0 and session.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.cancelled:
            raise RunCancelled(run_id)


def cancel(factory: sessionmaker[Session], run_id: str) -> str | None:
    """Cancel a queued or running run; returns the status it had, or None if it was already finished.

    A queued run is never claimed afterwards (claiming needs ``queued``); a running one stops at
    its next progress point, when its worker sees the row (``record_progress``), and its result is
    never recorded (``record_success`` needs ``running``).
    """
    with session_scope(factory) as session:
        previous = session.scalar(select(Run.status).where(Run.id == run_id))
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status.in_([RunStatus.queued, RunStatus.running]))
            .values(status=RunStatus.cancelled, finished_at=utcnow(), progress_message="cancelled")
        )
        return previous if result.rowcount == 1 else None


def heartbeat(factory: sessionmaker[Session], run_id: str) -> bool:
    """Refresh a running run's heartbeat; False when the run is no longer running."""
    with session_scope(factory) as session:
        result = session.execute(update(Run).where(Run.id == run_id, Run.status == RunStatus.running).values(heartbeat_at=utcnow()))
        return result.rowcount == 1


def record_success(factory: sessionmaker[Session], run_id: str, report: ReportDocument) -> bool:
    """Store the report and its metric rows and mark the run succeeded, in one transaction (all or none)."""
    document = report.model_dump(mode="json")
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == RunStatus.running)
            .values(
                status=RunStatus.succeeded,
                progress=1.0,
                progress_message="done",
                timing=document["timing"],
                finished_at=utcnow(),
                error=None,
            )
        )
        if result.rowcount != 1:
            session.rollback()
            return False
        session.merge(Report(run_id=run_id, body=document))
        rows = metric_rows(run_id, report.metrics)
        if rows:
            session.execute(insert(RunMetric), rows)
        return True


def record_failure(factory: sessionmaker[Session], run_id: str, error: str) -> None:
    with session_scope(factory) as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status.in_([RunStatus.queued, RunStatus.running]))
            .values(status=RunStatus.failed, error=error[:_MAX_ERROR_CHARS], finished_at=utcnow())
        )
