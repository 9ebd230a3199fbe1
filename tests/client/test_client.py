"""The typed client against a real HTTP server: every operation, auth, retries, sync and async."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from app.config import Settings
from app.main import create_app
from app.services.api_keys import create_key
from priorprobe_client import ApiError, AsyncPriorProbeClient, PriorProbeClient, ServerUnreachable
from priorprobe_client.client import RetryPolicy
from priorprobe_client.schemas.keys import KeyScope
from priorprobe_client.schemas.runs import RunStatus
from tests.app.api.helpers import MLP_ARCH, checkpoint_bytes, dataset_npz_bytes
from tests.conftest import LiveServer, free_port

FAST_RETRY = RetryPolicy(retries=2, base_s=0.01, max_s=0.02)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("client") / "data", database_url=None, broker_url=None, auth="required")
    with LiveServer(create_app(settings)) as live:
        # The app's lifespan has migrated the SQLite file by now.
        with live.app.state.runtime.session_factory() as session:
            live.admin_key = create_key(session, "admin-bot", KeyScope.admin, settings.api_key_pepper)[1]
        yield live


def test_client_has_every_operation_of_the_api(server):
    with PriorProbeClient(server.url) as client:
        schema = client._http.get("/openapi.json").json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    missing = sorted(op for op in operations if not callable(getattr(PriorProbeClient, op, None)))
    assert missing == []


def test_every_operation_round_trips(server, tmp_path):
    checkpoint = tmp_path / "net.safetensors"
    checkpoint.write_bytes(checkpoint_bytes())
    data = tmp_path / "toy.npz"
    data.write_bytes(dataset_npz_bytes())
    with PriorProbeClient(server.url, api_key=server.admin_key) as client:
        assert client.healthz().status == "ok"
        assert "weight_spectrum" in {p.name for p in client.list_probes().data}
        model = client.create_model(checkpoint, MLP_ARCH, name="lineage", version="3", commit="c0ffee", tags=["a", "b"])
        assert (model.name, model.version, model.commit, model.tags, model.created_by) == ("lineage", "3", "c0ffee", ["a", "b"], "admin-bot")
        assert client.get_model("latest:lineage").id == model.id
        assert client.list_models(name="lineage").count == 1
        dataset = client.create_dataset(data, name="toy")
        assert client.get_dataset(dataset.id).name == "toy" and client.list_datasets(sha256=dataset.sha256).count == 1
        run = client.create_run({"model": {"weights": "latest:lineage"}, "probes": {"weight_spectrum": {"n_init_samples": 2}}})
        assert run.status == RunStatus.queued and run.created_by == "admin-bot"
        while not client.get_run(run.id).status.finished:
            pass
        assert client.list_runs(model_name="lineage", status="succeeded").count == 1
        metrics = client.get_run_metrics(run.id)
        assert {m.key for m in metrics.data} >= {"weight_spectrum.alpha_mean"}
        report = client.get_run_report(run.id)
        assert report["run"]["model_id"] == model.id
        artifact_name = next(iter(report["artifacts"]), None)
        if artifact_name is not None:
            assert np.load(io.BytesIO(client.get_run_artifact(run.id, artifact_name))).ndim >= 1
        assert client.get_metric_trend("weight_spectrum.alpha_mean", model_name="lineage").count == 1
        with pytest.raises(ApiError) as refused:
            client.delete_model(model.id)
        assert refused.value.status_code == 409 and run.id in refused.value.message
        with pytest.raises(ApiError) as finished:
            client.cancel_run(run.id)
        assert finished.value.status_code == 409
        key = client.create_key("reader", "read")
        assert key.key.startswith("ppk_") and any(k.prefix == key.prefix for k in client.list_keys().data)
        assert client.revoke_key(key.prefix).revoked_at is not None
        client.delete_dataset(dataset.id)
        with pytest.raises(ApiError) as gone:
            client.get_dataset(dataset.id)
        assert gone.value.status_code == 404


def test_auth_errors_carry_the_needed_scope(server):
    with PriorProbeClient(server.url, retry=FAST_RETRY) as anonymous:
        with pytest.raises(ApiError) as refused:
            anonymous.list_runs()
    assert refused.value.status_code == 401 and "scope 'read'" in refused.value.message


def test_async_client(server, tmp_path):
    checkpoint = tmp_path / "net.safetensors"
    checkpoint.write_bytes(checkpoint_bytes(seed=7))

    async def main():
        async with AsyncPriorProbeClient(server.url, api_key=server.admin_key) as client:
            model = await client.create_model(checkpoint, MLP_ARCH, name="async-lineage")
            health, fetched = await asyncio.gather(client.healthz(), client.get_model("latest:async-lineage"))
            return model, health.status, fetched

    model, status, fetched = asyncio.run(main())
    assert status == "ok" and fetched.id == model.id and model.created_by == "admin-bot"


class _Flaky(BaseHTTPRequestHandler):
    """503 for the first ``failures`` requests, then the healthz body."""

    failures = 0
    seen = 0

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).seen += 1
        ok = type(self).seen > type(self).failures
        body = json.dumps({"status": "ok", "mode": "embedded", "database": "ok", "broker": "embedded"} if ok
                          else {"detail": "database unreachable"}).encode()  # fmt: skip
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    _Flaky.seen, _Flaky.failures = 0, 2
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def test_503_is_retried_with_backoff(flaky):
    with PriorProbeClient(f"http://127.0.0.1:{flaky.server_port}", retry=FAST_RETRY) as client:
        assert client.healthz().status == "ok"
    assert _Flaky.seen == 3
    _Flaky.seen, _Flaky.failures = 0, 10
    with PriorProbeClient(f"http://127.0.0.1:{flaky.server_port}", retry=FAST_RETRY) as client:
        with pytest.raises(ApiError) as down:
            client.healthz()
    assert down.value.status_code == 503 and down.value.message == "database unreachable" and _Flaky.seen == 3


def test_connection_refused_is_retried_then_unreachable():
    port = free_port()  # nothing listens there
    with PriorProbeClient(f"http://127.0.0.1:{port}", retry=FAST_RETRY) as client:
        with pytest.raises(ServerUnreachable, match="ConnectError"):
            client.healthz()


def test_retry_delays_grow_and_are_capped():
    policy = RetryPolicy(retries=10, base_s=0.5, max_s=4.0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays)
