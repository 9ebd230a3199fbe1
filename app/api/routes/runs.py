"""Runs: ``POST /runs`` (queue a run spec), status, report, listing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import Text, cast, select

from app.api.auth import ReadAccess, WriteAccess
from app.api.responses import errors, links_to_run
from app.api.session_route import SessionRoute
from app.api.storable import require_storable
from app.deps import JobQueueDep, RuntimeDep, SessionDep
from app.jobs.registry import notify_run_finished
from app.orm import Report, Run, RunStatus
from app.runtime import Runtime
from app.schemas.metrics import RunMetricList
from app.schemas.runs import RunList, RunRead, RunSummary
from app.services import catalog, run_state
from app.services.model_refs import resolve_model_id
from app.services.report_cache import CachedReport
from app.services.run_metrics import run_metrics
from app.services.runs import create_run
from workers.report import Report as ReportDocument
from workers.runspec import RunSpec

router = APIRouter(prefix="/runs", tags=["runs"], route_class=SessionRoute)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunRead, operation_id="create_run",
             responses={**errors(400, 401, 403, 413, 422), 202: {"description": "Queued", "links": links_to_run("id")}})
def submit_run(
    spec: RunSpec, session: SessionDep, runtime: RuntimeDep, jobs: JobQueueDep, caller: WriteAccess
) -> RunRead:
    """Validate the run spec (probe params included), store the run, and queue it.

    ``model.weights`` may be ``latest:<name>``; the stored spec names the model it resolved to.
    """
    require_storable(spec.model_dump(mode="python", exclude_none=True), ("body",))
    run = create_run(session, spec, runtime.settings, jobs, created_by=caller.key_name)
    return RunRead.model_validate(run)


@router.get("", response_model=RunList, operation_id="list_runs", responses=errors(401, 403, 422))
def list_runs(
    session: SessionDep,
    _: ReadAccess,
    model_id: Annotated[str | None, Query(description="a model id or latest:<name>")] = None,
    model_name: Annotated[str | None, Query(max_length=200, description="runs of any model of this lineage")] = None,
    dataset_id: str | None = None,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    probe: Annotated[str | None, Query(max_length=100, description="runs that include this probe")] = None,
    tag: Annotated[str | None, Query(max_length=64, description="runs of models with this tag")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> RunList:
    filters = catalog.RunFilters(model_id=resolve_model_id(session, model_id) if model_id else None, dataset_id=dataset_id,
                                 status=run_status, model_name=model_name, probe=probe, tag=tag)  # fmt: skip
    rows, count = catalog.list_runs(session, filters, limit=limit, offset=offset, with_spec=False)
    return RunList(data=[RunSummary.model_validate(row.run) for row in rows], count=count)


def _get_run(session, run_id: str) -> Run:
    return catalog.get_run(session, run_id)


@router.get("/{run_id}", response_model=RunRead, operation_id="get_run", responses=errors(401, 403, 404, 422))
def get_run(run_id: str, session: SessionDep, _: ReadAccess) -> RunRead:
    return RunRead.model_validate(_get_run(session, run_id))


@router.post("/{run_id}/cancel", response_model=RunRead, operation_id="cancel_run",
             responses=errors(401, 403, 404, 409, 422))
def cancel_run(run_id: str, session: SessionDep, runtime: RuntimeDep, jobs: JobQueueDep, _: WriteAccess) -> RunRead:
    """Cancel a queued run at once, or a running one at its next progress point; 409 once finished."""
    run = _get_run(session, run_id)
    if run_state.cancel(runtime.session_factory, run_id) is None:
        session.refresh(run)
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"run '{run_id}' already finished: {run.status}")
    notify_run_finished(runtime, jobs, run_id)
    session.refresh(run)
    return RunRead.model_validate(run)


def _no_report(session, run_id: str) -> HTTPException:
    run = _get_run(session, run_id)
    hint = {
        RunStatus.failed: f"run failed: {run.error}",
        RunStatus.cancelled: "the run was cancelled",
    }.get(run.status, "poll GET /api/v1/runs/{id} until status is 'succeeded'")
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"run '{run_id}' is {run.status}; no report ({hint})")


def _etag(run_id: str, created_at) -> str:
    # A report is written once, with the run's final status, and never changed: its id and
    # creation time identify its bytes.
    return f'"{run_id}.{created_at.timestamp():.6f}"'


def _load_report(runtime: Runtime, run_id: str) -> CachedReport:
    """The stored JSON text of the run's report (no parse, no validation: it was produced by
    ``Report.model_dump`` or brought to that format by the migration); 404/409 without one."""
    with runtime.session_factory() as session:
        row = session.execute(
            select(Report.created_at, cast(Report.body, Text)).where(Report.run_id == run_id)
        ).first()
        if row is None:
            raise _no_report(session, run_id)
    entry = CachedReport(etag=_etag(run_id, row[0]), body=row[1].encode())
    runtime.report_cache.put(run_id, entry)
    return entry


@router.get("/{run_id}/report", operation_id="get_run_report", response_model=ReportDocument,
            responses={**errors(401, 403, 404, 409, 422),
                       304: {"description": "Not modified (the `If-None-Match` ETag matched)."}})
async def get_report(run_id: str, request: Request, runtime: RuntimeDep, _: ReadAccess) -> Response:
    """The run's typed report; 409 while the run is queued or running, or if it failed or was cancelled.

    Served with an ``ETag``; a request with ``If-None-Match`` set to it gets a body-less 304.
    """
    # Reports never change, so the bytes are served from the process's report cache when there,
    # on the event loop; only a miss takes a thread and a database connection.
    entry = runtime.report_cache.get(run_id) or await run_in_threadpool(_load_report, runtime, run_id)
    headers = {"ETag": entry.etag, "Cache-Control": "no-cache"}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and (if_none_match.strip() == "*" or entry.etag in (t.strip() for t in if_none_match.split(","))):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=entry.body, media_type="application/json", headers=headers)


@router.get("/{run_id}/metrics", response_model=RunMetricList, operation_id="get_run_metrics",
            responses=errors(401, 403, 404, 409, 422))
def get_run_metrics(run_id: str, session: SessionDep, _: ReadAccess) -> RunMetricList:
    """The run's metrics (stable keys, values, intervals); 409 until the run has succeeded."""
    if session.scalar(select(Report.run_id).where(Report.run_id == run_id)) is None:
        raise _no_report(session, run_id)
    data = run_metrics(session, run_id)
    return RunMetricList(run_id=run_id, data=data, count=len(data))


@router.get("/{run_id}/artifacts/{name}", operation_id="get_run_artifact", response_class=FileResponse,
            responses={**errors(401, 403, 404, 422), 200: {"content": {"application/octet-stream": {}}, "description": "The array as .npy"}})
def get_artifact(run_id: str, name: str, session: SessionDep, runtime: RuntimeDep, _: ReadAccess) -> FileResponse:
    """An array a probe stored beside its report (``report["artifacts"]``), as a NumPy .npy file."""
    report = session.get(Report, run_id)
    descriptor = (report.body.get("artifacts") or {}).get(name) if report else None
    if descriptor is None or not descriptor.get("stored"):
        known = sorted((report.body.get("artifacts") or {}) if report else [])
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run '{run_id}' has no artifact '{name}' (artifacts: {known})")
    return FileResponse(runtime.store.path_for(descriptor["sha256"]), media_type="application/octet-stream", filename=f"{name}.npy")
