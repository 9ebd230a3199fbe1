"""Runs: ``POST /runs`` (queue a run spec), status, report, listing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, JSONResponse

from app.api.auth import ReadAccess, WriteAccess
from app.deps import JobQueueDep, RuntimeDep, SessionDep
from app.jobs.registry import notify_run_finished
from app.orm import Report, Run, RunStatus
from app.schemas.metrics import RunMetricList
from app.schemas.runs import RunList, RunRead
from app.services import catalog, run_state
from app.services.model_refs import resolve_model_id
from app.services.run_metrics import run_metrics
from app.services.runs import create_run
from workers.report import Report as ReportDocument
from workers.runspec import RunSpec

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunRead, operation_id="create_run")
def submit_run(
    spec: RunSpec, session: SessionDep, runtime: RuntimeDep, jobs: JobQueueDep, caller: WriteAccess
) -> RunRead:
    """Validate the run spec (probe params included), store the run, and queue it.

    ``model.weights`` may be ``latest:<name>``; the stored spec names the model it resolved to.
    """
    run = create_run(session, spec, runtime.settings, jobs, created_by=caller.key_name)
    return RunRead.model_validate(run)


@router.get("", response_model=RunList, operation_id="list_runs")
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
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    filters = catalog.RunFilters(model_id=resolve_model_id(session, model_id) if model_id else None, dataset_id=dataset_id,
                                 status=run_status, model_name=model_name, probe=probe, tag=tag)  # fmt: skip
    rows, count = catalog.list_runs(session, filters, limit=limit, offset=offset)
    return RunList(data=[RunRead.model_validate(row.run) for row in rows], count=count)


def _get_run(session, run_id: str) -> Run:
    return catalog.get_run(session, run_id)


@router.get("/{run_id}", response_model=RunRead, operation_id="get_run")
def get_run(run_id: str, session: SessionDep, _: ReadAccess) -> RunRead:
    return RunRead.model_validate(_get_run(session, run_id))


@router.post("/{run_id}/cancel", response_model=RunRead, operation_id="cancel_run")
def cancel_run(run_id: str, session: SessionDep, runtime: RuntimeDep, jobs: JobQueueDep, _: WriteAccess) -> RunRead:
    """Cancel a queued run at once, or a running one at its next progress point; 409 once finished."""
    run = _get_run(session, run_id)
    if run_state.cancel(runtime.session_factory, run_id) is None:
        session.refresh(run)
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"run '{run_id}' already finished: {run.status}")
    notify_run_finished(runtime, jobs, run_id)
    session.refresh(run)
    return RunRead.model_validate(run)


def _get_report(session, run_id: str) -> Report:
    run = _get_run(session, run_id)
    report = session.get(Report, run_id)
    if report is None:
        hint = {
            RunStatus.failed: f"run failed: {run.error}",
            RunStatus.cancelled: "the run was cancelled",
        }.get(run.status, "poll GET /api/v1/runs/{id} until status is 'succeeded'")
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"run '{run_id}' is {run.status}; no report ({hint})")
    return report


@router.get("/{run_id}/report", operation_id="get_run_report", response_model=ReportDocument)
def get_report(run_id: str, session: SessionDep, _: ReadAccess) -> JSONResponse:
    """The run's typed report; 409 while the run is queued or running, or if it failed."""
    # The stored body was produced by ``Report.model_dump`` (or brought to that format by the
    # migration), so it is served as stored instead of being validated again on every read.
    return JSONResponse(_get_report(session, run_id).body)


@router.get("/{run_id}/metrics", response_model=RunMetricList, operation_id="get_run_metrics")
def get_run_metrics(run_id: str, session: SessionDep, _: ReadAccess) -> RunMetricList:
    """The run's metrics (stable keys, values, intervals); 409 until the run has succeeded."""
    _get_report(session, run_id)
    data = run_metrics(session, run_id)
    return RunMetricList(run_id=run_id, data=data, count=len(data))


@router.get("/{run_id}/artifacts/{name}", operation_id="get_run_artifact", response_class=FileResponse)
def get_artifact(run_id: str, name: str, session: SessionDep, runtime: RuntimeDep, _: ReadAccess) -> FileResponse:
    """An array a probe stored beside its report (``report["artifacts"]``), as a NumPy .npy file."""
    report = session.get(Report, run_id)
    descriptor = (report.body.get("artifacts") or {}).get(name) if report else None
    if descriptor is None or not descriptor.get("stored"):
        known = sorted((report.body.get("artifacts") or {}) if report else [])
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run '{run_id}' has no artifact '{name}' (artifacts: {known})")
    return FileResponse(runtime.store.path_for(descriptor["sha256"]), media_type="application/octet-stream", filename=f"{name}.npy")
