"""``GET /metrics``: Prometheus text with request counts and latencies by route template, runs by
status and queue depth, read from the deployment's own state."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.app.api.helpers import MLP_ARCH
from tests.conftest import wait_for_run


def _samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_metrics_count_requests_by_route_and_runs_by_status(embedded_client):
    run_id = embedded_client.post("/api/v1/runs", json={"model": {"arch": MLP_ARCH}, "probes": {"weight_spectrum": {}}}).json()["id"]
    assert wait_for_run(embedded_client, run_id)["status"] == "succeeded"
    embedded_client.get("/api/v1/runs/does-not-exist")
    samples = _samples(embedded_client)
    route = "/api/v1/runs/{run_id}"
    assert samples[("priorprobe_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] == 1
    assert samples[("priorprobe_http_requests_total", (("method", "POST"), ("route", "/api/v1/runs"), ("status", "202")))] == 1
    polls = sum(value for (name, labels), value in samples.items()
                if name == "priorprobe_http_requests_total" and ("route", route) in labels)
    assert samples[("priorprobe_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == polls
    assert samples[("priorprobe_runs", (("status", "succeeded"),))] == 1
    assert samples[("priorprobe_runs", (("status", "queued"),))] == 0
    assert samples[("priorprobe_queue_depth", (("kind", "run"),))] == 0
    # The raw path never becomes a label (one series per run would grow without bound).
    assert not any(("route", f"/api/v1/runs/{run_id}") in labels for _, labels in samples)
