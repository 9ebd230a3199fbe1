"""Models (lineages, upload, a model with its runs and metric trends) and Datasets (list, upload)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from app.dashboard import charts, features
from app.dashboard.charts import Chart
from app.dashboard.forms import errors_by_field
from app.dashboard.security import CSRF_FIELD, check_csrf, require_writer
from app.dashboard.web import render
from app.deps import RuntimeDep, SessionDep
from app.services import catalog
from app.services.run_metrics import lineage_metric_keys, metric_trend
from app.services.uploads import create_dataset, create_model
from app.storage import BlobTooLarge
from models.errors import InputError
from workers.data.builtin import BUILTIN_DATASETS

router = APIRouter()
TRENDS_SHOWN = 24  # metrics per lineage page; the rest are one click away in the API


def _upload_field(loc: list[str]) -> str | None:
    return loc[0] if loc and loc[0] in ("file", "arch", "name", "tags", "version") else None


def _models_context(session, values=None, errors=None) -> dict:
    models, count = catalog.list_models(session, limit=200, offset=0)
    return {"lineages": catalog.model_lineages(session), "models": models, "count": count, "values": values or {},
            "errors": errors or {}, "versions": features.model_versions}  # fmt: skip


@router.get("/models")
def models_page(request: Request, session: SessionDep) -> Response:
    return render(request, "models.html", _models_context(session))


@router.post("/models")
def upload_model(
    request: Request, session: SessionDep, runtime: RuntimeDep,
    file: Annotated[UploadFile | None, File()] = None, arch: Annotated[str, Form()] = "",
    name: Annotated[str, Form(max_length=200)] = "", tags: Annotated[str, Form()] = "",
    version: Annotated[str, Form(max_length=100)] = "", csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> Response:  # fmt: skip
    check_csrf(request, csrf)
    user = require_writer(request)
    values = {"arch": arch, "name": name, "tags": tags, "version": version}
    try:
        if file is None or not file.filename:
            raise InputError.at(["file"], "choose a checkpoint file (.safetensors, .pt or .pt2)")
        if not arch.strip():
            raise InputError.at(["arch"], "give the architecture as JSON, e.g. {\"name\": \"mlp\", \"in_dim\": 64, ...}")
        extra = features.model_upload_extras(version, user.name if user else None)
        record, _ = create_model(session, runtime.store, handle=file.file, filename=file.filename, arch_json=arch,
                                 name=name or None, tags=tags or None, max_bytes=runtime.settings.max_upload_bytes, **extra)  # fmt: skip
    except InputError as exc:
        return render(request, "models.html", _models_context(session, values, errors_by_field(exc, _upload_field)), status_code=422)
    except BlobTooLarge as exc:
        return render(request, "models.html", _models_context(session, values, {"file": [str(exc)]}), status_code=413)
    return RedirectResponse(f"/models/{record.id}", status_code=303)


def lineage_trends(session, model_name: str) -> list[Chart]:
    """Each metric of the lineage's succeeded runs, oldest first, one chart per key."""
    found = []
    for key in lineage_metric_keys(session, model_name)[:TRENDS_SHOWN]:
        rows, _ = metric_trend(session, key, model_name=model_name, limit=200)
        points = []
        for metric, run, model in rows:
            version = getattr(model, "version", None) if model is not None else None
            label = f"{version or model.id[:6]} · run {run.id[:6]}" if model is not None else run.id[:6]
            points.append({"label": label, "value": metric.value, "low": metric.ci_low, "high": metric.ci_high})
        spec = charts.trend_chart(points, key, rows[0][0].unit if rows else None)
        if spec is not None:
            found.append(Chart(id=f"trend.{key}", title=key, spec=spec))
    return found


@router.get("/models/{model_id}")
def model_page(model_id: str, request: Request, session: SessionDep) -> Response:
    model = catalog.get_model(session, model_id)
    runs, run_count = catalog.list_runs(session, catalog.RunFilters(model_id=model_id), limit=100, offset=0)
    lineage, _ = catalog.list_models(session, name=model.name, limit=100, offset=0)
    context = {"model": model, "runs": runs, "run_count": run_count, "lineage": lineage, "trends": lineage_trends(session, model.name)}
    return render(request, "model.html", context)


def _datasets_context(session, values=None, errors=None) -> dict:
    datasets, count = catalog.list_datasets(session, limit=200, offset=0)
    return {"datasets": datasets, "count": count, "builtins": BUILTIN_DATASETS, "values": values or {}, "errors": errors or {}}


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep) -> Response:
    return render(request, "datasets.html", _datasets_context(session))


@router.post("/datasets")
def upload_dataset(
    request: Request, session: SessionDep, runtime: RuntimeDep,
    file: Annotated[UploadFile | None, File()] = None, name: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> Response:  # fmt: skip
    check_csrf(request, csrf)
    require_writer(request)
    try:
        if file is None or not file.filename:
            raise InputError.at(["file"], "choose a .npz or .safetensors file with X_train, y_train, X_test, y_test")
        create_dataset(session, runtime.store, handle=file.file, filename=file.filename, name=name or None,
                       max_bytes=runtime.settings.max_upload_bytes)  # fmt: skip
    except InputError as exc:
        errors = errors_by_field(exc, lambda loc: "file" if loc and loc[0] != "name" else "name")
        return render(request, "datasets.html", _datasets_context(session, {"name": name}, errors), status_code=422)
    except BlobTooLarge as exc:
        return render(request, "datasets.html", _datasets_context(session, {"name": name}, {"file": [str(exc)]}), status_code=413)
    return RedirectResponse("/datasets", status_code=303)
