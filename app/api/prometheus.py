"""Prometheus metrics of the API, served at ``GET /metrics`` (outside ``/api/v1``, where
``/api/v1/metrics`` is the probes' metric trends).

Requests are counted and timed by route template (``/api/v1/runs/{run_id}``, never the raw path,
which would make one series per run). Runs by status and queue depth are read when scraped, so
they are true for the whole deployment, not just this API process. Each app has its own
registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from app.api.auth import ReadAccess
from app.orm import Run, RunStatus
from app.runtime import Runtime

log = logging.getLogger(__name__)


class _StateCollector:
    """Runs by status (from the database) and messages waiting per queue (from the broker)."""

    def __init__(self, runtime: Runtime, app: FastAPI):
        self._runtime, self._app = runtime, app

    def collect(self):
        runs = GaugeMetricFamily("priorprobe_runs", "Runs by status.", labels=["status"])
        try:
            with self._runtime.session_factory() as session:
                counts = dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
            for status in RunStatus:
                runs.add_metric([status.value], counts.get(status.value, 0))
            yield runs
        except Exception as exc:  # a scrape during an outage reports what it can
            log.warning("runs by status not collected: %s", type(exc).__name__)
        depth = GaugeMetricFamily("priorprobe_queue_depth", "Run and shard messages waiting or unacknowledged.",
                                  labels=["kind"])
        jobs = getattr(self._app.state, "jobs", None)
        if jobs is None:
            return
        try:
            for kind in ("run", "shard"):
                depth.add_metric([kind], len(jobs.waiting(kind)))
            yield depth
        except Exception as exc:
            log.warning("queue depth not collected: %s", type(exc).__name__)


def _route_template(request: Request) -> str:
    """The matched route's full template, e.g. ``/api/v1/runs/{run_id}``.

    ``scope["route"]`` is the innermost route, whose path lacks the prefixes of the routers it is
    included in; those are the part of the raw path before the suffix that route matched.
    """
    route = request.scope.get("route")
    if route is None or not hasattr(route, "path_regex"):
        return "unmatched"
    path = request.url.path
    for index, char in enumerate(path):
        if char == "/" and route.path_regex.match(path[index:]):
            return path[:index] + route.path
    return route.path


def install_prometheus(app: FastAPI, runtime: Runtime) -> None:
    registry = CollectorRegistry()
    requests = Counter("priorprobe_http_requests_total", "HTTP requests by method, route and status.",
                       ["method", "route", "status"], registry=registry)
    latency = Histogram("priorprobe_http_request_duration_seconds", "HTTP request latency by method and route.",
                        ["method", "route"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
    registry.register(_StateCollector(runtime, app))

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        template = _route_template(request)
        latency.labels(request.method, template).observe(time.perf_counter() - started)
        requests.labels(request.method, template, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(_: ReadAccess) -> Response:
        # A read like any other: with keys required, scrape with a read key (Prometheus's
        # ``authorization: {credentials: ...}``).
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
