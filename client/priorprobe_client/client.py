"""A typed client over every operation of the PriorProbe API, sync (``PriorProbeClient``) and async
(``AsyncPriorProbeClient``).

Each operation is written once, in ``_Operations``, as a ``Call`` (method, path, parameters and the
response model); the two clients differ only in how they send it. Method names are the API's
``operationId``s, so ``/openapi.json`` and this class list the same operations (a test checks).

Retries: connection errors and 503 (the broker or the database is briefly down) are retried with
exponential backoff. A request that may have reached the server (a read timeout, a dropped
connection) is retried only when it is a GET, so an upload or a run is never created twice by a retry.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter

from priorprobe_client.errors import ApiError, ServerUnreachable
from priorprobe_client.schemas.datasets import DatasetCreated, DatasetList, DatasetRead
from priorprobe_client.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyRead, KeyScope
from priorprobe_client.schemas.metric_lists import MetricTrend, RunMetricList
from priorprobe_client.schemas.models import ModelCreated, ModelList, ModelRead
from priorprobe_client.schemas.probes import Health, ProbeList
from priorprobe_client.schemas.runs import RunList, RunRead, RunStatus
from priorprobe_client.schemas.webhooks import WebhookCreate, WebhookDeliveryList, WebhookEvent, WebhookList, WebhookRead

API = "/api/v1"
# Connection never established: safe to retry any method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have been received: retried for GETs only.
_MAYBE_SENT = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, httpx.WriteTimeout)


@dataclass(frozen=True)
class Call:
    """One API request and how to read its answer (``response``: a model, ``bytes``, or None for 204)."""

    method: str
    path: str
    response: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # sent as the multipart field "file"; reopened on each attempt

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "HEAD")

    def request_kwargs(self) -> dict[str, Any]:
        params = {key: value for key, value in self.params.items() if value is not None}
        data = {key: value for key, value in self.data.items() if value is not None}
        kwargs: dict[str, Any] = {"params": params}
        if self.json is not None:
            kwargs["json"] = self.json
        if data:
            kwargs["data"] = data
        return kwargs

    @contextmanager
    def files(self) -> Iterator[dict | None]:
        if self.file is None:
            yield None
            return
        with open(self.file, "rb") as handle:
            yield {"file": (self.file.name, handle)}

    def read(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _api_error(self, response)
        if self.response is None:
            return None
        if self.response is bytes:
            return response.content
        return TypeAdapter(self.response).validate_python(response.json())


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``retries`` more attempts, waiting ``base_s * 2**attempt`` (capped, with jitter) between."""

    retries: int = 4
    base_s: float = 0.5
    max_s: float = 8.0

    def delay(self, attempt: int) -> float:
        # Full jitter: clients restarted together by one CI outage do not retry in lockstep.
        return random.uniform(0.5, 1.0) * min(self.max_s, self.base_s * 2**attempt)

    def should_retry(self, call: Call, error: Exception | None, response: httpx.Response | None, attempt: int) -> bool:
        if attempt >= self.retries:
            return False
        if response is not None:
            return response.status_code == 503
        return isinstance(error, _NOT_SENT) or (call.idempotent and isinstance(error, _MAYBE_SENT))


def _unreachable(base_url: str, call: Call, error: Exception | None, response: httpx.Response | None) -> Exception:
    if response is not None:  # 503 on every attempt: the server's own words say what is down
        return _api_error(call, response)
    return ServerUnreachable(f"{call.method} {base_url}{call.path}: {type(error).__name__}: {error or 'no answer'}")


def _api_error(call: Call, response: httpx.Response) -> ApiError:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return ApiError(call.method, call.path, response.status_code, detail)


class _Operations:
    """Every API operation. ``_call`` returns the parsed answer (sync) or an awaitable of it (async)."""

    def _call(self, call: Call) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- health and catalogue
    def healthz(self) -> Health:
        return self._call(Call("GET", f"{API}/healthz", Health))

    def list_probes(self) -> ProbeList:
        return self._call(Call("GET", f"{API}/probes", ProbeList))

    # --- models (``ref``: an id or ``latest:<name>``)
    def create_model(
        self, file: str | Path, arch: dict, *, name: str | None = None, tags: list[str] | None = None,
        version: str | None = None, commit: str | None = None, branch: str | None = None, ci_url: str | None = None,
    ) -> ModelCreated:  # fmt: skip
        data = {"arch": json.dumps(arch), "name": name, "tags": json.dumps(tags) if tags else None, "version": version,
                "commit": commit, "branch": branch, "ci_url": ci_url}  # fmt: skip
        return self._call(Call("POST", f"{API}/models", ModelCreated, data=data, file=Path(file)))

    def list_models(
        self, *, name: str | None = None, family: str | None = None, tag: str | None = None, sha256: str | None = None,
        limit: int = 100, offset: int = 0,
    ) -> ModelList:  # fmt: skip
        params = {"name": name, "family": family, "tag": tag, "sha256": sha256, "limit": limit, "offset": offset}
        return self._call(Call("GET", f"{API}/models", ModelList, params=params))

    def get_model(self, ref: str) -> ModelRead:
        return self._call(Call("GET", f"{API}/models/{ref}", ModelRead))

    def delete_model(self, ref: str) -> None:
        return self._call(Call("DELETE", f"{API}/models/{ref}"))

    # --- datasets
    def create_dataset(self, file: str | Path, *, name: str | None = None) -> DatasetCreated:
        return self._call(Call("POST", f"{API}/datasets", DatasetCreated, data={"name": name}, file=Path(file)))

    def list_datasets(self, *, sha256: str | None = None, limit: int = 100, offset: int = 0) -> DatasetList:
        return self._call(Call("GET", f"{API}/datasets", DatasetList, params={"sha256": sha256, "limit": limit, "offset": offset}))

    def get_dataset(self, dataset_id: str) -> DatasetRead:
        return self._call(Call("GET", f"{API}/datasets/{dataset_id}", DatasetRead))

    def delete_dataset(self, dataset_id: str) -> None:
        return self._call(Call("DELETE", f"{API}/datasets/{dataset_id}"))

    # --- runs
    def create_run(self, spec: dict) -> RunRead:
        """Queue a run spec (``{"model": {"weights": id or "latest:<name>"}, "probes": {...}}``)."""
        return self._call(Call("POST", f"{API}/runs", RunRead, json=spec))

    def list_runs(
        self, *, model_id: str | None = None, model_name: str | None = None, dataset_id: str | None = None,
        status: RunStatus | str | None = None, limit: int = 100, offset: int = 0,
    ) -> RunList:  # fmt: skip
        params = {"model_id": model_id, "model_name": model_name, "dataset_id": dataset_id,
                  "status": str(status) if status else None, "limit": limit, "offset": offset}  # fmt: skip
        return self._call(Call("GET", f"{API}/runs", RunList, params=params))

    def get_run(self, run_id: str) -> RunRead:
        return self._call(Call("GET", f"{API}/runs/{run_id}", RunRead))

    def cancel_run(self, run_id: str) -> RunRead:
        return self._call(Call("POST", f"{API}/runs/{run_id}/cancel", RunRead))

    def get_run_report(self, run_id: str) -> dict:
        """The run's report as JSON (its typed model needs the server's probe classes)."""
        return self._call(Call("GET", f"{API}/runs/{run_id}/report", dict))

    def get_run_metrics(self, run_id: str) -> RunMetricList:
        return self._call(Call("GET", f"{API}/runs/{run_id}/metrics", RunMetricList))

    def get_run_artifact(self, run_id: str, name: str) -> bytes:
        """An artifact's ``.npy`` bytes (``numpy.load(io.BytesIO(data))``)."""
        return self._call(Call("GET", f"{API}/runs/{run_id}/artifacts/{name}", bytes))

    # --- metrics across runs
    def get_metric_trend(
        self, key: str, *, model_name: str | None = None, model_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> MetricTrend:
        params = {"key": key, "model_name": model_name, "model_id": model_id, "limit": limit, "offset": offset}
        return self._call(Call("GET", f"{API}/metrics", MetricTrend, params=params))

    # --- API keys (admin)
    def create_key(self, name: str, scope: KeyScope | str = KeyScope.read) -> ApiKeyCreated:
        body = ApiKeyCreate(name=name, scope=KeyScope(scope)).model_dump(mode="json")
        return self._call(Call("POST", f"{API}/keys", ApiKeyCreated, json=body))

    def list_keys(self) -> ApiKeyList:
        return self._call(Call("GET", f"{API}/keys", ApiKeyList))

    def revoke_key(self, key_ref: str) -> ApiKeyRead:
        return self._call(Call("DELETE", f"{API}/keys/{key_ref}", ApiKeyRead))

    # --- webhooks (verify deliveries with ``priorprobe_client.signatures.verify``)
    def create_webhook(self, url: str, events: list[WebhookEvent | str], secret: str) -> WebhookRead:
        body = WebhookCreate(url=url, events=[WebhookEvent(e) for e in events], secret=secret).model_dump(mode="json")
        return self._call(Call("POST", f"{API}/webhooks", WebhookRead, json=body))

    def list_webhooks(self) -> WebhookList:
        return self._call(Call("GET", f"{API}/webhooks", WebhookList))

    def delete_webhook(self, webhook_id: str) -> None:
        return self._call(Call("DELETE", f"{API}/webhooks/{webhook_id}"))

    def list_webhook_deliveries(self, webhook_id: str, *, limit: int = 100, offset: int = 0) -> WebhookDeliveryList:
        params = {"limit": limit, "offset": offset}
        return self._call(Call("GET", f"{API}/webhooks/{webhook_id}/deliveries", WebhookDeliveryList, params=params))


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "priorprobe-client/0.1"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class PriorProbeClient(_Operations):
    """Synchronous client: ``with PriorProbeClient(url, api_key=...) as client: client.get_run(id)``."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 60.0,
                 retry: RetryPolicy = RetryPolicy(), transport: httpx.BaseTransport | None = None):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self._http = httpx.Client(base_url=self.base_url, headers=_headers(api_key), timeout=timeout_s,
                                  follow_redirects=False, transport=transport)  # fmt: skip

    def _call(self, call: Call) -> Any:
        attempt = 0
        while True:
            error, response = None, None
            try:
                with call.files() as files:
                    response = self._http.request(call.method, call.path, files=files, **call.request_kwargs())
            except httpx.TransportError as exc:
                error = exc
            if response is not None and response.status_code != 503:
                return call.read(response)
            if not self.retry.should_retry(call, error, response, attempt):
                raise _unreachable(self.base_url, call, error, response) from error
            time.sleep(self.retry.delay(attempt))
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "PriorProbeClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncPriorProbeClient(_Operations):
    """Asynchronous client: the same methods, awaited (``await client.get_run(id)``)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 60.0,
                 retry: RetryPolicy = RetryPolicy(), transport: httpx.AsyncBaseTransport | None = None):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=_headers(api_key), timeout=timeout_s,
                                       follow_redirects=False, transport=transport)  # fmt: skip

    async def _call(self, call: Call) -> Any:
        attempt = 0
        while True:
            error, response = None, None
            try:
                with call.files() as files:
                    response = await self._http.request(call.method, call.path, files=files, **call.request_kwargs())
            except httpx.TransportError as exc:
                error = exc
            if response is not None and response.status_code != 503:
                return call.read(response)
            if not self.retry.should_retry(call, error, response, attempt):
                raise _unreachable(self.base_url, call, error, response) from error
            await asyncio.sleep(self.retry.delay(attempt))
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncPriorProbeClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()
