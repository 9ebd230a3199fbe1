"""A database behind the Alembic head: healthz says so and writes are a 503 naming the fix, until
the migration runs (no restart needed)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from app.api import schema_guard
from app.config import Settings
from app.main import create_app
from app.migrate import head_revision, upgrade
from tests.app.api.helpers import MLP_ARCH


def test_writes_wait_for_the_migration(tmp_path, monkeypatch):
    # A distributed deployment that forgot `priorprobe db upgrade`: the API does not migrate it.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'old.db'}"
    upgrade(url, "0002")
    monkeypatch.setattr(schema_guard, "_RECHECK_S", 0.0)
    settings = Settings(data_dir=data_dir, database_url=url, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as client:
        health = client.get("/api/v1/healthz")
        assert health.status_code == 503 and "priorprobe db upgrade" in health.json()["migrations"]
        spec = {"model": {"arch": MLP_ARCH}, "probes": {"weight_spectrum": {}}}
        response = client.post("/api/v1/runs", json=spec)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "priorprobe db upgrade" in response.json()["detail"] and head_revision() in response.json()["detail"]
        assert client.get("/api/v1/probes").status_code == 200  # reads that need no new table still work
        upgrade(url)
        time.sleep(0.01)
        # Past the schema check now; this one fails on the (unreachable) broker, with its own 503.
        response = client.post("/api/v1/runs", json=spec)
        assert response.status_code == 503 and "broker" in response.json()["detail"]
