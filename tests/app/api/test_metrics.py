"""Metrics over the API: one run's metrics, one metric's trend across runs, and the documented schema."""

from __future__ import annotations

from tests.app.api.helpers import upload_model
from tests.conftest import wait_for_run
from workers.probes.registry import PROBES


def _run(client, model_id: str, seed: int) -> str:
    response = client.post("/api/v1/runs", json={"model": {"weights": model_id}, "probes": {"weight_spectrum": {"n_init_samples": 2}}, "seed": seed})
    assert response.status_code == 202, response.text
    finished = wait_for_run(client, response.json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    return finished["id"]


def test_run_metrics_equal_the_reports_and_trend_follows_a_model_name(embedded_client):
    first = upload_model(embedded_client, seed=1, name="lineage-a")
    second = upload_model(embedded_client, seed=2, name="lineage-a")
    other = upload_model(embedded_client, seed=3, name="lineage-b")
    run_ids = [_run(embedded_client, first["id"], 0), _run(embedded_client, second["id"], 0), _run(embedded_client, other["id"], 0)]

    report = embedded_client.get(f"/api/v1/runs/{run_ids[0]}/report").json()
    body = embedded_client.get(f"/api/v1/runs/{run_ids[0]}/metrics").json()
    assert body["run_id"] == run_ids[0] and body["count"] == len(report["metrics"]) > 0
    by_key = {metric["key"]: metric for metric in report["metrics"]}
    for metric in body["data"]:
        assert metric == {**by_key[metric["key"]], "ci95": by_key[metric["key"]]["ci95"]}
        assert set(metric) == {"key", "value", "ci95", "unit", "better", "n", "scope", "description"}
    assert [metric["key"] for metric in body["data"]] == sorted(by_key)

    trend = embedded_client.get("/api/v1/metrics", params={"key": "weight_spectrum.stable_rank", "model_name": "lineage-a"}).json()
    assert trend["count"] == 2 and [point["run_id"] for point in trend["data"]] == run_ids[:2]  # oldest first
    assert {point["model_name"] for point in trend["data"]} == {"lineage-a"}
    assert trend["unit"] == "rank" and trend["better"] == "none" and trend["scope"] == "trained"
    values = [embedded_client.get(f"/api/v1/runs/{run_id}/metrics").json()["data"] for run_id in run_ids[:2]]
    expected = [next(m["value"] for m in data if m["key"] == "weight_spectrum.stable_rank") for data in values]
    assert [point["value"] for point in trend["data"]] == expected
    everyone = embedded_client.get("/api/v1/metrics", params={"key": "weight_spectrum.stable_rank", "limit": 1, "offset": 2}).json()
    assert everyone["count"] == 3 and [point["run_id"] for point in everyone["data"]] == run_ids[2:]
    init_spread = embedded_client.get("/api/v1/metrics", params={"key": "weight_spectrum.init.stable_rank"}).json()["data"][0]
    assert init_spread["n"] == 2 and init_spread["ci95"][0] <= init_spread["value"] <= init_spread["ci95"][1]

    unknown = embedded_client.get("/api/v1/metrics", params={"key": "no.such.metric"}).json()
    assert unknown == {"key": "no.such.metric", "unit": None, "better": None, "scope": None, "description": None, "data": [], "count": 0}
    assert embedded_client.get("/api/v1/metrics").status_code == 422  # key is required, and named
    assert embedded_client.get("/api/v1/metrics").json()["detail"][0]["loc"] == ["query", "key"]


def test_metrics_of_a_failed_or_unknown_run(embedded_client):
    assert embedded_client.get("/api/v1/runs/nope/metrics").status_code == 404
    # Most hypotheses diverge (huge init, lr 10): the run fails on the worker, after queueing.
    arch = {"name": "mlp", "in_dim": 4, "hidden": [32, 32], "out_dim": 1, "init": {"dist": "normal", "scale": 5.0}}
    task = {"dataset": {"builtin": "teacher", "in_dim": 4, "n_train": 64, "n_test": 32}, "target_error": 0.1,
            "train": {"optimizer": "sgd", "lr": 10.0, "epochs": 5, "batch_size": 8}}
    response = embedded_client.post("/api/v1/runs", json={"model": {"arch": arch}, "task": task,
                                                          "probes": {"inductive_bias": {"sampler": "trained", "n_hypotheses": 40}}})
    assert response.status_code == 202, response.text
    assert wait_for_run(embedded_client, response.json()["id"])["status"] == "failed"
    failed = embedded_client.get(f"/api/v1/runs/{response.json()['id']}/metrics")
    assert failed.status_code == 409 and "diverged" in failed.json()["detail"]


def test_openapi_documents_the_report_and_every_probe_metric(embedded_client):
    schema = embedded_client.get("/openapi.json").json()
    report_response = schema["paths"]["/api/v1/runs/{run_id}/report"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert report_response == {"$ref": "#/components/schemas/Report"}
    components = schema["components"]["schemas"]
    report = components["Report"]["properties"]
    assert {"run", "probes", "metrics", "timing", "environment", "artifacts", "warnings"} == set(report)
    probe_results = components["ProbeResults"]["properties"]
    assert set(probe_results) == set(PROBES)
    for name, probe in PROBES.items():
        assert probe.Result.__name__ in components, name
        refs = [option.get("$ref") for option in probe_results[name]["anyOf"]]
        assert f"#/components/schemas/{probe.Result.__name__}" in refs
    assert set(components["SpaceEstimate"]["properties"]) >= {"bits", "ci95", "n_below", "empirical_bits", "exact_bits"}
    assert set(components["Metric"]["properties"]) == {"key", "value", "ci95", "unit", "better", "n", "scope", "description"}
    assert schema["paths"]["/api/v1/metrics"]["get"]["operationId"] == "get_metric_trend"

    catalogue = {probe["name"]: probe for probe in embedded_client.get("/api/v1/probes").json()["data"]}
    for name, probe in PROBES.items():
        keys = [definition["key"] for definition in catalogue[name]["metrics"]]
        assert keys == [definition.key for definition in probe.metric_definitions] and keys
        assert all(definition["description"] for definition in catalogue[name]["metrics"])
