"""Cancelling runs and deleting models and datasets, through the embedded API."""

from __future__ import annotations

from tests.app.api.helpers import upload_dataset, upload_model
from tests.conftest import wait_for_run


def test_cancel_a_queued_run_at_once(embedded_client):
    model = upload_model(embedded_client)
    # The embedded worker runs one run at a time: the second waits in the queue behind the first.
    spec = {"model": {"weights": model["id"]}, "probes": {"weight_spectrum": {"n_init_samples": 64}}}
    first = embedded_client.post("/api/v1/runs", json=spec).json()
    second = embedded_client.post("/api/v1/runs", json=spec).json()
    cancelled = embedded_client.post(f"/api/v1/runs/{second['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert wait_for_run(embedded_client, first["id"])["status"] == "succeeded"
    final = embedded_client.get(f"/api/v1/runs/{second['id']}").json()
    assert final["status"] == "cancelled" and final["attempts"] == 0  # never claimed by the worker
    report = embedded_client.get(f"/api/v1/runs/{second['id']}/report")
    assert report.status_code == 409 and "cancelled" in report.json()["detail"]
    again = embedded_client.post(f"/api/v1/runs/{second['id']}/cancel")
    assert again.status_code == 409 and "already finished: cancelled" in again.json()["detail"]
    finished = embedded_client.post(f"/api/v1/runs/{first['id']}/cancel")
    assert finished.status_code == 409 and "succeeded" in finished.json()["detail"]
    assert embedded_client.post("/api/v1/runs/nope/cancel").status_code == 404
    assert embedded_client.get("/api/v1/runs", params={"status": "cancelled"}).json()["count"] == 1


def test_delete_model_and_dataset_refused_while_runs_use_them(embedded_client):
    model = upload_model(embedded_client)
    unused = upload_model(embedded_client, seed=2)
    dataset = upload_dataset(embedded_client)
    spare = upload_dataset(embedded_client, name="spare")
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": dataset["id"]}, "loss": "mse", "target_error": 0.5},
            "probes": {"weight_spectrum": {"n_init_samples": 0}}}
    run = embedded_client.post("/api/v1/runs", json=spec).json()
    wait_for_run(embedded_client, run["id"])

    refused = embedded_client.delete(f"/api/v1/models/{model['id']}")
    assert refused.status_code == 409 and run["id"] in refused.json()["detail"]
    refused = embedded_client.delete(f"/api/v1/datasets/{dataset['id']}")
    assert refused.status_code == 409 and run["id"] in refused.json()["detail"]

    assert embedded_client.delete(f"/api/v1/models/{unused['id']}").status_code == 204
    assert embedded_client.get(f"/api/v1/models/{unused['id']}").status_code == 404
    assert embedded_client.delete(f"/api/v1/datasets/{spare['id']}").status_code == 204
    assert embedded_client.get(f"/api/v1/datasets/{spare['id']}").status_code == 404
    assert embedded_client.delete("/api/v1/models/nope").status_code == 404
    # The referenced ones are intact.
    assert embedded_client.get(f"/api/v1/models/{model['id']}").status_code == 200
