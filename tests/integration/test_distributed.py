"""End to end on the real stack: FastAPI -> PostgreSQL rows -> Redis -> a real Celery worker."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.jobs.registry import RUN
from app.main import create_app
from app.orm import Run, RunStatus
from app.runtime import Runtime
from app.services import run_state
from app.services.liveness import node_of
from tests.app.api.helpers import MLP_ARCH, checkpoint_bytes, dataset_npz_bytes, upload_dataset, upload_model
from tests.conftest import wait_for_run
from workers.runner import execute_run
from workers.runspec import RunSpec

# The workers run one torch thread each (see the celery_workers fixture); local reference runs use
# the same, since bit-identity with the workers is promised for the same device and thread count.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]


def test_healthz_sees_postgres_and_redis(distributed_client):
    body = distributed_client.get("/api/v1/healthz").json()
    assert body == {"status": "ok", "mode": "distributed", "database": "ok", "broker": "ok", "migrations": "ok"}


def test_upload_queue_run_and_fetch_report(distributed_client, tmp_path):
    model = upload_model(distributed_client, arch=MLP_ARCH, seed=7, name="e2e")
    # Bytes of its own: the session's PostgreSQL database outlives this module's data directory, and
    # the submit tests' client reuses a dataset with the same sha256 (whose file would be missing).
    dataset = upload_dataset(distributed_client, dataset_npz_bytes(seed=35))
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": dataset["id"]}, "target_error": 0.5},
            "probes": {"weight_spectrum": {"n_init_samples": 3}}, "seed": 11}
    response = distributed_client.post("/api/v1/runs", json=spec)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    finished = wait_for_run(distributed_client, response.json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["progress"] == 1.0 and finished["attempts"] == 1
    assert finished["started_at"] is not None and finished["finished_at"] is not None
    report = distributed_client.get(f"/api/v1/runs/{finished['id']}/report").json()

    # The worker's numbers equal the same spec executed locally from the same checkpoint.
    checkpoint = tmp_path / "w.safetensors"
    checkpoint.write_bytes(checkpoint_bytes(MLP_ARCH, seed=7))
    local_spec = RunSpec.model_validate({**spec, "model": {"arch": MLP_ARCH, "weights": str(checkpoint)}, "task": None})
    local = execute_run(local_spec, weights_path=checkpoint, dataset=None).model_dump(mode="json")
    assert report["probes"]["weight_spectrum"] == local["probes"]["weight_spectrum"]
    assert report["run"]["dataset"]["n_train"] == 40
    # The worker wrote the metric rows with the report, in the same transaction.
    metrics = distributed_client.get(f"/api/v1/runs/{finished['id']}/metrics").json()
    assert metrics["count"] == len(report["metrics"]) > 0
    assert {m["key"]: m["value"] for m in metrics["data"]} == {m["key"]: m["value"] for m in report["metrics"]}
    trend = distributed_client.get("/api/v1/metrics", params={"key": "weight_spectrum.alpha_mean", "model_name": "e2e"}).json()
    assert [point["run_id"] for point in trend["data"]] == [finished["id"]]
    runs = distributed_client.get("/api/v1/runs", params={"model_id": model["id"]}).json()
    assert [r["id"] for r in runs["data"]] == [finished["id"]]


def test_redelivered_message_does_not_run_twice(distributed_client, distributed_settings):
    model = upload_model(distributed_client)
    run_id = distributed_client.post("/api/v1/runs", json={"model": {"weights": model["id"]}, "probes": {"weight_spectrum": {}}}).json()["id"]
    # A second delivery of the same id, as a broker redelivery would produce.
    distributed_client.app.state.jobs.enqueue(RUN, {"run_id": run_id}, "cpu")
    finished = wait_for_run(distributed_client, run_id)
    assert finished["status"] == "succeeded"
    runtime = Runtime(distributed_settings)
    try:
        # Once finished, nobody can claim it again, and the attempt count stayed at one.
        assert run_state.claim(runtime.session_factory, run_id, "intruder", stale_after_s=0.0) is False
        with runtime.session_factory() as session:
            assert session.get(Run, run_id).attempts == 1
    finally:
        runtime.dispose()


def test_orphaned_running_run_can_be_reclaimed(distributed_settings):
    runtime = Runtime(distributed_settings)
    try:
        with runtime.session_factory() as session:
            run = Run(spec={}, status=RunStatus.queued, queue="cpu", progress=0.0, attempts=0)
            session.add(run)
            session.commit()
            run_id = run.id
        factory = runtime.session_factory
        assert run_state.claim(factory, run_id, "w1", stale_after_s=3600) is True
        assert run_state.claim(factory, run_id, "w2", stale_after_s=3600) is False  # heartbeat is fresh
        assert run_state.claim(factory, run_id, "w3", stale_after_s=0.0) is True  # worker w1 presumed dead
        with factory() as session:
            row = session.get(Run, run_id)
            assert (row.status, row.attempts, row.worker) == ("running", 2, "w3")
        run_state.record_failure(factory, run_id, "stopped by test")
    finally:
        runtime.dispose()


def test_failure_is_recorded_with_its_message(distributed_client, distributed_settings):
    # Bytes of its own: its file is deleted below, and the submit tests' client reuses any dataset
    # of the session's database with the same sha256.
    dataset = upload_dataset(distributed_client, dataset_npz_bytes(seed=104), name="vanishing")
    model = upload_model(distributed_client)
    # Lose the stored file behind the API's back: the worker must record why the run failed.
    blob = Runtime(distributed_settings).store.path_for(dataset["sha256"])
    blob.unlink()
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": dataset["id"]}, "target_error": 0.5}, "probes": {"weight_spectrum": {}}}
    run_id = distributed_client.post("/api/v1/runs", json=spec).json()["id"]
    finished = wait_for_run(distributed_client, run_id)
    assert finished["status"] == "failed"
    assert finished["error"]
    report = distributed_client.get(f"/api/v1/runs/{run_id}/report")
    assert report.status_code == 409 and "failed" in report.json()["detail"]


def test_broker_down_gives_503_and_a_failed_run(distributed_settings, postgres_url):
    settings = Settings(database_url=postgres_url, broker_url="redis://127.0.0.1:1/0", data_dir=distributed_settings.data_dir)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/healthz").status_code == 503
        response = client.post("/api/v1/runs", json={"model": {"arch": MLP_ARCH}, "probes": {"weight_spectrum": {}}})
        assert response.status_code == 503 and "broker" in response.json()["detail"]
        failed = client.get("/api/v1/runs", params={"status": "failed"}).json()["data"]
        assert any(run["error"].startswith("not queued") for run in failed)


def test_migrations_match_the_orm(postgres_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from app.orm import Base

    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == [], json.dumps([str(d) for d in diff])


def test_a_second_worker_computes_shards_and_the_merged_result_equals_the_local_run(
    distributed_client, distributed_settings, celery_workers,
):
    """inductive_bias in 8 shards through two prefork workers: the run's worker and the other one
    each compute some shards (run_shards.worker says who), and the merged losses and estimate equal
    the same spec executed in this process, bit for bit (same device and thread count)."""
    from collections import Counter

    import numpy as np
    from sqlalchemy import select

    from app.orm import RunShard
    from workers.runner import load_task_dataset

    arch = {"name": "mlp", "in_dim": 2, "hidden": [16], "out_dim": 3}
    # 24 epochs of 8 minibatches make a shard of 30 hypotheses take about 0.3 s here: long enough
    # that the other worker, which skips (in milliseconds) the messages of shards the run's own
    # task already holds, reaches unclaimed ones; short enough that the run takes seconds.
    task = {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3, "n_train": 128, "n_test": 64},
            "target_error": 0.4, "train": {"epochs": 24, "batch_size": 16}}
    probe = {"sampler": "trained", "n_hypotheses": 240, "shard_size": 30, "chunk_size": 30}
    spec = {"model": {"arch": arch}, "task": task, "probes": {"inductive_bias": probe}, "seed": 5}
    run_id = distributed_client.post("/api/v1/runs", json=spec).json()["id"]
    finished = wait_for_run(distributed_client, run_id)
    assert finished["status"] == "succeeded", finished["error"]
    assert set(finished["timing"]["inductive_bias"]["phases"]) == {"sampling_s", "estimation_s"}

    runtime = Runtime(distributed_settings)
    try:
        with runtime.session_factory() as session:
            shards = session.scalars(select(RunShard).where(RunShard.run_id == run_id).order_by(RunShard.index)).all()
            owner = session.get(Run, run_id).worker
    finally:
        runtime.dispose()
    assert [(s.index, s.status) for s in shards] == [(i, "succeeded") for i in range(8)]
    # Worker ids are node/host/pid (app/services/liveness.py); the test compares nodes.
    owner = node_of(owner)
    assert owner in celery_workers.names
    (helper,) = set(celery_workers.names) - {owner}
    computed_by = Counter(node_of(s.worker) for s in shards)
    assert set(computed_by) == {owner, helper} and computed_by[helper] >= 1, computed_by

    report = distributed_client.get(f"/api/v1/runs/{run_id}/report").json()
    response = distributed_client.get(report["artifacts"]["inductive_bias.losses.target"]["url"])
    assert response.status_code == 200
    served = np.load(io.BytesIO(response.content), allow_pickle=False)

    local_spec = RunSpec.model_validate(spec)
    kept: dict[str, np.ndarray] = {}

    def keep(key: str, array: np.ndarray) -> dict:
        kept[key] = array
        return {"stored": False}

    local = execute_run(local_spec, weights_path=None, dataset=load_task_dataset(local_spec), artifact_sink=keep)
    assert served.shape == (240,)
    np.testing.assert_array_equal(served, kept["inductive_bias.losses.target"])
    assert report["probes"]["inductive_bias"] == local.model_dump(mode="json")["probes"]["inductive_bias"]


def test_rare_event_replicates_run_as_shards_through_the_workers(distributed_client):
    """method rare_event: each replicate is a shard (JSON through Redis and PostgreSQL); the merged
    estimate matches the same spec run in this process (equal up to BLAS rounding, which can change
    a threshold comparison, so compared through the intervals), with every replicate present."""
    from workers.runner import load_task_dataset

    task = {"dataset": {"builtin": "teacher", "in_dim": 4, "n_train": 30, "n_test": 30}, "target_error": 0.05}
    probe = {"sampler": "kernel", "n_hypotheses": 30, "method": "rare_event", "rare_event": {"chains": 100, "replicates": 4}}
    spec = {"model": {"arch": {"name": "mlp", "in_dim": 4, "hidden": [8], "out_dim": 1}}, "task": task,
            "probes": {"inductive_bias": probe}, "seed": 3}
    run_id = distributed_client.post("/api/v1/runs", json=spec).json()["id"]
    finished = wait_for_run(distributed_client, run_id)
    assert finished["status"] == "succeeded", finished["error"]
    target = distributed_client.get(f"/api/v1/runs/{run_id}/report").json()["probes"]["inductive_bias"]["spaces"]["target"]
    assert target["method"] == "rare_event" and len(target["rare_event"]["replicate_bits"]) == 4
    local_spec = RunSpec.model_validate(spec)
    local = execute_run(local_spec, weights_path=None, dataset=load_task_dataset(local_spec), artifact_sink=None)
    mine = local.model_dump(mode="json")["probes"]["inductive_bias"]["spaces"]["target"]
    assert max(target["ci95"][0], mine["ci95"][0]) <= min(target["ci95"][1], mine["ci95"][1])
    assert target["exact_bits"] == mine["exact_bits"]
