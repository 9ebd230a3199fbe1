"""Inputs built to break the API get 4xx JSON answers that name the field, on SQLite and PostgreSQL.

PostgreSQL refuses NUL bytes in text and JSONB, so the NUL cases only ever failed there; the
distributed app here queues runs on the test Redis database and never executes them.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.app.api.helpers import MLP_ARCH, checkpoint_bytes, upload_model


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def client(request, tmp_path):
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path / "data", max_upload_bytes=4 * 2**20, max_json_body_bytes=64 * 1024)
    else:
        settings = Settings(database_url=request.getfixturevalue("postgres_url"),
                            broker_url=request.getfixturevalue("redis_url"),
                            data_dir=tmp_path / "data", max_upload_bytes=4 * 2**20, max_json_body_bytes=64 * 1024)
    with TestClient(create_app(settings)) as client:
        yield client


def _only_error(response, status: int = 422) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    (error,) = response.json()["detail"]
    return error


def test_nul_bytes_are_422_naming_the_field(client):
    # The PostgreSQL database is shared by the session's tests: compare counts, not absolutes.
    runs, models = (client.get(f"/api/v1/{kind}").json()["count"] for kind in ("runs", "models"))
    assert _only_error(client.get("/api/v1/runs/abc%00def"))["loc"] == ["path", "run_id"]
    assert _only_error(client.get("/api/v1/models/%00"))["loc"] == ["path", "model_ref"]
    assert _only_error(client.get("/api/v1/runs", params={"model_id": "a\x00"}))["loc"] == ["query", "model_id"]
    assert _only_error(client.get("/api/v1/metrics", params={"key": "x\x00"}))["loc"] == ["query", "key"]
    spec = {"model": {"arch": MLP_ARCH}, "probes": {"weight_spectrum": {}},
            "task": {"dataset": {"builtin": "gaussian_clusters", "note": "a\x00b"}, "target_error": 0.5}}
    error = _only_error(client.post("/api/v1/runs", json=spec))
    assert error["loc"] == ["body", "task", "dataset", "note"] and "NUL" in error["msg"]
    response = client.post("/api/v1/models", files={"file": ("net.safetensors", checkpoint_bytes())},
                           data={"arch": json.dumps(MLP_ARCH), "name": "net\x00"})
    assert _only_error(response)["loc"] == ["body", "name"]
    assert client.get("/api/v1/runs").json()["count"] == runs
    assert client.get("/api/v1/models").json()["count"] == models


def test_lone_surrogates_are_422_naming_the_field(client):
    # "\ud800" is valid JSON text that Python parses into a str that cannot be encoded as UTF-8.
    # As a value the spec keeps unvalidated (a generator parameter), it is caught before storage:
    body = '{"model": {"arch": %s}, "probes": {"weight_spectrum": {}}, "task": ' \
           '{"dataset": {"builtin": "gaussian_clusters", "note": "\\ud800"}, "target_error": 0.5}}' % json.dumps(MLP_ARCH)
    error = _only_error(client.post("/api/v1/runs", content=body, headers={"content-type": "application/json"}))
    assert error["loc"] == ["body", "task", "dataset", "note"] and "surrogate" in error["msg"]
    # Where pydantic validates the string itself, its own 422 names the field, and the echo of the
    # bad input is still valid UTF-8.
    body = body.replace('"note": "\\ud800"', '"\\ud800": 1')
    error = _only_error(client.post("/api/v1/runs", content=body, headers={"content-type": "application/json"}))
    assert error["loc"][:3] == ["body", "task", "dataset"]
    # Invalid UTF-8 in a URL is decoded with replacement characters: a plain 404, not a 500.
    response = client.get("/api/v1/runs/%ED%A0%80")
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")


def test_huge_integers_are_422(client):
    assert _only_error(client.get("/api/v1/runs", params={"offset": 2**64}))["loc"] == ["query", "offset"]
    assert _only_error(client.get("/api/v1/models", params={"offset": 10**40}))["loc"] == ["query", "offset"]
    spec = {"model": {"arch": MLP_ARCH}, "probes": {"weight_spectrum": {}}, "seed": 2**70}
    assert _only_error(client.post("/api/v1/runs", json=spec))["loc"] == ["body", "seed"]


def test_echoed_inputs_are_truncated(client):
    long_id = "x" * 5000
    error = _only_error(client.post("/api/v1/runs", json={"model": {"weights": long_id}, "probes": {"weight_spectrum": {}}}))
    assert error["loc"] == ["body", "model", "weights"]
    assert len(error["input"]) < 300 and error["input"].endswith("(5000 characters)")
    response = client.post("/api/v1/runs", json={"model": {"arch": MLP_ARCH}, "probes": list(range(5000))})
    assert response.status_code == 422 and len(response.content) < 5000


def test_json_body_limit_is_its_own_and_413_is_json(client):
    big = json.dumps({"model": {"arch": MLP_ARCH}, "probes": {"weight_spectrum": {}}, "pad": "x" * 70_000})
    response = client.post("/api/v1/runs", content=big, headers={"content-type": "application/json"})
    error = _only_error(response, 413)
    assert error["type"] == "too_large" and str(64 * 1024) in error["msg"]
    # An upload of that size is fine: multipart bodies have the upload limit.
    model = upload_model(client)
    assert model["parameter_count"] > 0


def test_405_lists_every_method_of_the_path(client):
    response = client.put("/api/v1/runs")
    assert response.status_code == 405 and response.headers["content-type"].startswith("application/json")
    assert response.headers["allow"] == "GET, POST"


def test_every_error_status_is_documented(client):
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "503" in operation["responses"], (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in operation["responses"], (method, path)
    assert {"400", "413", "422"} <= set(schema["paths"]["/api/v1/runs"]["post"]["responses"])
    assert {"404", "409"} <= set(schema["paths"]["/api/v1/runs/{run_id}/report"]["get"]["responses"])
