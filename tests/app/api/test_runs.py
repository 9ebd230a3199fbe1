"""Runs through the embedded default (SQLite + in-process worker): the same code path as Celery."""

import json

import numpy as np

from tests.app.api.helpers import MLP_ARCH, dataset_npz_bytes, error_locs, upload_dataset, upload_model
from tests.conftest import wait_for_run


def test_run_on_uploaded_model_produces_a_report(embedded_client):
    from workers.report import Report

    model = upload_model(embedded_client)
    response = embedded_client.post("/api/v1/runs", json={"model": {"weights": model["id"]}, "probes": {"weight_spectrum": {}}, "seed": 3})
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] == "queued" and run["progress"] == 0.0
    finished = wait_for_run(embedded_client, run["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["progress"] == 1.0 and finished["attempts"] == 1
    assert set(finished["timing"]) == {"weight_spectrum"}
    report = embedded_client.get(f"/api/v1/runs/{run['id']}/report").json()
    assert set(report) == {"run", "probes", "metrics", "timing", "environment", "artifacts", "warnings"}
    assert Report.model_validate(report).model_dump(mode="json") == report  # the served JSON is the typed report
    assert set(report["probes"]) == {"weight_spectrum"} and set(report["timing"]["weight_spectrum"]) == {"total_s", "phases"}
    assert report["run"]["weights"] == "uploaded" and report["run"]["model_id"] == model["id"]
    assert report["run"]["spec"]["model"]["arch"]["hidden"] == [16]  # filled in from the stored model
    assert report["environment"]["device"] == "cpu" and report["environment"]["dtype"] == "float32"
    layers = report["probes"]["weight_spectrum"]["layers"]
    assert [layer["name"] for layer in layers] == ["layers.0", "layers.1"]
    listing = embedded_client.get("/api/v1/runs", params={"model_id": model["id"]}).json()
    assert listing["count"] == 1 and listing["data"][0]["id"] == run["id"]


def test_run_with_uploaded_dataset_task(embedded_client):
    model = upload_model(embedded_client)
    dataset = upload_dataset(embedded_client)
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": dataset["id"]}, "loss": "mse", "target_error": 0.5},
            "probes": {"weight_spectrum": {"n_init_samples": 2}}}
    run = embedded_client.post("/api/v1/runs", json=spec).json()
    finished = wait_for_run(embedded_client, run["id"])
    assert finished["status"] == "succeeded", finished["error"]
    report = embedded_client.get(f"/api/v1/runs/{run['id']}/report").json()
    assert report["run"]["dataset"]["n_test"] == 20
    assert embedded_client.get("/api/v1/runs", params={"dataset_id": dataset["id"]}).json()["count"] == 1


def test_bad_probe_params_are_422_before_queueing(embedded_client):
    model = upload_model(embedded_client)
    response = embedded_client.post("/api/v1/runs", json={"model": {"weights": model["id"]}, "probes": {"weight_spectrum": {"convention": "nope", "typo": 1}}})
    assert response.status_code == 422
    locs = error_locs(response)
    assert ["body", "probes", "weight_spectrum", "convention"] in locs
    assert ["body", "probes", "weight_spectrum", "typo"] in locs
    response = embedded_client.post("/api/v1/runs", json={"model": {"weights": model["id"]}, "probes": {"no_such_probe": {}}})
    assert response.status_code == 422 and "weight_spectrum" in response.json()["detail"][0]["msg"]
    assert embedded_client.get("/api/v1/runs").json()["count"] == 0


def test_non_finite_numbers_are_422_naming_the_field(embedded_client):
    # Python's json (and so FastAPI) parses Infinity and NaN; they must not pass "gt 0" checks.
    model = upload_model(embedded_client)
    task = {"dataset": {"builtin": "digits"}, "loss": "mse", "target_error": 0.1}
    cases = [
        ({"task": {**task, "target_error": float("inf")}, "probes": {"weight_spectrum": {}}}, ["body", "task", "target_error"]),
        ({"task": task, "probes": {"inductive_bias": {"target_error": float("inf")}}},
         ["body", "probes", "inductive_bias", "target_error"]),
        ({"task": task, "probes": {"inductive_bias": {"sampler": "kernel", "lengthscale": float("nan")}}},
         ["body", "probes", "inductive_bias", "lengthscale"]),
    ]
    for extra, loc in cases:
        body = json.dumps({"model": {"weights": model["id"]}, **extra})  # writes Infinity / NaN
        response = embedded_client.post("/api/v1/runs", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (loc, response.text)
        error = next(e for e in response.json()["detail"] if e["loc"] == loc)
        assert "finite" in error["msg"]
        assert error.get("input", "inf") in ("inf", "nan")  # where echoed, as a name: valid JSON
    assert embedded_client.get("/api/v1/runs").json()["count"] == 0


def test_references_that_do_not_exist_or_do_not_fit(embedded_client):
    response = embedded_client.post("/api/v1/runs", json={"model": {"weights": "missing"}, "probes": {"weight_spectrum": {}}})
    assert response.status_code == 422 and error_locs(response) == [["body", "model", "weights"]]
    model = upload_model(embedded_client)
    wrong_width = upload_dataset(embedded_client, dataset_npz_bytes(in_dim=5), name="wide")
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": wrong_width["id"]}, "target_error": 0.1}, "probes": {"weight_spectrum": {}}}
    response = embedded_client.post("/api/v1/runs", json=spec)
    assert response.status_code == 422 and error_locs(response)[0][:3] == ["body", "task", "dataset"]
    too_many_classes = upload_dataset(embedded_client, dataset_npz_bytes(n_classes=7, y_test=np.arange(20) % 7), name="classes")
    spec["task"]["dataset"] = {"id": too_many_classes["id"]}
    assert embedded_client.post("/api/v1/runs", json=spec).status_code == 422
    spec["task"]["dataset"] = {"path": "local.npz"}
    response = embedded_client.post("/api/v1/runs", json=spec)
    assert response.status_code == 422 and "POST /api/v1/datasets" in response.text
    arch_mismatch = {"model": {"weights": model["id"], "arch": {**MLP_ARCH, "hidden": [8]}}, "probes": {"weight_spectrum": {}}}
    assert error_locs(embedded_client.post("/api/v1/runs", json=arch_mismatch)) == [["body", "model", "arch"]]
    assert embedded_client.post("/api/v1/runs", json={"model": {}, "probes": {"weight_spectrum": {}}}).status_code == 422
    assert embedded_client.post("/api/v1/runs", json={"model": {"weights": model["id"]}, "probes": {}}).status_code == 422
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": wrong_width["id"]}, "target_error": -1}, "probes": {"weight_spectrum": {}}}
    assert ["body", "task", "target_error"] in error_locs(embedded_client.post("/api/v1/runs", json=spec))
    assert embedded_client.get("/api/v1/runs").json()["count"] == 0


def test_builtin_dataset_is_checked_against_the_arch(embedded_client):
    spec = {"model": {"arch": MLP_ARCH}, "task": {"dataset": {"builtin": "digits"}, "target_error": 0.1}, "probes": {"weight_spectrum": {}}}
    response = embedded_client.post("/api/v1/runs", json=spec)
    assert response.status_code == 422 and "64" in response.text  # digits has 64 features, the MLP takes 4
    spec["task"]["dataset"] = {"builtin": "gaussian_clusters", "in_dim": 4, "n_classes": 3}
    run = embedded_client.post("/api/v1/runs", json=spec)
    assert run.status_code == 202, run.text
    finished = wait_for_run(embedded_client, run.json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    report = embedded_client.get(f"/api/v1/runs/{run.json()['id']}/report").json()
    assert report["run"]["weights"] == "random_init"


def test_report_of_unfinished_or_unknown_run(embedded_client):
    assert embedded_client.get("/api/v1/runs/nope").status_code == 404
    assert embedded_client.get("/api/v1/runs/nope/report").status_code == 404


def test_probe_catalogue_serves_params_schema(embedded_client):
    body = embedded_client.get("/api/v1/probes").json()
    names = [probe["name"] for probe in body["data"]]
    assert "weight_spectrum" in names and body["count"] == len(names)
    spectrum = next(p for p in body["data"] if p["name"] == "weight_spectrum")
    assert "convention" in spectrum["params_schema"]["properties"]
    assert spectrum["paper"].startswith("http")


def test_healthz_embedded(embedded_client):
    body = embedded_client.get("/api/v1/healthz").json()
    assert body == {"status": "ok", "mode": "embedded", "database": "ok", "broker": "embedded", "migrations": "ok"}


def test_openapi_is_served_with_stable_operation_ids(embedded_client):
    schema = embedded_client.get("/openapi.json").json()
    operation_ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"create_model", "create_run", "get_run", "get_run_report", "list_probes", "healthz"} <= operation_ids


def test_inductive_bias_run_stores_the_loss_sample_as_an_artifact(embedded_client):
    import io

    model = upload_model(embedded_client)
    dataset = upload_dataset(embedded_client)
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": dataset["id"]}, "loss": "mse", "target_error": 0.8},
            "probes": {"inductive_bias": {"n_hypotheses": 60}}}
    run = embedded_client.post("/api/v1/runs", json=spec).json()
    finished = wait_for_run(embedded_client, run["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert set(finished["timing"]["inductive_bias"]) == {"total_s", "phases"}
    assert set(finished["timing"]["inductive_bias"]["phases"]) == {"sampling_s", "estimation_s"}
    report = embedded_client.get(f"/api/v1/runs/{run['id']}/report").json()
    result = report["probes"]["inductive_bias"]["spaces"]["target"]
    assert result["n_hypotheses"] == 60 and result["ci95"][0] <= result["ci95"][1]
    assert result["model_loss"] is not None  # weights were uploaded
    descriptor = report["artifacts"]["inductive_bias.losses.target"]
    assert descriptor["shape"] == [60] and descriptor["stored"]
    losses = np.load(io.BytesIO(embedded_client.get(descriptor["url"]).content), allow_pickle=False)
    assert losses.shape == (60,) and int((losses <= 0.8).sum()) == result["n_below"]
    missing = embedded_client.get(f"/api/v1/runs/{run['id']}/artifacts/nope")
    assert missing.status_code == 404 and "inductive_bias.losses.target" in missing.json()["detail"]


def test_inductive_bias_dataset_checks_are_422_before_queueing(embedded_client):
    model = upload_model(embedded_client)
    test_only = upload_dataset(
        embedded_client,
        dataset_npz_bytes(X_train=np.zeros((0, 4), dtype=np.float32), y_train=np.zeros(0, dtype=np.int64)),
        name="test-only",
    )
    spec = {"model": {"weights": model["id"]}, "task": {"dataset": {"id": test_only["id"]}, "target_error": 0.5},
            "probes": {"inductive_bias": {"sampler": "trained"}}}
    response = embedded_client.post("/api/v1/runs", json=spec)
    assert response.status_code == 422
    assert error_locs(response) == [["body", "probes", "inductive_bias", "sampler"]]
    assert "training split" in response.json()["detail"][0]["msg"]
    assert embedded_client.get("/api/v1/runs").json()["count"] == 0
