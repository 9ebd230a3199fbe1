"""Webhook deliveries as Celery jobs on real workers (the same job as the embedded worker runs)."""

from __future__ import annotations

import pytest

from tests.app.api.helpers import upload_model
from tests.app.api.test_webhooks import SECRET, SPEC, Receiver, _deliveries, _hook
from tests.conftest import wait_for_run
from priorprobe_client.signatures import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.integration


def test_retry_with_backoff_on_the_celery_workers(distributed_client, celery_workers):
    receiver = Receiver([500, 200])
    hook = _hook(distributed_client, receiver.url, events=["run.succeeded"])
    model = upload_model(distributed_client, name="celery-hooks")
    run = distributed_client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    assert wait_for_run(distributed_client, run["id"])["status"] == "succeeded"
    [delivery] = _deliveries(distributed_client, hook["id"], "succeeded")
    receiver.close()
    assert [a["status_code"] for a in delivery["log"]] == [500, 200]
    assert all(verify(SECRET, headers[SIGNATURE_HEADER], body) for headers, body in receiver.requests)
    # The retry waited its backoff (0.2 s base, jitter to at least half of it).
    first, second = delivery["log"]
    assert (_seconds(second["created_at"]) - _seconds(first["created_at"])) >= 0.1


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
