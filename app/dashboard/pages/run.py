"""The Run page: spec, environment, timing, one panel per probe, downloads; and its live status."""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from app.dashboard import chart_export
from app.dashboard.panels import Panel, PanelView, build_panels
from app.dashboard import features
from app.dashboard.pages.runs import ACTIVE
from app.dashboard.web import render
from app.deps import RuntimeDep, SessionDep
from app.services import catalog

router = APIRouter()


def _view(report: dict, runtime, layer: str | None) -> PanelView:
    artifacts = report.get("artifacts") or {}

    def load_array(name: str) -> np.ndarray | None:
        descriptor = artifacts.get(name) or {}
        if not descriptor.get("stored") or not descriptor.get("sha256"):
            return None
        path = runtime.store.path_for(descriptor["sha256"])
        return np.load(path, allow_pickle=False) if path.is_file() else None  # never unpickle stored bytes

    return PanelView(artifacts=artifacts, load_array=load_array, layer=layer)


def _panels(run, report: dict | None, runtime, layer: str | None = None) -> list[Panel]:
    if report is None:
        return []
    panels = build_panels(report, _view(report, runtime, layer))
    # A probe the spec asked for but the report lacks still gets a panel saying so.
    present = {panel.probe for panel in panels}
    for probe in (run.spec or {}).get("probes") or {}:
        if probe not in present:
            panels.append(Panel(probe=probe, title=probe.replace("_", " "), warnings=[f"{probe} produced no result in this report."]))
    return panels


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request, session: SessionDep, runtime: RuntimeDep, layer: str | None = None) -> Response:
    run = catalog.get_run(session, run_id)
    report = catalog.get_report_body(session, run_id)
    model = catalog.get_model(session, run.model_id) if run.model_id else None
    dataset = catalog.get_dataset(session, run.dataset_id) if run.dataset_id else None
    context = {
        "run": run, "report": report, "model": model, "dataset": dataset, "panels": _panels(run, report, runtime, layer),
        "spec_json": json.dumps(run.spec, indent=2), "live": run.status in ACTIVE, "can_cancel": features.cancel_run is not None,
        "can_export": chart_export.available(),
    }  # fmt: skip
    return render(request, "run.html", context)


@router.get("/runs/{run_id}/status")
def run_status(run_id: str, request: Request, session: SessionDep, live: bool = True) -> Response:
    """The progress block the run page polls; when the run finishes the page reloads to show its panels."""
    run = catalog.get_run(session, run_id)
    finished = run.status not in ACTIVE
    headers = {"HX-Refresh": "true"} if finished and live else None
    return render(request, "run_status.html", {"run": run, "live": not finished}, headers=headers)


def _report_or_409(session, run_id: str) -> dict:
    run = catalog.get_run(session, run_id)
    report = catalog.get_report_body(session, run_id)
    if report is None:
        raise HTTPException(409, detail=f"run '{run_id}' is {run.status}; it has no report")
    return report


@router.get("/runs/{run_id}/report.json")
def download_report(run_id: str, session: SessionDep) -> Response:
    return JSONResponse(_report_or_409(session, run_id), headers={"Content-Disposition": f'attachment; filename="report-{run_id}.json"'})


@router.get("/runs/{run_id}/artifacts/{name}.npy")
def download_artifact(run_id: str, name: str, session: SessionDep, runtime: RuntimeDep) -> Response:
    descriptor = (_report_or_409(session, run_id).get("artifacts") or {}).get(name)
    if not descriptor or not descriptor.get("stored") or not descriptor.get("sha256"):
        raise HTTPException(404, detail=f"run '{run_id}' has no stored artifact '{name}'")
    return FileResponse(runtime.store.path_for(descriptor["sha256"]), media_type="application/octet-stream", filename=f"{name}.npy")


@router.get("/runs/{run_id}/charts/{chart_id}.{fmt}")
def download_chart(run_id: str, chart_id: str, fmt: str, session: SessionDep, runtime: RuntimeDep, layer: str | None = None) -> Response:
    """One panel chart rendered on the server (vl-convert), for reports and CI summaries."""
    if fmt not in chart_export.FORMATS:
        raise HTTPException(404, detail=f"charts come as {sorted(chart_export.FORMATS)}")
    run = catalog.get_run(session, run_id)
    for panel in _panels(run, _report_or_409(session, run_id), runtime, layer):
        for chart in panel.charts:
            if chart.id == chart_id:
                return chart_export.response(chart, fmt, filename=f"{run_id}-{chart_id}")
    raise HTTPException(404, detail=f"run '{run_id}' has no chart '{chart_id}'")
