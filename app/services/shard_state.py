"""Status transitions of run shards, each a conditional UPDATE so exactly one worker computes each."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.orm import RunShard
from app.orm.base import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedShard:
    id: str
    run_id: str
    probe: str
    index: int
    spec: dict


def _claimable(stale_after_s: float):
    stale = and_(RunShard.status == "running", RunShard.heartbeat_at < utcnow() - timedelta(seconds=stale_after_s))
    return or_(RunShard.status == "queued", stale)


def claim(
    factory: sessionmaker[Session], worker: str, stale_after_s: float, *, shard_id: str | None = None,
    run_id: str | None = None, probe: str | None = None,
) -> ClaimedShard | None:
    """Claim a specific shard, or the first claimable shard of (run, probe); None if none is."""
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
            now = utcnow()
            result = session.execute(
                update(RunShard)
                .where(RunShard.id == candidate, _claimable(stale_after_s))
                .values(status="running", worker=worker[:200], heartbeat_at=now)
            )
            if result.rowcount == 1:
                row = session.get(RunShard, candidate)
                return ClaimedShard(row.id, row.run_id, row.probe, row.index, row.spec)
    return None


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


def execute_claimed(runtime, shard: ClaimedShard, worker: str) -> str:
    """Compute a claimed shard and record its result or its error."""
    from app.services.execution import describe_failure, execute_shard
    from app.services.heartbeat import Heartbeat

    factory = runtime.session_factory
    try:
        with Heartbeat(lambda: heartbeat(factory, shard.id), runtime.settings.heartbeat_every_s, f"heartbeat-shard-{shard.id}"):
            result = execute_shard(runtime, shard.run_id, shard.probe, shard.spec)
    except Exception as exc:
        log.exception("shard %s (run %s, %s #%d) failed", shard.id, shard.run_id, shard.probe, shard.index)
        record(factory, shard.id, error=describe_failure(exc))
        return "failed"
    record(factory, shard.id, result=result)
    return "succeeded"
