"""Every read and status transition of run shards; claims are conditional UPDATEs, so exactly one
worker computes each shard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.orm import Run, RunShard, RunStatus
from app.orm.base import utcnow


@dataclass(frozen=True)
class ClaimedShard:
    id: str
    run_id: str
    run_attempt: int  # the run's attempt this shard is computed for (keys the prepared inputs)
    probe: str
    index: int
    spec: dict


def _claimable(stale_after_s: float):
    stale = and_(RunShard.status == "running", RunShard.heartbeat_at < utcnow() - timedelta(seconds=stale_after_s))
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
            result = session.execute(
                update(RunShard)
                .where(RunShard.id == candidate, _claimable(stale_after_s))
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


def record(factory: sessionmaker[Session], shard_id: str, *, result: dict | None = None, error: str | None = None) -> None:
    with session_scope(factory) as session:
        session.execute(
            update(RunShard)
            .where(RunShard.id == shard_id, RunShard.status == "running")
            .values(status="failed" if error else "succeeded", result=result, error=error, finished_at=utcnow())
        )


def heartbeat(factory: sessionmaker[Session], shard_id: str) -> None:
    with session_scope(factory) as session:
        session.execute(update(RunShard).where(RunShard.id == shard_id, RunShard.status == "running").values(heartbeat_at=utcnow()))
