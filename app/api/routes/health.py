"""``GET /healthz``: is the database reachable, and the broker (or the embedded worker)?"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from app.deps import JobQueueDep, RuntimeDep
from app.schemas.probes import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, operation_id="healthz")
def healthz(runtime: RuntimeDep, jobs: JobQueueDep, response: Response) -> Health:
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = "ok"
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
    healthy = database == "ok" and broker in ("ok", "embedded")
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if healthy else "degraded",
        mode="embedded" if runtime.settings.embedded else "distributed",
        database=database,
        broker=broker,
    )
