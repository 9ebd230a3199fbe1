"""The read paths that must hold under load: report bytes with an ETag, run lists without specs,
and sessions that never hold a connection while waiting for a thread."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.orm import Report, Run, RunStatus
from app.orm.base import utcnow

REPORT = {"run": {"id": None}, "probes": {"weight_spectrum": {"layers": [{"name": "layers.0", "alpha": 2.5}]}},
          "metrics": [], "timing": {}, "environment": {"device": "cpu"}, "artifacts": {}, "warnings": []}
SPEC = {"model": {"arch": {"name": "mlp", "in_dim": 4, "hidden": [16], "out_dim": 3}},
        "probes": {"weight_spectrum": {}}, "task": {"input_permutation": list(range(2000))}}


def store_succeeded_runs(client: TestClient, n: int) -> list[str]:
    ids = []
    with client.app.state.runtime.session_factory() as session:
        for _ in range(n):
            now = utcnow()
            run = Run(spec=SPEC, status=RunStatus.succeeded, progress=1.0, queue="cpu", started_at=now, finished_at=now)
            session.add(run)
            session.flush()
            session.add(Report(run_id=run.id, body={**REPORT, "run": {"id": run.id}}))
            ids.append(run.id)
        session.commit()
    return ids


def test_report_is_served_with_an_etag_and_304_when_unchanged(embedded_client):
    (run_id,) = store_succeeded_runs(embedded_client, 1)
    response = embedded_client.get(f"/api/v1/runs/{run_id}/report")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {**REPORT, "run": {"id": run_id}}
    etag = response.headers["etag"]
    again = embedded_client.get(f"/api/v1/runs/{run_id}/report", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = embedded_client.get(f"/api/v1/runs/{run_id}/report", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.json() == response.json()
    assert len(embedded_client.app.state.runtime.report_cache) == 1  # later reads skip the database


def test_missing_reports_are_404_and_409(embedded_client):
    assert embedded_client.get("/api/v1/runs/nope/report").status_code == 404
    with embedded_client.app.state.runtime.session_factory() as session:
        run = Run(spec=SPEC, status=RunStatus.running, queue="cpu")
        session.add(run)
        session.commit()
    response = embedded_client.get(f"/api/v1/runs/{run.id}/report")
    assert response.status_code == 409 and "running" in response.json()["detail"]
    assert len(embedded_client.app.state.runtime.report_cache) == 0


def test_run_lists_carry_summaries_and_the_single_run_its_spec(embedded_client):
    ids = store_succeeded_runs(embedded_client, 3)
    listing = embedded_client.get("/api/v1/runs").json()
    assert listing["count"] == 3 and sorted(r["id"] for r in listing["data"]) == sorted(ids)
    assert all("spec" not in r for r in listing["data"])
    assert len(json.dumps(listing)) < 3 * 1000  # the 2,000-entry permutation is not in the list
    run = embedded_client.get(f"/api/v1/runs/{ids[0]}").json()
    assert run["spec"]["task"]["input_permutation"] == list(range(2000))
    assert run["created_at"].endswith(("Z", "+00:00"))  # RFC 3339 with its offset, on SQLite too


@pytest.mark.slow
def test_more_concurrent_reads_than_threads_and_connections(tmp_path):
    """Two route threads and two pooled connections, forty concurrent readers: every request is
    answered. Before sessions were closed in the endpoint's thread, finished requests held their
    connection while waiting for a thread to serialise the response, and the others timed out
    waiting for a connection (500s)."""
    settings = Settings(data_dir=tmp_path / "data", api_threads=2, db_pool_size=2)
    with TestClient(create_app(settings)) as client:
        ids = store_succeeded_runs(client, 4)
        paths = [f"/api/v1/runs/{ids[i % 4]}" if i % 2 else "/api/v1/runs?limit=50" for i in range(200)]
        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(lambda path: client.get(path).status_code, paths))
        assert statuses == [200] * len(paths)
        assert client.get("/api/v1/healthz").status_code == 200
