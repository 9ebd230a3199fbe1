"""Benchmark: the dashboard's Runs page with 10,000 runs in PostgreSQL, server time per request.

Usage (from the repository root; PostgreSQL reachable at the admin URL)::

    python benchmarks/bench_dashboard.py [--runs 10000] [--models 200] [--repeats 15] [--max-ms 300]

It creates a throw-away database, migrates it, seeds ``--models`` models and ``--runs`` runs (a mix of
statuses, probes, tags and models, created over a month; about one in ten with a report), then
requests the Runs page through the app in-process (no network, so the time is the server's: routing,
queries, template) for: the first page, a deep page, and each filter (status, model name, probe, tag).
It prints the median and the worst of ``--repeats`` requests per page after one warm-up, drops the
database, and exits with status 1 if a median exceeds ``--max-ms`` (300 by default; 0 only reports).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.orm import ModelRecord, Run  # noqa: E402

ADMIN_URL = os.environ.get("PRIORPROBE_TEST_DATABASE_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PROBES = ("inductive_bias", "invariance", "simplicity", "weight_spectrum", "sharpness")
STATUSES = ("succeeded",) * 7 + ("failed", "queued", "running")


def seed(url: str, n_runs: int, n_models: int, rng: random.Random) -> None:
    engine = sa.create_engine(url)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    models = [{
        "id": uuid.uuid4().hex, "name": f"net-{i % 40}", "tags": [f"team-{i % 5}", "nightly" if i % 2 else "release"],
        "arch": {"name": "mlp", "in_dim": 64, "hidden": [64, 64], "out_dim": 10}, "family": "mlp", "sha256": f"{i:064x}",
        "size_bytes": 1000, "format": "safetensors", "parameter_count": 9000, "created_at": start + timedelta(minutes=i),
    } for i in range(n_models)]  # fmt: skip
    runs = []
    for i in range(n_runs):
        model = rng.choice(models)
        probes = {name: {} for name in rng.sample(PROBES, rng.randint(1, len(PROBES)))}
        status = rng.choice(STATUSES)
        created = start + timedelta(seconds=i * 250)
        runs.append({
            "id": uuid.uuid4().hex, "status": status, "model_id": model["id"], "dataset_id": None, "queue": "cpu",
            "spec": {"model": {"weights": model["id"], "arch": model["arch"]},
                     "task": {"dataset": {"builtin": "digits"}, "loss": "mse", "target_error": 0.08}, "probes": probes, "seed": i},
            "progress": 1.0 if status in ("succeeded", "failed") else rng.random(), "progress_message": "sampling 40/120",
            "error": "worker lost" if status == "failed" else None, "attempts": 1, "created_at": created,
            "started_at": created + timedelta(seconds=5), "finished_at": created + timedelta(minutes=3) if status in ("succeeded", "failed") else None,
        })  # fmt: skip
    with engine.begin() as connection:
        connection.execute(sa.insert(ModelRecord), models)
        for chunk in range(0, len(runs), 2000):
            connection.execute(sa.insert(Run), runs[chunk : chunk + 2000])
        connection.execute(sa.text("ANALYZE"))
    engine.dispose()


def time_pages(url: str, repeats: int) -> dict[str, tuple[float, float]]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    pages = {
        "first page": "/", "page 100": "/?page=100", "status=running": "/?status=running", "model name": "/?model_name=net-7",
        "probe=sharpness": "/?probe=sharpness", "tag=team-3": "/?tag=team-3", "table fragment": "/runs/table",
    }  # fmt: skip
    # A broker URL makes the app use Celery (nothing is queued here); it must not start the embedded worker.
    settings = Settings(database_url=url, broker_url="redis://127.0.0.1:6379/15", data_dir=Path(tempfile.mkdtemp()))
    results = {}
    with TestClient(create_app(settings)) as client:
        for name, path in pages.items():
            assert client.get(path).status_code == 200, path  # warm-up (template compile, connection pool)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            results[name] = (statistics.median(times), max(times))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--max-ms", type=float, default=300.0)
    args = parser.parse_args()
    name = f"priorprobe_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        started = time.perf_counter()
        seed(url, args.runs, args.models, random.Random(0))
        print(f"seeded {args.runs} runs of {args.models} models in {time.perf_counter() - started:.1f} s (PostgreSQL)")
        results = time_pages(url, args.repeats)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"{'page':<18} {'median ms':>10} {'worst ms':>10}")
    for page, (median, worst) in results.items():
        print(f"{page:<18} {median:>10.1f} {worst:>10.1f}")
    slow = [page for page, (median, _) in results.items() if args.max_ms and median > args.max_ms]
    if slow:
        print(f"over {args.max_ms:g} ms: {', '.join(slow)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
