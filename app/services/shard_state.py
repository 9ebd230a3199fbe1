"""Every read and status transition of run shards; claims are conditional UPDATEs, so exactly one
worker computes each shard. A shard's holder is judged dead like a run's (``app/services/liveness.py``),
and its result is recorded only by the worker that holds it, so a shard is never merged twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.orm import Run, RunShard, RunStatus
from app.orm.base import utcnow
from app.services import liveness


@dataclass(frozen=True)
class ClaimedShard:
    id: str
    run_id: str
    run_attempt: int  # the run's attempt this shard is computed for (keys the prepared inputs)
    probe: str
    index: int
    spec: dict


def _claimable(stale_after_s: float, dead_holder: str | None = None):
    takeover = RunShard.heartbeat_at < utcnow() - timedelta(seconds=stale_after_s)
    if dead_holder is not None:
        takeover = or_(takeover, RunShard.worker == dead_holder)
    stale = and_(RunShard.status == "running", takeover)
    # A shard of a run that finished, failed or was never started again is dropped, not computed:
    # nobody would merge its result.
    run_is_running = select(Run.id).where(Run.id == RunShard.run_id, Run.status == RunStatus.running).exists()
    return and_(or_(RunShard.status == "queued", stale), run_is_running)


def claim(
    factory: sessionmaker[Session], worker: str, stale_after_s: float, *, shard_id: str | None = None,
    run_id: str | None = None, probe: str | None = None,
) -> ClaimedShard | None:
    """Claim a specific shard, or the first claimable shard of (run, probe); None if none is.

    Only shards of a ``running`` run are claimable.
    """
    with session_scope(factory) as session:
        if shard_id is not None:
            candidates = [shard_id]
        else:
            candidates = session.scalars(
                select(RunShard.id)
                .where(RunShard.run_id == run_id, RunShard.probe == probe, _claimable(stale_after_s))
                .order_by(RunShard.index)
            ).all()
        for candidate in candidates:
            holder = session.scalar(select(RunShard.worker).where(RunShard.id == candidate, RunShard.status == "running"))
            dead_holder = holder if holder is not None and liveness.is_dead(holder) else None
            result = session.execute(
                update(RunShard)
                .where(RunShard.id == candidate, _claimable(stale_after_s, dead_holder))
                .values(status="running", worker=worker[:200], heartbeat_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                row = session.get(RunShard, candidate)
                attempt = session.scalar(select(Run.attempts).where(Run.id == row.run_id))
                return ClaimedShard(row.id, row.run_id, attempt, row.probe, row.index, row.spec)
    return None


def ensure_rows(factory: sessionmaker[Session], run_id: str, probe: str, shards: list[dict]) -> list[str]:
    """Create the missing shard rows of (run, probe); return the ids of shards still to compute.

    Rows an earlier attempt finished with the same spec are kept; failed ones are queued again.
    """
    with session_scope(factory) as session:
        existing = {
            row.index: row for row in session.scalars(select(RunShard).where(RunShard.run_id == run_id, RunShard.probe == probe))
        }
        pending = []
        for index, spec in enumerate(shards):
            row = existing.get(index)
            if row is None or row.spec != spec:
                if row is not None:  # same index, different work: an earlier attempt's plan
                    session.delete(row)
                    session.flush()
                row = RunShard(run_id=run_id, probe=probe, index=index, spec=spec, status="queued")
                session.add(row)
                session.flush()
            elif row.status == "failed":
                row.status, row.error = "queued", None
            if row.status != "succeeded":
                pending.append(row.id)
        return pending


def rows(factory: sessionmaker[Session], run_id: str, probe: str) -> list[RunShard]:
    """The shards of (run, probe) in index order."""
    with factory() as session:
        return list(session.scalars(
            select(RunShard).where(RunShard.run_id == run_id, RunShard.probe == probe).order_by(RunShard.index)
        ))


def record(factory: sessionmaker[Session], shard_id: str, worker: str, *, result: dict | None = None,
           error: str | None = None) -> None:
    """Record the outcome of a shard ``worker`` holds; a worker that lost it records nothing."""
    with session_scope(factory) as session:
        session.execute(
            update(RunShard)
            .where(RunShard.id == shard_id, RunShard.status == "running", RunShard.worker == worker[:200])
            .values(status="failed" if error else "succeeded", result=result, error=error, finished_at=utcnow())
        )


def heartbeat(factory: sessionmaker[Session], shard_id: str, worker: str) -> bool:
    with session_scope(factory) as session:
        result = session.execute(
            update(RunShard)
            .where(RunShard.id == shard_id, RunShard.status == "running", RunShard.worker == worker[:200])
            .values(heartbeat_at=utcnow())
        )
        return result.rowcount == 1


def release(factory: sessionmaker[Session], shard_id: str, worker: str) -> bool:
    """Hand a shard this worker holds back to the queue (its worker is shutting down)."""
    with session_scope(factory) as session:
        result = session.execute(
            update(RunShard)
            .where(RunShard.id == shard_id, RunShard.status == "running", RunShard.worker == worker[:200])
            .values(status="queued", heartbeat_at=utcnow())
        )
        return result.rowcount == 1


def reap(factory: sessionmaker[Session], stale_after_s: float) -> list[tuple[str, str]]:
    """Running shards of running runs whose holder is dead go back to ``queued``; returns their
    (shard id, run queue) so a message can be sent for each. Shards of runs that are not running
    are left alone: nobody would merge them (the run's reaping decides the run's fate)."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    with factory() as session:
        running = session.execute(
            # Staleness is decided in SQL: SQLite hands datetimes back without their time zone.
            select(RunShard.id, RunShard.worker, Run.queue,
                   or_(RunShard.heartbeat_at.is_(None), RunShard.heartbeat_at < cutoff))
            .join(Run, Run.id == RunShard.run_id)
            .where(RunShard.status == "running", Run.status == RunStatus.running)
        ).all()
    released = []
    for shard_id, worker, queue, stale in running:
        if not (stale or liveness.is_dead(worker)):
            continue
        with session_scope(factory) as session:
            result = session.execute(
                update(RunShard)
                .where(RunShard.id == shard_id, RunShard.status == "running", RunShard.worker == worker)
                .values(status="queued", heartbeat_at=utcnow())
            )
            if result.rowcount == 1:
                released.append((shard_id, queue))
    return released


def queue_of(factory: sessionmaker[Session], shard_id: str) -> str:
    """The queue of the shard's run (shards travel on their run's queue)."""
    with factory() as session:
        return session.scalar(select(Run.queue).join(RunShard, RunShard.run_id == Run.id).where(RunShard.id == shard_id)) or "cpu"
