"""Computing one claimed shard: the only place a shard's work is run and its outcome recorded,
whether the run's own task computes it or another worker took its message."""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.runtime import Runtime
from app.services import shard_state
from app.services.failures import describe_failure
from app.observability.log_context import bound
from app.services.heartbeat import Heartbeat
from app.services.interruption import Interrupted
from app.services.prepared_runs import PreparedRun
from app.services.run_inputs import load_run_inputs
from workers.probes.base import Probe, ProbeContext
from workers.probes.registry import instantiate_probes
from workers.runner import pick_device, prepare_model

log = logging.getLogger(__name__)

ShardInputs = Callable[[], tuple[Probe, ProbeContext]]


def compute_shard(runtime: Runtime, shard: shard_state.ClaimedShard, worker: str, inputs: ShardInputs) -> str:
    """Compute a claimed shard and record its result or its error; returns the shard's status.

    ``inputs`` yields the probe and its context; it is called inside the failure handling, so an
    input that cannot be prepared fails the shard with its reason like any probe error.
    """
    factory, settings = runtime.session_factory, runtime.settings
    beat = Heartbeat(lambda: shard_state.heartbeat(factory, shard.id, worker), settings.heartbeat_every_s,
                     f"heartbeat-shard-{shard.id}")
    try:
        with beat:
            probe, context = inputs()
            result = probe.run_shard(context, shard.spec)
    except Interrupted:
        # Shutting down (or the run was taken over): the shard goes back to the queue untouched.
        shard_state.release(factory, shard.id, worker)
        raise
    except Exception as exc:
        log.exception("shard %s (run %s, %s #%d) failed", shard.id, shard.run_id, shard.probe, shard.index)
        shard_state.record(factory, shard.id, worker, error=describe_failure(exc))
        return "failed"
    shard_state.record(factory, shard.id, worker, result=result)
    return "succeeded"


def prepare_run(runtime: Runtime, run_id: str) -> PreparedRun:
    """Read, validate and build everything the run's shards need (the expensive part, cached)."""
    inputs = load_run_inputs(runtime, run_id)
    model = prepare_model(inputs.spec, weights_path=inputs.weights_path, weights_format=inputs.weights_format,
                          device=pick_device(runtime.settings.device))
    return PreparedRun(inputs.spec, instantiate_probes(inputs.spec), model, inputs.dataset)


def process_shard(shard_id: str, runtime: Runtime, worker: str) -> str:
    """Claim one shard by id and compute it (a shard job's message); ``"skipped"`` if not claimable:
    already done, held by another worker, or its run is no longer running."""
    shard = shard_state.claim(runtime.session_factory, worker, runtime.settings.stale_run_after_s, shard_id=shard_id)
    if shard is None:
        return "skipped"

    def inputs() -> tuple[Probe, ProbeContext]:
        key = (shard.run_id, shard.run_attempt)
        return runtime.prepared_runs.get(key, lambda: prepare_run(runtime, shard.run_id)).shard_inputs(shard.probe)

    with bound(shard.run_id):
        try:
            return compute_shard(runtime, shard, worker, inputs)
        except Interrupted:
            return "requeued"
