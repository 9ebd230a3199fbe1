"""Shared fixtures: the embedded app on SQLite, and the real PostgreSQL + Redis + Celery stack.

Integration fixtures create a throw-away PostgreSQL database and use a dedicated Redis database,
so test runs never see each other's rows or messages; they start two real Celery worker processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app

ADMIN_URL = os.environ.get(
    "PRIORPROBE_TEST_DATABASE_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PRIORPROBE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests (use with ``pytest.mark.usefixtures``):
    with more threads each Hessian-vector product is dominated by OpenMP start-up and, on a busy
    machine, by waiting for descheduled threads (measured 20x slower on 2 shared cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None, max_upload_bytes=4 * 2**20)


@pytest.fixture
def embedded_client(embedded_settings: Settings):
    with TestClient(create_app(embedded_settings)) as client:
        yield client


def wait_for_run(client: TestClient, run_id: str, timeout_s: float = 120.0) -> dict:
    """Poll the run row until it finishes; returns the last status body (and every progress seen)."""
    deadline = time.monotonic() + timeout_s
    seen_progress = []
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/runs/{run_id}").json()
        seen_progress.append(body["progress"])
        if body["status"] in ("succeeded", "failed", "cancelled"):
            body["seen_progress"] = seen_progress
            return body
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s} s; last: {body}")


# --- the real stack -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    name = f"priorprobe_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {ADMIN_URL} is not reachable ({exc}); start it (see README, Tests)")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from app.migrate import upgrade

    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see README, Tests)")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("priorprobe-shared")


@pytest.fixture(scope="session")
def distributed_env(postgres_url, redis_url, shared_data_dir) -> dict[str, str]:
    return {
        "PRIORPROBE_DATABASE_URL": postgres_url,
        "PRIORPROBE_BROKER_URL": redis_url,
        "PRIORPROBE_DATA_DIR": str(shared_data_dir),
        "PRIORPROBE_HEARTBEAT_EVERY_S": "1",
        # Webhook tests deliver to receivers on 127.0.0.1 and retry within a test's patience.
        "PRIORPROBE_WEBHOOK_ALLOW_PRIVATE": "true",
        "PRIORPROBE_WEBHOOK_RETRY_BASE_S": "0.2",
        "PRIORPROBE_WEBHOOK_MAX_ATTEMPTS": "3",
        "PRIORPROBE_WORKER_METRICS_PORT": "0",  # two workers on one host; tests/integration/test_faults.py scrapes one
    }


@dataclass
class CeleryWorkers:
    names: list[str]  # Celery node names, as stored in runs.worker and run_shards.worker
    processes: list[subprocess.Popen]
    logs: list[Path]


@pytest.fixture(scope="session")
def celery_workers(distributed_env, tmp_path_factory):
    """Two real worker processes started as deployments start them (``priorprobe worker``, prefork
    pool, one child each), consuming both queues; stopped after the session. Two, so that the path
    where one worker computes shards of a run another worker owns is exercised."""
    folder = tmp_path_factory.mktemp("workers")
    # One torch thread per worker: two workers with a thread per core each oversubscribe a small
    # machine, and OpenMP threads waiting for descheduled siblings made a 0.2 s shard take 20 s.
    env = {**os.environ, **distributed_env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    tag = uuid.uuid4().hex[:6]
    names = [f"test-{tag}-{letter}@{socket.gethostname()}" for letter in "ab"]
    processes, logs = [], []
    for name in names:
        log_path = folder / f"{name.split('@')[0]}.log"
        with open(log_path, "w") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--queues=cpu,gpu", "--pool=prefork", "--concurrency=1",
                 "--loglevel=INFO", f"--hostname={name}"],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            ))
        logs.append(log_path)
    workers = CeleryWorkers(names, processes, logs)
    deadline = time.monotonic() + 90
    try:
        for process, log_path in zip(processes, logs):
            while "ready." not in log_path.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Celery worker did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield workers
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def distributed_settings(distributed_env) -> Settings:
    return Settings(
        database_url=distributed_env["PRIORPROBE_DATABASE_URL"],
        broker_url=distributed_env["PRIORPROBE_BROKER_URL"],
        data_dir=Path(distributed_env["PRIORPROBE_DATA_DIR"]),
        max_upload_bytes=4 * 2**20,
        webhook_allow_private=True,
    )


@pytest.fixture
def distributed_client(distributed_settings, celery_workers):
    with TestClient(create_app(distributed_settings)) as client:
        yield client


# --- a real HTTP server for clients that are not the TestClient ----------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app served by uvicorn on 127.0.0.1 in a thread of this process: real HTTP, real sockets."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="session")
def light_client_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with only ``pip install ./client`` (from PyPI: httpx, pydantic);
    returns its ``bin`` folder. Built from a copy of client/, so the build leaves the tree clean."""
    import shutil
    import venv

    root = tmp_path_factory.mktemp("light-client")
    source = shutil.copytree(REPO_ROOT / "client", root / "client", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    bin_dir = root / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
                            env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"pip install ./client failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return bin_dir


def light_client_env(**extra: str) -> dict[str, str]:
    """The environment of a CI job that has only the light client: no PYTHONPATH into this repo."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("PRIORPROBE_", "GITHUB_", "CI_"))}
    return {**env, **extra}
