"""Spread one probe's shards over every Celery worker, with the run's own task working too.

The run's task writes one ``run_shards`` row per shard (keeping rows already finished by an
earlier attempt), enqueues one message per unfinished shard, then claims and computes shards
itself until none is left to claim, and waits for the ones other workers hold. Claims are
conditional UPDATEs, so each shard is computed once; a shard whose worker died (stale heartbeat)
is claimable again. Because the run's task never just waits while work is queued, a single
worker finishes a sharded run on its own.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from app.db import session_scope
from app.orm import RunShard
from app.runtime import Runtime
from app.services import run_state, shard_state
from app.services.heartbeat import Heartbeat
from workers.probes.base import Probe, ProbeContext

log = logging.getLogger(__name__)


class ShardFailed(RuntimeError):
    pass


class DistributedShardExecutor:
    def __init__(self, runtime: Runtime, run_id: str, submit_shard, worker: str, poll_s: float = 0.25):
        self._runtime, self._run_id, self._submit, self._worker = runtime, run_id, submit_shard, worker
        self._poll_s = poll_s

    def _ensure_rows(self, probe: Probe, shards: list[dict]) -> list[str]:
        """Create missing shard rows; return the ids of shards that still need computing."""
        with session_scope(self._runtime.session_factory) as session:
            existing = {
                row.index: row
                for row in session.scalars(select(RunShard).where(RunShard.run_id == self._run_id, RunShard.probe == probe.name))
            }
            pending = []
            for index, spec in enumerate(shards):
                row = existing.get(index)
                if row is None or row.spec != spec:
                    if row is not None:  # same index, different work: an earlier attempt's plan
                        session.delete(row)
                        session.flush()
                    row = RunShard(run_id=self._run_id, probe=probe.name, index=index, spec=spec, status="queued")
                    session.add(row)
                    session.flush()
                elif row.status == "failed":
                    row.status, row.error = "queued", None
                if row.status != "succeeded":
                    pending.append(row.id)
            return pending

    def _statuses(self, probe: Probe) -> list[RunShard]:
        with self._runtime.session_factory() as session:
            return list(session.scalars(
                select(RunShard).where(RunShard.run_id == self._run_id, RunShard.probe == probe.name).order_by(RunShard.index)
            ))

    def map(self, probe: Probe, shards: list[dict], context: ProbeContext) -> list[dict]:
        factory, settings = self._runtime.session_factory, self._runtime.settings
        pending = self._ensure_rows(probe, shards)
        queue = "gpu" if settings.gpu_queue and probe.benefits_from_gpu else "cpu"
        for shard_id in pending:
            self._submit(shard_id, queue)
        while True:
            claimed = shard_state.claim(factory, self._worker, settings.stale_run_after_s, run_id=self._run_id, probe=probe.name)
            if claimed is not None:
                beat = Heartbeat(lambda: shard_state.heartbeat(factory, claimed.id), settings.heartbeat_every_s,
                                 f"heartbeat-shard-{claimed.id}")
                try:
                    with beat:
                        result = probe.run_shard(context, claimed.spec)
                except Exception as exc:
                    shard_state.record(factory, claimed.id, error=f"{type(exc).__name__}: {exc}")
                    raise
                shard_state.record(factory, claimed.id, result=result)
            rows = self._statuses(probe)
            failed = [row for row in rows if row.status == "failed"]
            if failed:
                raise ShardFailed(f"shard {failed[0].index} of {probe.name} failed on {failed[0].worker}: {failed[0].error}")
            done = sum(row.status == "succeeded" for row in rows)
            context.progress(done / len(rows), f"{done}/{len(rows)} shards done")
            if done == len(rows):
                return [row.result for row in rows]
            if claimed is None:
                run_state.heartbeat(factory, self._run_id)
                time.sleep(self._poll_s)
