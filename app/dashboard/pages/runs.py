"""The Runs page: filters, pagination, live progress, and the form that queues a run."""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.dashboard import features
from app.dashboard.forms import Field, errors_by_field, fields_from_schema, parse_fields
from app.dashboard.security import CSRF_FIELD, check_csrf, require_writer
from app.dashboard.web import render
from app.deps import JobQueueDep, RuntimeDep, SessionDep
from app.orm import RunStatus
from app.services import catalog
from app.services import runs as run_service
from app.jobs.queue import DispatchError
from models.errors import InputError
from workers.data.builtin import BUILTIN_DATASETS
from workers.probes.registry import PROBES
from workers.runspec import RunSpec

router = APIRouter()
PAGE_SIZE = 50
ACTIVE = (RunStatus.queued, RunStatus.running)


@cache  # the registry is fixed for the life of the process; schemas cost ~10 ms to build
def probe_fields() -> dict[str, list[Field]]:
    return {name: fields_from_schema(f"probe.{name}", probe.Params.model_json_schema()) for name, probe in sorted(PROBES.items())}


def _filters(status: str | None, model_name: str | None, probe: str | None, tag: str | None) -> catalog.RunFilters:
    return catalog.RunFilters(
        status=status if status in RunStatus.__members__ else None, model_name=model_name or None,
        probe=probe or None, tag=tag or None,
    )  # fmt: skip


def _table_context(session, filters: catalog.RunFilters, page: int) -> dict[str, Any]:
    page = max(page, 1)
    rows, count = catalog.list_runs(session, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    query = {k: v for k, v in vars(filters).items() if v and k in ("status", "model_name", "probe", "tag")}
    return {
        "rows": rows, "count": count, "page": page, "pages": max(1, -(-count // PAGE_SIZE)), "filters": filters,
        "query": query, "live": any(row.run.status in ACTIVE for row in rows), "can_cancel": features.cancel_run is not None,
    }  # fmt: skip


def _form_context(session, values: dict[str, Any] | None = None, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    models, _ = catalog.list_models(session, limit=200, offset=0)
    datasets, _ = catalog.list_datasets(session, limit=200, offset=0)
    return {
        "models": models, "datasets": datasets, "builtins": sorted(BUILTIN_DATASETS), "probes": PROBES,
        "probe_fields": probe_fields(), "values": values or {}, "errors": errors or {},
        "errored_probes": {name.split(".")[1] for name in errors or {} if name.startswith("probe.")},
    }  # fmt: skip


def _page_context(session, filters: catalog.RunFilters, page: int = 1, queued: str | None = None, **form: Any) -> dict[str, Any]:
    return {**_table_context(session, filters, page), **_form_context(session, **form), "statuses": list(RunStatus), "queued": queued}


@router.get("/")
def runs_page(
    request: Request, session: SessionDep,
    status: str | None = None, model_name: str | None = None, probe: str | None = None, tag: str | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1, queued: str | None = None,
) -> Response:  # fmt: skip
    return render(request, "runs.html", _page_context(session, _filters(status, model_name, probe, tag), page, queued))


@router.get("/runs/table")
def runs_table(
    request: Request, session: SessionDep,
    status: str | None = None, model_name: str | None = None, probe: str | None = None, tag: str | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:  # fmt: skip
    """The table alone: what the page polls (htmx) while any of its runs is queued or running."""
    return render(request, "runs_table.html", _table_context(session, _filters(status, model_name, probe, tag), page))


def field_for_loc(loc: list[str]) -> str | None:
    """The form field an error location of the run spec belongs to."""
    match loc:
        case ["model", "weights", *_]:
            return "model"
        case ["model", *_]:
            return "arch"
        case ["task", "dataset", *_]:
            return "dataset"
        case ["task", ("target_error" | "loss") as name, *_]:
            return name
        case ["task", *_]:
            return "dataset"
        case ["seed", *_]:
            return "seed"
        case ["probes", name, param, *_] if name in PROBES:
            return f"probe.{name}.{param}"
        case ["probes", *_]:
            return "probes"
    return None


def spec_from_form(form: dict[str, Any], chosen: list[str]) -> dict[str, Any]:
    """The run spec the form describes (validated afterwards, exactly as ``POST /api/v1/runs`` would)."""
    errors: list[dict] = []
    model: dict[str, Any] = {}
    if form.get("model"):
        model["weights"] = form["model"]
    if form.get("arch", "").strip():
        try:
            model["arch"] = json.loads(form["arch"])
        except json.JSONDecodeError as exc:
            errors.append({"loc": ["model", "arch"], "msg": f"not valid JSON: {exc}"})
    spec: dict[str, Any] = {"model": model, "probes": {}}
    dataset = form.get("dataset", "")
    if dataset:
        kind, _, ref = dataset.partition(":")
        dataset_ref: dict[str, Any] = {"id": ref} if kind == "id" else {"builtin": ref}
        if kind == "builtin" and form.get("dataset_params", "").strip():
            try:
                extra = json.loads(form["dataset_params"])
                if not isinstance(extra, dict):
                    raise ValueError("must be a JSON object")
                dataset_ref.update(extra)
            except ValueError as exc:
                errors.append({"loc": ["task", "dataset"], "msg": f"parameters: {exc}"})
        target = form.get("target_error", "").strip()
        try:
            target_error = float(target) if target else None
        except ValueError:
            errors.append({"loc": ["task", "target_error"], "msg": f"not a number: {target!r}"})
            target_error = None
        if target_error is None and not any(e["loc"][:2] == ["task", "target_error"] for e in errors):
            errors.append({"loc": ["task", "target_error"], "msg": "required with a dataset"})
        spec["task"] = {"dataset": dataset_ref, "loss": form.get("loss") or "mse", "target_error": target_error}
    seed = form.get("seed", "").strip()
    if seed:
        try:
            spec["seed"] = int(seed)
        except ValueError:
            errors.append({"loc": ["seed"], "msg": f"not an integer: {seed!r}"})
    if not chosen:
        errors.append({"loc": ["probes"], "msg": "choose at least one probe"})
    fields = probe_fields()
    for name in chosen:
        if name not in PROBES:
            errors.append({"loc": ["probes"], "msg": f"unknown probe {name!r}"})
            continue
        try:
            spec["probes"][name] = parse_fields(fields[name], form, ["probes", name])
        except InputError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InputError(errors)
    return spec


@router.post("/runs")
async def queue_run(request: Request, session: SessionDep, runtime: RuntimeDep, jobs: JobQueueDep) -> Response:
    form = await request.form()
    check_csrf(request, form.get(CSRF_FIELD))
    user = require_writer(request)
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    chosen = [str(v) for v in form.getlist("probes")]
    values["probes"] = chosen
    try:
        spec_json = spec_from_form(values, chosen)
        try:
            spec = RunSpec.model_validate(spec_json)
        except ValidationError as exc:
            raise InputError.from_validation(exc) from None
        run = run_service.create_run(session, spec, runtime.settings, jobs, **features.run_extras(user.name if user else None))
    except InputError as exc:
        context = _page_context(session, catalog.RunFilters(), values=values, errors=errors_by_field(exc, field_for_loc))
        return render(request, "runs.html", context, status_code=422)
    except DispatchError as exc:
        errors = {"form": [f"the run was stored as failed because it could not be queued: {exc}"]}
        return render(request, "runs.html", _page_context(session, catalog.RunFilters(), values=values, errors=errors), status_code=503)
    return RedirectResponse(f"/?queued={run.id}#runs", status_code=303)


if features.cancel_run is not None:

    @router.post("/runs/{run_id}/cancel")
    async def cancel_run(run_id: str, request: Request, session: SessionDep, runtime: RuntimeDep) -> Response:
        form = await request.form()
        check_csrf(request, form.get(CSRF_FIELD))
        require_writer(request)
        features.cancel_run(runtime.session_factory, catalog.get_run(session, run_id).id)
        return RedirectResponse(f"/runs/{run_id}", status_code=303)
