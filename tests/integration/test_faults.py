"""Faults on the real stack: workers killed mid-run, the broker and the database restarted.

The stack here is private to this module: a Redis on its own port and a PostgreSQL cluster of its
own (both started and stopped by the tests, so the shared services are never touched), two
``priorprobe worker`` processes and a ``priorprobe scheduler``, with small recovery settings
(heartbeat 1 s, stale after 4 s, reaper and reconciler every 1 s). Each test asserts that every
accepted run ends ``succeeded`` (or ``failed`` with a reason) within a bound, that the merged
result holds every shard exactly once, and that while a dependency is down the API answers 503
with ``Retry-After``, never 500. Each test prints its measured recovery time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.orm import Run, RunShard
from app.runtime import Runtime
from app.services.liveness import node_of
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration]

REDIS_PORT = 6390
POSTGRES_PORT = 5440
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Generous against a loaded 2-core machine; recovery itself takes seconds (printed by each test).
RUN_BOUND_S = 150

# inductive_bias in 8 shards of 30 trained hypotheses: a run of several seconds with a progress
# point per shard, so a fault lands mid-run and the merge of shards can be checked. Sized for the
# batched trainer with hand-written MLP gradients (a smaller budget finished before a fault landed).
SHARDED_SPEC = {
    "model": {"arch": {"name": "mlp", "in_dim": 2, "hidden": [16], "out_dim": 3}},
    "task": {"dataset": {"builtin": "gaussian_clusters", "in_dim": 2, "n_classes": 3, "n_train": 256, "n_test": 64},
             "target_error": 0.4, "train": {"epochs": 96, "batch_size": 16}},
    "probes": {"inductive_bias": {"sampler": "trained", "n_hypotheses": 240, "shard_size": 30, "chunk_size": 30}},
    "seed": 5,
}
N_SHARDS = 8


def _as_postgres(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, **kwargs)


class PrivateRedis:
    def __init__(self, port: int):
        self.port, self.process = port, None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        # No persistence: a restart loses every message, the worst case for the broker.
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        _wait_for_port(self.port)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


class PrivatePostgres:
    def __init__(self, port: int):
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="priorprobe-faults-pg-"))
        shutil.chown(self.folder, "postgres")
        self.data = self.folder / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/priorprobe"

    def init(self) -> None:
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        _as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "priorprobe")

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w",
                     "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


class Stack:
    """Workers and a scheduler as deployments run them, each in its own session (process group)
    so a test can kill a worker's parent, a child, or both."""

    def __init__(self, env: dict[str, str], folder: Path):
        self.env, self.folder = env, folder
        self.workers: dict[str, subprocess.Popen] = {}
        self.scheduler: subprocess.Popen | None = None
        self.tag = uuid.uuid4().hex[:6]
        self.metrics_ports = {letter: _free_port() for letter in "ab"}

    def node(self, letter: str) -> str:
        return f"fault-{self.tag}-{letter}@{socket.gethostname()}"

    def start_worker(self, letter: str) -> None:
        log_path = self.folder / f"worker-{letter}.log"
        with open(log_path, "a") as log:
            self.workers[letter] = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--queues=cpu,gpu", "--pool=prefork", "--concurrency=1",
                 "--loglevel=INFO", f"--hostname={self.node(letter)}"],
                cwd=REPO_ROOT, env={**self.env, "PRIORPROBE_WORKER_METRICS_PORT": str(self.metrics_ports[letter])},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        size = log_path.stat().st_size
        deadline = time.monotonic() + 90
        while "ready." not in log_path.read_text()[size:]:
            assert self.workers[letter].poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)

    def start_scheduler(self) -> None:
        with open(self.folder / "scheduler.log", "a") as log:
            self.scheduler = subprocess.Popen([sys.executable, "-m", "app.cli", "scheduler"], cwd=REPO_ROOT, env=self.env,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def letter_of(self, worker_id: str) -> str:
        return next(letter for letter in self.workers if self.node(letter) == node_of(worker_id))

    def kill_group(self, letter: str) -> None:
        """SIGKILL a worker's parent and its pool child at once (a machine or container dying)."""
        try:
            os.killpg(self.workers[letter].pid, signal.SIGKILL)
        except ProcessLookupError:  # nothing of it is left
            pass
        self.workers[letter].wait()

    def stop(self) -> None:
        processes = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:  # orphaned pool children of a killed parent live in the same process group
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    redis = PrivateRedis(REDIS_PORT)
    postgres = PrivatePostgres(POSTGRES_PORT)
    redis.start()
    postgres.init()
    from app.migrate import upgrade

    upgrade(postgres.url)
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
        "PRIORPROBE_DATABASE_URL": postgres.url, "PRIORPROBE_BROKER_URL": redis.url,
        "PRIORPROBE_DATA_DIR": str(folder / "data"), "PRIORPROBE_HEARTBEAT_EVERY_S": "1",
        "PRIORPROBE_STALE_RUN_AFTER_S": "4", "PRIORPROBE_RECOVER_EVERY_S": "1", "PRIORPROBE_REQUEUE_AFTER_S": "2",
        "PRIORPROBE_MAX_RUN_ATTEMPTS": "4", "PRIORPROBE_LOG_FORMAT": "json",
    }
    stack = Stack(env, folder)
    stack.redis, stack.postgres = redis, postgres
    stack.settings = Settings(database_url=postgres.url, broker_url=redis.url, data_dir=folder / "data",
                              stale_run_after_s=4, heartbeat_every_s=1)
    try:
        stack.start_worker("a")
        stack.start_worker("b")
        stack.start_scheduler()
        yield stack
    finally:
        stack.stop()
        if redis.process.poll() is None:
            redis.kill()
        postgres.remove()


@pytest.fixture
def client(stack):
    with TestClient(create_app(stack.settings)) as client:
        yield client


def _row(stack: Stack, run_id: str) -> Run:
    engine = sa.create_engine(stack.postgres.url)
    try:
        with sa.orm.Session(engine) as session:
            return session.get(Run, run_id)
    finally:
        engine.dispose()


def _shards(stack: Stack, run_id: str) -> list[RunShard]:
    engine = sa.create_engine(stack.postgres.url)
    try:
        with sa.orm.Session(engine) as session:
            return list(session.scalars(sa.select(RunShard).where(RunShard.run_id == run_id).order_by(RunShard.index)))
    finally:
        engine.dispose()


def _wait(stack: Stack, run_id: str, predicate, timeout_s: float) -> Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            row = _row(stack, run_id)
        except sa.exc.OperationalError:
            row = None  # the database is being restarted
        if row is not None and predicate(row):
            return row
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never satisfied the condition in {timeout_s} s; last: "
                         f"{row.status if row else None} {row.progress_message if row else ''} {row.error if row else ''}")


def _finished(row: Run) -> bool:
    return row.status in ("succeeded", "failed")


def _submit(client: TestClient) -> str:
    response = client.post("/api/v1/runs", json=SHARDED_SPEC)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _mid_run(stack: Stack, run_id: str) -> Run:
    """Wait until the run is running and has finished at least one shard (progress > 0)."""
    return _wait(stack, run_id, lambda row: row.status == "running" and row.progress > 0, RUN_BOUND_S)


def _assert_merged_once(client: TestClient, stack: Stack, run_id: str) -> None:
    """Every shard succeeded exactly once and the merged losses hold each hypothesis once."""
    import io

    import numpy as np

    shards = _shards(stack, run_id)
    assert [(shard.index, shard.status) for shard in shards] == [(i, "succeeded") for i in range(N_SHARDS)]
    report = client.get(f"/api/v1/runs/{run_id}/report").json()
    losses = np.load(io.BytesIO(client.get(report["artifacts"]["inductive_bias.losses.target"]["url"]).content))
    assert losses.shape == (240,)
    # Each shard's 30 losses appear in the merge in shard order, none twice, none lost (a
    # non-finite loss is stored as null in the shard row, hence float conversion: null -> nan).
    merged = np.concatenate([np.asarray(shard.result["losses"], dtype=float) for shard in shards])
    np.testing.assert_array_equal(losses, merged)


def test_sigkill_of_a_worker_child_mid_run(stack, client):
    run_id = _submit(client)
    row = _mid_run(stack, run_id)
    child_pid = int(row.worker.rsplit("/", 1)[1])
    killed_at = time.monotonic()
    os.kill(child_pid, signal.SIGKILL)
    # The parent requeues the message at once and the new child takes the run over at once: its
    # holder is a dead process of this host (no waiting for the heartbeat to go stale).
    taken = _wait(stack, run_id, lambda r: r.worker != row.worker and r.status != "queued", RUN_BOUND_S)
    resumed_s = time.monotonic() - killed_at
    finished = _wait(stack, run_id, _finished, RUN_BOUND_S)
    print(f"\nworker child SIGKILL: run resumed after {resumed_s:.1f} s, finished {time.monotonic() - killed_at:.1f} s after the kill")
    assert taken.attempts == 2
    assert finished.status == "succeeded", finished.error
    _assert_merged_once(client, stack, run_id)


def test_sigkill_of_a_worker_parent_mid_run(stack, client):
    run_id = _submit(client)
    row = _mid_run(stack, run_id)
    letter = stack.letter_of(row.worker)
    killed_at = time.monotonic()
    stack.workers[letter].send_signal(signal.SIGKILL)
    stack.workers[letter].wait()
    # The orphaned child either finishes the run or dies with it; then the reaper re-queues it and
    # the other worker takes it. Either way the run ends.
    finished = _wait(stack, run_id, _finished, RUN_BOUND_S)
    print(f"\nworker parent SIGKILL: run {finished.status} {time.monotonic() - killed_at:.1f} s after the kill "
          f"(attempts {finished.attempts})")
    assert finished.status == "succeeded", finished.error
    _assert_merged_once(client, stack, run_id)
    stack.kill_group(letter)  # the orphaned child, if still there
    stack.start_worker(letter)


def test_sigterm_on_a_worker_stops_it_within_seconds_and_requeues_the_run(stack, client):
    run_id = _submit(client)
    row = _mid_run(stack, run_id)
    letter = stack.letter_of(row.worker)
    stopping = time.monotonic()
    stack.workers[letter].terminate()
    stack.workers[letter].wait(timeout=60)
    stop_s = time.monotonic() - stopping
    finished = _wait(stack, run_id, _finished, RUN_BOUND_S)
    print(f"\nworker SIGTERM: worker exited in {stop_s:.1f} s; run {finished.status} {time.monotonic() - stopping:.1f} s "
          f"after the signal (attempts {finished.attempts})")
    # Exit within one shard of work plus Celery's shutdown, not after the rest of the run.
    assert stop_s < 20
    assert finished.status == "succeeded", finished.error
    # Handed back, not lost: the interrupted attempt is not counted, the other worker finished it.
    assert finished.attempts == row.attempts and stack.letter_of(finished.worker) != letter
    _assert_merged_once(client, stack, run_id)
    stack.start_worker(letter)


def test_two_workers_share_shards_and_one_dies_with_its_child(stack, client):
    run_id = _submit(client)
    row = _mid_run(stack, run_id)
    letter = stack.letter_of(row.worker)
    killed_at = time.monotonic()
    stack.kill_group(letter)  # parent and child: the message stays unacked, only the reaper can help
    finished = _wait(stack, run_id, _finished, RUN_BOUND_S)
    recovery_s = time.monotonic() - killed_at
    print(f"\nworker parent+child SIGKILL: run {finished.status} {recovery_s:.1f} s after the kill (attempts {finished.attempts})")
    assert finished.status == "succeeded", finished.error
    assert finished.attempts == 2 and stack.letter_of(finished.worker) != letter
    shards = _shards(stack, run_id)
    # Shards the dead worker finished are kept, not computed again by the second attempt.
    assert any(stack.letter_of(shard.worker) == letter for shard in shards) or row.progress == 0
    _assert_merged_once(client, stack, run_id)
    stack.start_worker(letter)


def test_redis_restart_with_queued_and_running_runs(stack, client):
    run_ids = [_submit(client) for _ in range(4)]  # two workers: two run, two wait in the queue
    _mid_run(stack, run_ids[0])
    stack.redis.kill()
    down_at = time.monotonic()
    response = client.post("/api/v1/runs", json=SHARDED_SPEC)
    assert response.status_code == 503 and "Retry-After" in response.headers, response.text
    health = client.get("/api/v1/healthz")
    assert health.status_code == 503 and health.headers["Retry-After"] and health.json()["broker"].startswith("unreachable")
    assert client.get(f"/api/v1/runs/{run_ids[0]}").status_code == 200  # reads need only the database
    time.sleep(2)
    stack.redis.start()  # empty: every queued message is gone
    finished = [_wait(stack, run_id, _finished, 2 * RUN_BOUND_S) for run_id in run_ids]
    print(f"\nRedis restart: all {len(run_ids)} runs finished {time.monotonic() - down_at:.1f} s after Redis went down")
    assert [row.status for row in finished] == ["succeeded"] * len(run_ids), [row.error for row in finished]


def test_postgres_stopped_during_runs_and_reads(stack, client):
    run_id = _submit(client)
    _mid_run(stack, run_id)
    stack.postgres.stop()
    down_at = time.monotonic()
    answers = [client.get("/api/v1/runs"), client.get(f"/api/v1/runs/{run_id}"), client.get(f"/api/v1/runs/{run_id}/report"),
               client.post("/api/v1/runs", json=SHARDED_SPEC), client.get("/api/v1/healthz")]
    for response in answers:
        assert response.status_code == 503, (response.request.url, response.status_code, response.text)
        assert int(response.headers["Retry-After"]) > 0 and response.headers["content-type"] == "application/json"
    time.sleep(3)
    stack.postgres.start()
    back_at = time.monotonic()
    deadline = back_at + 30
    while client.get("/api/v1/runs").status_code != 200:
        assert time.monotonic() < deadline, "the API did not recover after the database came back"
        time.sleep(0.1)
    api_recovery_s = time.monotonic() - back_at
    finished = _wait(stack, run_id, _finished, RUN_BOUND_S)
    print(f"\nPostgreSQL stop (~3 s): API answered again {api_recovery_s:.1f} s after the restart; run {finished.status} "
          f"{time.monotonic() - back_at:.1f} s after the restart (attempts {finished.attempts})")
    assert finished.status == "succeeded", finished.error
    _assert_merged_once(client, stack, run_id)


def test_worker_metrics_and_json_logs_after_the_faults(stack, client):
    """Each worker serves the summed metrics of its pool children; its log lines are JSON objects
    and those a run's job wrote carry the run id."""
    import json
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    run_id = _submit(client)
    assert _wait(stack, run_id, _finished, RUN_BOUND_S).status == "succeeded"
    totals: dict[str, float] = {}
    for letter, port in stack.metrics_ports.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            for family in text_string_to_metric_families(response.read().decode()):
                for sample in family.samples:
                    key = f"{sample.name}{sorted(sample.labels.items())}"
                    totals[key] = totals.get(key, 0) + sample.value
    assert totals["priorprobe_heartbeats_total[('outcome', 'ok')]"] > 0
    assert totals["priorprobe_run_duration_seconds_count[('outcome', 'succeeded')]"] >= 1
    assert totals["priorprobe_probe_duration_seconds_count[('probe', 'inductive_bias')]"] >= 1
    assert totals["priorprobe_jobs_total[('kind', 'run'), ('outcome', 'succeeded')]"] >= 1
    lines = [json.loads(line) for letter in "ab" for line in (stack.folder / f"worker-{letter}.log").read_text().splitlines()
             if line.startswith("{")]
    assert any(line["run_id"] == run_id for line in lines)
