"""Webhooks end to end on the embedded stack, with a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from priorprobe_client.signatures import SIGNATURE_HEADER, verify
from tests.app.api.helpers import upload_model
from tests.conftest import free_port, wait_for_run

SECRET = "s3cret-for-tests-0123456789"
SPEC = {"probes": {"weight_spectrum": {"n_init_samples": 0}}}


class Receiver:
    """An HTTP server answering each POST with the next of ``codes`` (the last one repeats),
    optionally holding each request until ``release`` is set."""

    def __init__(self, codes: list[int], hold: bool = False):
        self.codes, self.requests = list(codes), []
        self.arrived, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                receiver.arrived.set()
                receiver.release.wait(30)
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def client(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None, webhook_allow_private=True,
                        webhook_max_attempts=3, webhook_retry_base_s=0.05, webhook_retry_max_s=0.2, webhook_timeout_s=5)  # fmt: skip
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _hook(client, url: str, events=("run.succeeded", "run.failed", "run.cancelled")) -> dict:
    response = client.post("/api/v1/webhooks", json={"url": url, "events": list(events), "secret": SECRET})
    assert response.status_code == 201, response.text
    return response.json()


def _deliveries(client, hook_id: str, until: str, timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = client.get(f"/api/v1/webhooks/{hook_id}/deliveries").json()["data"]
        if data and all(d["status"] == until for d in data):
            return data
        time.sleep(0.05)
    raise AssertionError(f"deliveries not {until}: {data}")


def test_signed_delivery_with_run_model_and_metrics(client):
    receiver = Receiver([200])
    hook = _hook(client, receiver.url, events=["run.succeeded"])
    assert "secret" not in hook and hook["events"] == ["run.succeeded"]
    model = upload_model(client, name="lineage-a")
    run = client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    assert wait_for_run(client, run["id"])["status"] == "succeeded"
    [delivery] = _deliveries(client, hook["id"], "succeeded")
    receiver.close()
    assert delivery["event"] == "run.succeeded" and delivery["run_id"] == run["id"] and delivery["attempts"] == 1
    [attempt] = delivery["log"]
    assert attempt["status_code"] == 200 and attempt["error"] is None and attempt["latency_ms"] > 0
    [(headers, body)] = receiver.requests
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body + b" ")  # the body is what is signed
    assert not verify("another-secret-0123456789", headers[SIGNATURE_HEADER], body)
    payload = json.loads(body)
    assert payload["event"] == "run.succeeded" and payload["delivery_id"] == delivery["id"]
    assert payload["run"]["id"] == run["id"] and payload["run"]["status"] == "succeeded"
    assert payload["run"]["model_name"] == "lineage-a"
    served = client.get(f"/api/v1/runs/{run['id']}/metrics").json()["data"]
    assert payload["metrics"] == served and len(served) > 0
    assert headers["PriorProbe-Event"] == "run.succeeded" and headers["PriorProbe-Delivery"] == delivery["id"]


def test_500_then_200_gets_two_attempts(client):
    receiver = Receiver([500, 200])
    hook = _hook(client, receiver.url)
    model = upload_model(client)
    run = client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    wait_for_run(client, run["id"])
    [delivery] = _deliveries(client, hook["id"], "succeeded")
    receiver.close()
    assert [(a["attempt"], a["status_code"], a["error"]) for a in delivery["log"]] == [(1, 500, "HTTP 500"), (2, 200, None)]
    assert len(receiver.requests) == 2
    # Both attempts carry the same body; each is signed afresh.
    assert receiver.requests[0][1] == receiver.requests[1][1]
    assert all(verify(SECRET, h[SIGNATURE_HEADER], b) for h, b in receiver.requests)


def test_dead_receiver_ends_failed_after_the_limit(client):
    hook = _hook(client, f"http://127.0.0.1:{free_port()}/hook")  # nothing listens there
    model = upload_model(client)
    run = client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    assert wait_for_run(client, run["id"])["status"] == "succeeded"
    [delivery] = _deliveries(client, hook["id"], "failed")
    assert delivery["attempts"] == 3 and [a["attempt"] for a in delivery["log"]] == [1, 2, 3]
    assert all(a["status_code"] is None and a["error"].startswith("ConnectError") for a in delivery["log"])
    assert delivery["finished_at"] is not None


def test_redirects_are_not_followed(client):
    receiver = Receiver([302])
    hook = _hook(client, receiver.url)
    model = upload_model(client)
    run = client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    wait_for_run(client, run["id"])
    [delivery] = _deliveries(client, hook["id"], "failed")
    receiver.close()
    assert {a["error"] for a in delivery["log"]} == {"HTTP 302: redirects are not followed"} and len(receiver.requests) == 3


def test_a_hanging_receiver_does_not_hold_up_the_run(client):
    receiver = Receiver([200], hold=True)
    hook = _hook(client, receiver.url)
    model = upload_model(client)
    first = client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    assert wait_for_run(client, first["id"])["status"] == "succeeded"
    assert receiver.arrived.wait(30)
    # The delivery is in flight and unanswered; the run was already final.
    assert client.get(f"/api/v1/runs/{first['id']}").json()["status"] == "succeeded"
    assert client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]["status"] == "pending"
    receiver.release.set()
    _deliveries(client, hook["id"], "succeeded")
    receiver.close()


def test_cancel_is_delivered_and_delete_stops_deliveries(client):
    receiver = Receiver([200])
    hook = _hook(client, receiver.url, events=["run.cancelled"])
    model = upload_model(client)
    # The embedded worker takes one job at a time: the second run waits queued, and is cancelled.
    slow = client.post("/api/v1/runs", json={"probes": {"weight_spectrum": {"n_init_samples": 32}}, "model": {"weights": model["id"]}}).json()
    queued = client.post("/api/v1/runs", json={**SPEC, "model": {"weights": model["id"]}}).json()
    assert client.post(f"/api/v1/runs/{queued['id']}/cancel").json()["status"] == "cancelled"
    wait_for_run(client, slow["id"])
    [delivery] = _deliveries(client, hook["id"], "succeeded")
    assert delivery["event"] == "run.cancelled" and delivery["run_id"] == queued["id"]
    assert len(receiver.requests) == 1  # run.succeeded of the first run was not subscribed
    assert client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert client.get("/api/v1/webhooks").json()["count"] == 0
    assert client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404
    receiver.close()


@pytest.mark.parametrize(("url", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://100.100.100.200/", "cloud metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://0.0.0.0/", "not a unicast address"),
    ("http://10.1.2.3/", "private address"),
    ("http://192.168.0.10/", "private address"),
    ("http://127.0.0.1:9/", "private address"),
    ("http://localhost:9/", "private address"),
    ("ftp://example.org/", "not an http(s) URL"),
    ("http://user:pw@example.org/", "credentials in the URL"),
])  # fmt: skip
def test_refused_targets(tmp_path, url, reason):
    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None)  # private not allowed
    with TestClient(create_app(settings)) as strict:
        response = strict.post("/api/v1/webhooks", json={"url": url, "events": ["run.failed"], "secret": SECRET})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "url"] and reason in response.json()["detail"][0]["msg"]


def test_private_targets_with_the_setting_but_never_metadata(client):
    assert client.post("/api/v1/webhooks", json={"url": "http://10.1.2.3/", "events": ["run.failed"], "secret": SECRET}).status_code == 201
    refused = client.post("/api/v1/webhooks", json={"url": "http://169.254.169.254/", "events": ["run.failed"], "secret": SECRET})
    assert refused.status_code == 422
    short = client.post("/api/v1/webhooks", json={"url": "http://10.1.2.3/", "events": ["run.failed"], "secret": "short"})
    assert short.status_code == 422


def test_signature_verification_rejects_stale_and_malformed():
    from priorprobe_client.signatures import sign

    header = sign(SECRET, 1_000_000, b"{}")
    assert verify(SECRET, header, b"{}", now=1_000_100)
    assert not verify(SECRET, header, b"{}", now=1_000_000 + 301)  # replayed too late
    assert not verify(SECRET, "v1=abc", b"{}") and not verify(SECRET, "t=x,v1=abc", b"{}")


def test_pending_deliveries_resume_when_the_embedded_server_restarts(tmp_path):
    """A delivery left pending by a process that died (here: its row, as that process left it) is
    attempted by the next embedded server, with the attempt after those already made."""
    from app.orm import Run, RunStatus, WebhookDelivery

    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None, webhook_allow_private=True)
    receiver = Receiver([200])
    with TestClient(create_app(settings)) as first:
        hook = _hook(first, receiver.url, events=["run.failed"])
        with first.app.state.runtime.session_factory() as session:
            run = Run(spec={}, status=RunStatus.failed, queue="cpu", progress=0.0, attempts=1, error="boom")
            session.add(run)
            session.flush()
            delivery = WebhookDelivery(webhook_id=hook["id"], event="run.failed", run_id=run.id, payload={"event": "run.failed"},
                                       status="pending", attempts=1)  # fmt: skip
            session.add(delivery)
            session.commit()
            delivery_id = delivery.id
    with TestClient(create_app(settings)) as second:
        [resumed] = _deliveries(second, hook["id"], "succeeded")
    receiver.close()
    assert resumed["id"] == delivery_id and resumed["attempts"] == 2 and [a["attempt"] for a in resumed["log"]] == [2]
    [(headers, body)] = receiver.requests
    assert verify(SECRET, headers[SIGNATURE_HEADER], body) and json.loads(body) == {"event": "run.failed"}
