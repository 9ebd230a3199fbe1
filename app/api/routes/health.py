"""``GET /healthz``: is the database reachable and at the Alembic head, and the broker (or the
embedded worker)?"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response, status
from sqlalchemy import text

from app.api.errors import RETRY_AFTER_S
from app.deps import JobQueueDep, RuntimeDep
from app.jobs.queue import JobQueue
from app.runtime import Runtime
from app.schemas.probes import Health

router = APIRouter(tags=["health"])


def _check(runtime: Runtime, jobs: JobQueue, request: Request) -> Health:
    migrations = "unknown (database unreachable)"
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = "ok"
        migrations = request.app.state.schema.check() or "ok"
    except Exception as exc:
        database = f"unreachable: {type(exc).__name__}"
    if runtime.settings.embedded:
        broker = "embedded"
    else:
        try:
            jobs.ping()
            broker = "ok"
        except Exception as exc:
            broker = f"unreachable: {type(exc).__name__}"
    healthy = database == "ok" and migrations == "ok" and broker in ("ok", "embedded")
    return Health(
        status="ok" if healthy else "degraded",
        mode="embedded" if runtime.settings.embedded else "distributed",
        database=database,
        broker=broker,
        migrations=migrations,
    )


@router.get("/healthz", response_model=Health, operation_id="healthz",
            responses={503: {"model": Health, "description": "The database or the broker is unreachable, or the schema is not at the head"}})
async def healthz(request: Request, runtime: RuntimeDep, jobs: JobQueueDep, response: Response) -> Health:
    # Not on the default thread pool that serves the other routes: a load balancer must get its
    # answer while every one of those threads is busy.
    health = await anyio.to_thread.run_sync(_check, runtime, jobs, request, limiter=request.app.state.health_limiter)
    if health.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return health
