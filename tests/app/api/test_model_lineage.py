"""Model names, versions and git provenance; ``latest:<name>`` wherever a model id is accepted."""

from __future__ import annotations

from tests.app.api.helpers import upload_model
from tests.conftest import wait_for_run


def test_lineage_newest_first_and_latest_resolves_everywhere(embedded_client):
    v1 = upload_model(embedded_client, seed=1, name="resnet-ci", version="1", commit="a" * 40, branch="main",
                      ci_url="https://ci.example/1", tags="nightly")  # fmt: skip
    v2 = upload_model(embedded_client, seed=2, name="resnet-ci", version="2", commit="b" * 40, branch="main")
    other = upload_model(embedded_client, seed=3, name="other")
    assert (v1["version"], v1["commit"], v1["branch"], v1["ci_url"], v1["tags"]) == ("1", "a" * 40, "main", "https://ci.example/1", ["nightly"])
    assert v1["created_by"] is None  # auth is off in the embedded default

    lineage = embedded_client.get("/api/v1/models", params={"name": "resnet-ci"}).json()
    assert lineage["count"] == 2 and [m["id"] for m in lineage["data"]] == [v2["id"], v1["id"]]
    assert embedded_client.get("/api/v1/models/latest:resnet-ci").json()["id"] == v2["id"]
    assert embedded_client.get("/api/v1/models/latest:nope").status_code == 404
    by_bytes = embedded_client.get("/api/v1/models", params={"sha256": v1["sha256"]}).json()
    assert [m["id"] for m in by_bytes["data"]] == [v1["id"]]

    run = embedded_client.post("/api/v1/runs", json={"model": {"weights": "latest:resnet-ci"}, "probes": {"weight_spectrum": {"n_init_samples": 0}}})
    assert run.status_code == 202, run.text
    body = run.json()
    assert body["model_id"] == v2["id"] and body["spec"]["model"]["weights"] == v2["id"]  # pinned, not the moving label
    wait_for_run(embedded_client, body["id"])
    assert embedded_client.get("/api/v1/runs", params={"model_id": "latest:resnet-ci"}).json()["count"] == 1
    assert embedded_client.get("/api/v1/runs", params={"model_name": "resnet-ci"}).json()["count"] == 1
    assert embedded_client.get("/api/v1/runs", params={"model_name": "other"}).json()["count"] == 0
    trend = embedded_client.get("/api/v1/metrics", params={"key": "weight_spectrum.alpha_mean", "model_id": "latest:resnet-ci"}).json()
    assert [point["run_id"] for point in trend["data"]] == [body["id"]]
    missing = embedded_client.post("/api/v1/runs", json={"model": {"weights": "latest:nope"}, "probes": {"weight_spectrum": {}}})
    assert missing.status_code == 422 and "latest:nope" in missing.json()["detail"][0]["msg"]
    assert other["name"] == "other"
