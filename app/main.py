"""Builds the FastAPI application: ``uvicorn app.main:create_app --factory``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy import select

from app.api.body_limit import BodyLimitMiddleware
from app.api.errors import install_error_handlers
from app.api.openapi import install_openapi
from app.api.prometheus import install_prometheus
from app.api.schema_guard import SchemaState, install_schema_guard
from app.api.router import api_router
from app.config import Settings, get_settings
from app.dashboard.install import install_dashboard
from app.jobs.celery_app import create_celery
from app.jobs.celery_queue import CeleryJobQueue
from app.jobs.embedded import EmbeddedJobQueue
from app.jobs.periodic import PeriodicJobs
from app.jobs.queue import JobQueue
from app.jobs.registry import RUN, WEBHOOK
from app.migrate import upgrade
from app.orm import Run, RunStatus, WebhookDelivery
from app.runtime import Runtime

log = logging.getLogger(__name__)


def _job_queue(runtime: Runtime) -> JobQueue:
    if runtime.settings.embedded:
        return EmbeddedJobQueue(runtime)
    return CeleryJobQueue(create_celery(runtime.settings))


def _resume_embedded_runs(runtime: Runtime, jobs: EmbeddedJobQueue) -> None:
    """The embedded worker died with its process: pick up what it left queued or half-run. Its
    runs are taken over at once: the claim sees that their holder, the previous process, is gone
    (app/services/liveness.py)."""
    with runtime.session_factory() as session:
        pending = session.scalars(
            select(Run.id).where(Run.status.in_([RunStatus.queued, RunStatus.running])).order_by(Run.created_at)
        ).all()
        deliveries = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts).where(WebhookDelivery.status == "pending")
            .order_by(WebhookDelivery.created_at)
        ).all()  # fmt: skip
    for run_id in pending:
        jobs.enqueue(RUN, {"run_id": run_id}, "embedded")
    # A delivery's next attempt is the one after those already claimed (an attempt cut short by
    # the dying process counts as made).
    for delivery_id, attempts in deliveries:
        jobs.enqueue(WEBHOOK, {"delivery_id": delivery_id, "attempt": attempts + 1}, "embedded")
    if pending or deliveries:
        log.info("embedded worker resumed %d unfinished runs and %d webhook deliveries", len(pending), len(deliveries))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    runtime = Runtime(settings)
    schema = SchemaState(runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.embedded:
            # Nothing else will migrate a laptop's SQLite file; distributed deployments run
            # `priorprobe db upgrade` once instead of racing from every API replica.
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            upgrade(settings.resolved_database_url)
        # Sync routes run on AnyIO's default thread pool; size it to match the database pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        # /healthz gets threads of its own, so it answers while every pooled thread is busy.
        app.state.health_limiter = anyio.CapacityLimiter(4)
        # Closing a route's session: never waits behind routes that wait for a connection.
        app.state.session_close_limiter = anyio.CapacityLimiter(4)
        try:
            problem = schema.check()
        except Exception as exc:  # database down at start: writes re-check (schema_guard)
            problem = f"not checked: database unreachable ({type(exc).__name__})"
        if problem is not None:
            log.error("writes are refused until this is fixed: %s", problem)
        jobs = _job_queue(runtime)
        app.state.jobs = jobs
        periodic = None
        if isinstance(jobs, EmbeddedJobQueue):
            _resume_embedded_runs(runtime, jobs)
            # The embedded server is its own scheduler: the reaper and reconciler run in a thread.
            periodic = PeriodicJobs(runtime, jobs)
            periodic.start()
        try:
            yield
        finally:
            if periodic is not None:
                periodic.stop()
            jobs.close()
            runtime.dispose()

    app = FastAPI(
        title="PriorProbe",
        summary="Measure the inductive bias of neural networks.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs is served by the dashboard with Swagger UI's files vendored (the default page loads
        # them from a CDN); ReDoc has no offline copy, so it is off.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, json_bytes=settings.max_json_body_bytes, upload_bytes=settings.max_upload_bytes)
    app.state.runtime = runtime
    app.state.schema = schema
    install_error_handlers(app)
    install_openapi(app)
    install_schema_guard(app, schema)
    install_prometheus(app, runtime)
    app.include_router(api_router)
    install_dashboard(app)
    return app
