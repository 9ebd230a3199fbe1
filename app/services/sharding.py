"""Spread one probe's shards over every worker, with the run's own task working too.

The run's task writes one ``run_shards`` row per shard (keeping rows already finished by an
earlier attempt), enqueues one shard job per unfinished shard, then claims and computes shards
itself until none is left to claim, and waits for the ones other workers hold. Claims are
conditional UPDATEs, so each shard is computed once; a shard whose worker died (stale heartbeat)
is claimable again. Because the run's task never just waits while work is queued, a single
worker finishes a sharded run on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.runtime import Runtime
from app.services import run_state, shard_state
from app.services.shards import compute_shard
from workers.probes.base import Probe, ProbeContext

SubmitShard = Callable[[str, str], None]  # (shard id, queue) -> None


class ShardFailed(RuntimeError):
    pass


class RunNotRunning(RuntimeError):
    """The run stopped being ``running`` (failed or finished elsewhere) while its shards were out."""


class DistributedShardExecutor:
    def __init__(self, runtime: Runtime, run_id: str, submit_shard: SubmitShard, worker: str, poll_s: float = 0.25):
        self._runtime, self._run_id, self._submit, self._worker = runtime, run_id, submit_shard, worker
        self._poll_s = poll_s

    def map(self, probe: Probe, shards: list[dict], context: ProbeContext) -> list[dict]:
        factory, settings = self._runtime.session_factory, self._runtime.settings
        pending = shard_state.ensure_rows(factory, self._run_id, probe.name, shards)
        queue = "gpu" if settings.gpu_queue and probe.benefits_from_gpu else "cpu"
        for shard_id in pending:
            self._submit(shard_id, queue)
        while True:
            claimed = shard_state.claim(factory, self._worker, settings.stale_run_after_s, run_id=self._run_id, probe=probe.name)
            if claimed is not None:
                # This process already holds the run's model and dataset: no need to prepare them.
                compute_shard(self._runtime, claimed, self._worker, lambda: (probe, context))
            rows = shard_state.rows(factory, self._run_id, probe.name)
            failed = [row for row in rows if row.status == "failed"]
            if failed:
                raise ShardFailed(f"shard {failed[0].index} of {probe.name} failed on {failed[0].worker}: {failed[0].error}")
            done = sum(row.status == "succeeded" for row in rows)
            context.progress(done / len(rows), f"{done}/{len(rows)} shards done")
            if done == len(rows):
                return [row.result for row in rows]
            if claimed is None:
                # Shards of a run that is no longer running are not claimable, so waiting for
                # them would never end.
                if not run_state.heartbeat(factory, self._run_id, self._worker):
                    raise RunNotRunning(f"run {self._run_id} is no longer running; its shards were abandoned")
                time.sleep(self._poll_s)
