"""Every status transition of a run, each a single conditional UPDATE.

The run row is the only status API, so transitions are guarded in SQL: ``queued -> running``
succeeds for exactly one worker even when the broker delivers a message twice, and a finished run
is never reopened. A ``running`` run whose holder is dead can be claimed again: provably dead (a
process of this host that no longer exists, see ``app/services/liveness.py``) at once, presumed
dead (heartbeat older than ``stale_after_s``) otherwise. Every write a worker makes to a run it
executes names that worker, so a worker that was presumed dead and comes back (a network or
database partition) cannot overwrite the attempt that took over from it.
"""

from __future__ import annotations

from datetime import timedelta

from dataclasses import dataclass

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.orm import Report, Run, RunMetric, RunStatus
from app.orm.base import utcnow
from app.services import liveness
from app.services.run_metrics import metric_rows
from workers.report import Report as ReportDocument

_MAX_ERROR_CHARS = 4000


def _held_by(worker: str | None):
    """The condition "still running and still held by ``worker``" (any holder when None)."""
    condition = Run.status == RunStatus.running
    return condition if worker is None else and_(condition, Run.worker == worker[:200])


def claim(factory: sessionmaker[Session], run_id: str, worker: str, stale_after_s: float) -> bool:
    """Move the run to ``running`` if it is queued or orphaned; True when this caller owns it.

    Orphaned: running, and its heartbeat is stale, or its holder is dead (see the module doc), or
    its holder is this very worker (a job that is retried in the process that held it).
    """
    now = utcnow()
    with session_scope(factory) as session:
        takeover = Run.heartbeat_at < now - timedelta(seconds=stale_after_s)
        holder = session.scalar(select(Run.worker).where(Run.id == run_id, Run.status == RunStatus.running))
        if holder is not None and (holder == worker[:200] or liveness.is_dead(holder)):
            takeover = or_(takeover, Run.worker == holder)
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, or_(Run.status == RunStatus.queued, and_(Run.status == RunStatus.running, takeover)))
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


def record_progress(factory: sessionmaker[Session], run_id: str, fraction: float, message: str, worker: str | None = None) -> None:
    """Write progress; raises ``RunCancelled`` if the run was cancelled meanwhile."""
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, _held_by(worker))
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


def heartbeat(factory: sessionmaker[Session], run_id: str, worker: str | None = None) -> bool:
    """Refresh a running run's heartbeat; False when the run is no longer running (or, with
    ``worker``, no longer held by that worker: another attempt took it over)."""
    with session_scope(factory) as session:
        result = session.execute(update(Run).where(Run.id == run_id, _held_by(worker)).values(heartbeat_at=utcnow()))
        return result.rowcount == 1


def record_success(factory: sessionmaker[Session], run_id: str, report: ReportDocument, worker: str | None = None) -> bool:
    """Store the report and its metric rows and mark the run succeeded, in one transaction (all or none)."""
    document = report.model_dump(mode="json")
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, _held_by(worker))
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


def record_failure(factory: sessionmaker[Session], run_id: str, error: str, worker: str | None = None) -> bool:
    """Mark the run failed; with ``worker``, only while that worker still holds it."""
    unfinished = Run.status.in_([RunStatus.queued, RunStatus.running]) if worker is None else _held_by(worker)
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, unfinished)
            .values(status=RunStatus.failed, error=error[:_MAX_ERROR_CHARS], finished_at=utcnow())
        )
        return result.rowcount == 1


def requeue(factory: sessionmaker[Session], run_id: str, worker: str, message: str) -> bool:
    """Hand a run this worker holds back to the queue (its worker is shutting down).

    The attempt is not counted: the run was interrupted, it did not fail.
    """
    with session_scope(factory) as session:
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, _held_by(worker))
            .values(status=RunStatus.queued, attempts=Run.attempts - 1, progress=0.0, progress_message=message[:500],
                    heartbeat_at=utcnow())  # for a queued run: when it was queued again (see queued_before)
        )
        return result.rowcount == 1


def status_of(factory: sessionmaker[Session], run_id: str) -> str | None:
    with factory() as session:
        return session.scalar(select(Run.status).where(Run.id == run_id))


def queue_of(factory: sessionmaker[Session], run_id: str) -> str:
    with factory() as session:
        return session.scalar(select(Run.queue).where(Run.id == run_id)) or "cpu"


@dataclass(frozen=True)
class Reaped:
    requeued: list[tuple[str, str]]  # (run id, queue)
    failed: list[str]


def reap(factory: sessionmaker[Session], stale_after_s: float, max_attempts: int) -> Reaped:
    """Running runs whose holder is dead (see ``claim``) go back to ``queued``, or to ``failed``
    with the reason once they used ``max_attempts`` attempts. Each transition is conditional on
    the row still being the orphan that was read, so concurrent reapers act once."""
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    requeued, failed = [], []
    with factory() as session:
        running = session.execute(
            # Staleness is decided in SQL: SQLite hands datetimes back without their time zone.
            select(Run.id, Run.worker, Run.heartbeat_at, Run.attempts, Run.queue,
                   or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < cutoff))
            .where(Run.status == RunStatus.running)
        ).all()
    for run_id, worker, heartbeat_at, attempts, queue, stale in running:
        if not (stale or liveness.is_dead(worker)):
            continue
        why = (f"its worker {worker} stopped sending heartbeats (last at {heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
               if stale and heartbeat_at is not None else f"its worker {worker} died")
        still_orphaned = and_(Run.id == run_id, Run.status == RunStatus.running, Run.worker == worker,
                              Run.attempts == attempts)
        if attempts >= max_attempts:
            values = dict(status=RunStatus.failed, finished_at=now,
                          error=f"worker lost: {why}; gave up after {attempts} attempts (max_run_attempts)")
            target = failed
        else:
            values = dict(status=RunStatus.queued, progress=0.0, progress_message=f"re-queued: {why}"[:500], heartbeat_at=now)
            target = requeued
        with session_scope(factory) as session:
            if session.execute(update(Run).where(still_orphaned).values(**values)).rowcount == 1:
                target.append(run_id if target is failed else (run_id, queue))
    return Reaped(requeued, failed)


def queued_before(factory: sessionmaker[Session], before_s: float) -> list[tuple[str, str]]:
    """(id, queue) of the runs queued for longer than ``before_s`` (by creation or last re-queue)."""
    cutoff = utcnow() - timedelta(seconds=before_s)
    with factory() as session:
        return [tuple(row) for row in session.execute(
            select(Run.id, Run.queue)
            .where(Run.status == RunStatus.queued, Run.created_at < cutoff,
                   or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < cutoff))
            .order_by(Run.created_at)
        ).all()]
