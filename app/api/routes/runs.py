"""Runs: ``POST /runs`` (queue a run spec), status, report, listing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import func, select

from app.deps import JobQueueDep, RuntimeDep, SessionDep
from app.orm import Report, Run, RunStatus
from app.schemas.metrics import RunMetricList
from app.schemas.runs import RunList, RunRead
from app.services.run_metrics import run_metrics
from app.services.runs import create_run
from workers.report import Report as ReportDocument
from workers.runspec import RunSpec

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunRead, operation_id="create_run")
def submit_run(spec: RunSpec, session: SessionDep, runtime: RuntimeDep, jobs: JobQueueDep) -> RunRead:
    """Validate the run spec (probe params included), store the run, and queue it."""
    run = create_run(session, spec, runtime.settings, jobs)
    return RunRead.model_validate(run)


@router.get("", response_model=RunList, operation_id="list_runs")
def list_runs(
    session: SessionDep,
    model_id: str | None = None,
    dataset_id: str | None = None,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunList:
    filters = []
    if model_id:
        filters.append(Run.model_id == model_id)
    if dataset_id:
        filters.append(Run.dataset_id == dataset_id)
    if run_status:
        filters.append(Run.status == run_status)
    count = session.scalar(select(func.count()).select_from(Run).where(*filters)) or 0
    runs = session.scalars(select(Run).where(*filters).order_by(Run.created_at.desc(), Run.id).offset(offset).limit(limit)).all()
    return RunList(data=[RunRead.model_validate(r) for r in runs], count=count)


def _get_run(session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run with id '{run_id}'")
    return run


@router.get("/{run_id}", response_model=RunRead, operation_id="get_run")
def get_run(run_id: str, session: SessionDep) -> RunRead:
    return RunRead.model_validate(_get_run(session, run_id))


def _get_report(session, run_id: str) -> Report:
    run = _get_run(session, run_id)
    report = session.get(Report, run_id)
    if report is None:
        hint = f"run failed: {run.error}" if run.status == RunStatus.failed else "poll GET /api/v1/runs/{id} until status is 'succeeded'"
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"run '{run_id}' is {run.status}; no report ({hint})")
    return report


@router.get("/{run_id}/report", operation_id="get_run_report", response_model=ReportDocument)
def get_report(run_id: str, session: SessionDep) -> JSONResponse:
    """The run's typed report; 409 while the run is queued or running, or if it failed."""
    # The stored body was produced by ``Report.model_dump`` (or brought to that format by the
    # migration), so it is served as stored instead of being validated again on every read.
    return JSONResponse(_get_report(session, run_id).body)


@router.get("/{run_id}/metrics", response_model=RunMetricList, operation_id="get_run_metrics")
def get_run_metrics(run_id: str, session: SessionDep) -> RunMetricList:
    """The run's metrics (stable keys, values, intervals); 409 until the run has succeeded."""
    _get_report(session, run_id)
    data = run_metrics(session, run_id)
    return RunMetricList(run_id=run_id, data=data, count=len(data))


@router.get("/{run_id}/artifacts/{name}", operation_id="get_run_artifact", response_class=FileResponse)
def get_artifact(run_id: str, name: str, session: SessionDep, runtime: RuntimeDep) -> FileResponse:
    """An array a probe stored beside its report (``report["artifacts"]``), as a NumPy .npy file."""
    report = session.get(Report, run_id)
    descriptor = (report.body.get("artifacts") or {}).get(name) if report else None
    if descriptor is None or not descriptor.get("stored"):
        known = sorted((report.body.get("artifacts") or {}) if report else [])
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"run '{run_id}' has no artifact '{name}' (artifacts: {known})")
    return FileResponse(runtime.store.path_for(descriptor["sha256"]), media_type="application/octet-stream", filename=f"{name}.npy")
