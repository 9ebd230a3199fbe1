"""Shards on a real (SQLite) database: computed by the one shard-compute path, inputs prepared
once per run attempt, shards of a run that is no longer running dropped, and the run's own task
computing every shard when no other worker helps."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.migrate import upgrade
from app.orm import Run, RunShard, RunStatus
from app.runtime import Runtime
from app.services import run_state, shard_state
from app.services.execution import process_run
from app.services.sharding import DistributedShardExecutor, RunNotRunning
from app.services.shards import process_shard
from workers.probes.base import LocalShardExecutor
from workers.probes.registry import instantiate_probes
from workers.runner import load_task_dataset, pick_device, prepare_model, probe_context
from workers.runspec import RunSpec

SPEC = {
    "model": {"arch": {"name": "mlp", "in_dim": 2, "hidden": [8], "out_dim": 3}},
    "task": {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3, "n_train": 32, "n_test": 32},
             "target_error": 0.4, "train": {"epochs": 1, "batch_size": 16}},
    "probes": {"inductive_bias": {"sampler": "trained", "n_hypotheses": 60, "shard_size": 30, "chunk_size": 30}},
    "seed": 3,
}


class _RecordingExecutor(LocalShardExecutor):
    """Computes shards in this process, as the CLI does, and keeps the plan and the results."""

    def map(self, probe, shards, context):
        self.shards = shards
        self.results = super().map(probe, shards, context)
        return self.results


@pytest.fixture(scope="module")
def local_shards() -> _RecordingExecutor:
    """The probe's shard plan and each shard's result, computed locally (the reference)."""
    spec = RunSpec.model_validate(SPEC)
    prepared = prepare_model(spec, weights_path=None, device=pick_device("cpu"))
    executor = _RecordingExecutor()
    probe = instantiate_probes(spec)["inductive_bias"]
    probe.run(probe_context(spec, prepared, load_task_dataset(spec), shards=executor))
    assert len(executor.shards) == 2
    return executor


@pytest.fixture
def runtime(tmp_path) -> Runtime:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None, device="cpu")
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    runtime = Runtime(settings)
    yield runtime
    runtime.dispose()


def _queued_run(runtime: Runtime, spec: dict = SPEC) -> str:
    with runtime.session_factory() as session:
        run = Run(spec=spec, status=RunStatus.queued, queue="cpu", progress=0.0, attempts=0)
        session.add(run)
        session.commit()
        return run.id


def _running_run_with_shards(runtime: Runtime, shards: list[dict], spec: dict = SPEC) -> tuple[str, list[str]]:
    run_id = _queued_run(runtime, spec)
    assert run_state.claim(runtime.session_factory, run_id, "owner", stale_after_s=300)
    return run_id, shard_state.ensure_rows(runtime.session_factory, run_id, "inductive_bias", shards)


def _shard_rows(runtime: Runtime, run_id: str) -> list[RunShard]:
    return shard_state.rows(runtime.session_factory, run_id, "inductive_bias")


def test_shards_of_one_run_prepare_its_inputs_once_and_equal_the_local_results(runtime, local_shards):
    run_id, shard_ids = _running_run_with_shards(runtime, local_shards.shards)
    assert [process_shard(shard_id, runtime, "helper") for shard_id in shard_ids] == ["succeeded", "succeeded"]
    assert runtime.prepared_runs.builds == 1
    assert runtime.prepared_runs.keys() == [(run_id, 1)]
    rows = _shard_rows(runtime, run_id)
    assert [(row.status, row.worker) for row in rows] == [("succeeded", "helper")] * 2
    assert [row.result for row in rows] == local_shards.results


def test_a_new_attempt_of_the_run_prepares_its_inputs_again(runtime, local_shards):
    run_id, shard_ids = _running_run_with_shards(runtime, local_shards.shards)
    assert process_shard(shard_ids[0], runtime, "helper") == "succeeded"
    # The owner died; the run is claimed again (attempt 2), and its other shard is computed.
    assert run_state.claim(runtime.session_factory, run_id, "new owner", stale_after_s=0.0)
    assert process_shard(shard_ids[1], runtime, "helper") == "succeeded"
    assert runtime.prepared_runs.builds == 2
    assert runtime.prepared_runs.keys() == [(run_id, 1), (run_id, 2)]


@pytest.mark.parametrize("status", ["queued", "failed", "succeeded"])
def test_a_shard_of_a_run_that_is_not_running_is_dropped(runtime, local_shards, status):
    # Another run is running: the check must look at this shard's own run, not at any run.
    _running_run_with_shards(runtime, local_shards.shards)
    run_id, shard_ids = _running_run_with_shards(runtime, local_shards.shards)
    with runtime.session_factory() as session:
        session.get(Run, run_id).status = status
        session.commit()
    assert process_shard(shard_ids[0], runtime, "helper") == "skipped"
    assert runtime.prepared_runs.builds == 0
    assert [row.status for row in _shard_rows(runtime, run_id)] == ["queued", "queued"]


def test_a_claimed_or_finished_shard_is_not_computed_twice(runtime, local_shards):
    run_id, shard_ids = _running_run_with_shards(runtime, local_shards.shards)
    assert process_shard(shard_ids[0], runtime, "helper") == "succeeded"
    assert process_shard(shard_ids[0], runtime, "second delivery") == "skipped"
    held = shard_state.claim(runtime.session_factory, "other", 300, shard_id=shard_ids[1])
    assert held is not None and held.run_attempt == 1
    assert process_shard(shard_ids[1], runtime, "helper") == "skipped"
    assert [row.worker for row in _shard_rows(runtime, run_id)] == ["helper", "other"]


def test_a_shard_whose_inputs_cannot_be_prepared_fails_with_the_reason(runtime, local_shards):
    spec = {**SPEC, "task": {**SPEC["task"], "dataset": {"id": "no-such-dataset"}}}
    run_id, shard_ids = _running_run_with_shards(runtime, local_shards.shards, spec=spec)
    assert process_shard(shard_ids[0], runtime, "helper") == "failed"
    row = _shard_rows(runtime, run_id)[0]
    assert row.status == "failed" and row.error.startswith("invalid input:") and "no-such-dataset" in row.error


def test_the_runs_own_task_computes_every_shard_when_no_worker_helps(runtime, local_shards):
    run_id = _queued_run(runtime)
    submitted = []
    status = process_run(run_id, runtime, "owner", submit_shard=lambda shard_id, queue: submitted.append((shard_id, queue)))
    assert status == "succeeded"
    rows = _shard_rows(runtime, run_id)
    assert sorted(submitted) == sorted((row.id, "cpu") for row in rows)
    assert [(row.status, row.worker) for row in rows] == [("succeeded", "owner")] * 2
    assert [row.result for row in rows] == local_shards.results
    assert runtime.prepared_runs.builds == 0  # the owner uses the model and dataset it already holds


def test_the_runs_own_task_stops_waiting_once_the_run_is_no_longer_running(runtime, local_shards):
    run_id, shard_ids = _running_run_with_shards(runtime, local_shards.shards)
    for shard_id in shard_ids:  # another worker holds every shard, heartbeat fresh
        assert shard_state.claim(runtime.session_factory, "other", 300, shard_id=shard_id) is not None
    run_state.record_failure(runtime.session_factory, run_id, "failed elsewhere")
    spec = RunSpec.model_validate(SPEC)
    probe = instantiate_probes(spec)["inductive_bias"]
    context = probe_context(spec, prepare_model(spec, weights_path=None, device=pick_device("cpu")), load_task_dataset(spec))
    executor = DistributedShardExecutor(runtime, run_id, lambda shard_id, queue: None, "owner", poll_s=0.01)
    with pytest.raises(RunNotRunning):
        executor.map(probe, local_shards.shards, context)
