"""Builds the FastAPI application: ``uvicorn app.main:create_app --factory``."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select

from app.api.errors import install_error_handlers
from app.api.router import api_router
from app.config import Settings, get_settings
from app.dashboard.install import install_dashboard
from app.migrate import upgrade
from app.orm import Run, RunStatus, WebhookDelivery
from app.runtime import Runtime
from app.jobs.celery_app import create_celery
from app.jobs.celery_queue import CeleryJobQueue
from app.jobs.embedded import EmbeddedJobQueue
from app.jobs.queue import JobQueue
from app.jobs.registry import RUN, WEBHOOK

log = logging.getLogger(__name__)
_UPLOAD_OVERHEAD_BYTES = 1 << 20  # multipart framing and the form fields beside the file


def _job_queue(runtime: Runtime) -> JobQueue:
    if runtime.settings.embedded:
        return EmbeddedJobQueue(runtime)
    return CeleryJobQueue(create_celery(runtime.settings))


def _resume_embedded_runs(runtime: Runtime, jobs: EmbeddedJobQueue) -> None:
    """The embedded worker died with its process: pick up what it left queued or half-run."""
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

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.embedded:
            # Nothing else will migrate a laptop's SQLite file; distributed deployments run
            # `priorprobe db upgrade` once instead of racing from every API replica.
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            upgrade(settings.resolved_database_url)
        jobs = _job_queue(runtime)
        app.state.jobs = jobs
        if isinstance(jobs, EmbeddedJobQueue):
            _resume_embedded_runs(runtime, jobs)
        try:
            yield
        finally:
            jobs.close()
            runtime.dispose()

    app = FastAPI(
        title="PriorProbe",
        summary="Measure the inductive bias of neural networks.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_upload_bytes + _UPLOAD_OVERHEAD_BYTES,
        # /docs is served by the dashboard with Swagger UI's files vendored (the default page loads
        # them from a CDN); ReDoc has no offline copy, so it is off.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(api_router)
    install_dashboard(app)
    return app
