"""The error responses an operation documents in OpenAPI: one JSON shape for every 4xx/5xx.

Every error body is ``{"detail": ...}``: a message, or (validation, size limits, uploads) a list of
``{"loc", "msg", "type"}`` entries like FastAPI's own 422s. Routes list the statuses they can return
with ``responses=errors(404, 409, ...)``; 503 (a database or broker that is down) is added to every
operation because any of them can meet it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorItem(BaseModel):
    model_config = ConfigDict(extra="allow")  # validation errors may carry "input" and "ctx"

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: str | list[ErrorItem]


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No valid API key (only when keys are required); `WWW-Authenticate: Bearer`",
    403: "The API key lacks the scope this operation needs",
    404: "Not found",
    409: "Conflict with the resource's state",
    413: "Request body too large",
    422: "Invalid input; each entry names the field (`loc`)",
    503: "A dependency (database or broker) is unavailable; retry later",
}


def links_to_run(field: str) -> dict[str, dict]:
    """OpenAPI links from a response carrying a run id to the operations that read that run (the
    fuzzer's stateful phase follows them)."""
    operations = {"GetRun": "get_run", "GetRunReport": "get_run_report", "GetRunMetrics": "get_run_metrics",
                  "CancelRun": "cancel_run"}
    return {name: {"operationId": op, "parameters": {"run_id": f"$response.body#/{field}"}} for name, op in operations.items()}


def links(parameter: str, **operations: str) -> dict[str, dict]:
    """OpenAPI links from a created resource's ``id`` to the operations (name=operationId) that
    take it as ``parameter``."""
    return {name: {"operationId": op, "parameters": {parameter: "$response.body#/id"}} for name, op in operations.items()}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for ``codes`` plus 503, all with the ``ErrorBody`` schema."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in sorted({*codes, 503})}
