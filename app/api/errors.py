"""Exception handlers: user errors become 4xx JSON bodies shaped like FastAPI's own 422s."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.jobs.queue import DispatchError
from app.services.catalog import NotFound
from app.storage import BlobTooLarge
from models.errors import InputError

log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name (``"inf"``, ``"-inf"``, ``"nan"``).

    Validation errors echo the offending ``input``; when a client sent ``Infinity`` or ``NaN`` (which
    Python's JSON parser accepts) that echo is not valid JSON, and serialising it would turn a 422
    into a 500.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def input_error_response(exc: InputError, prefix: tuple[str, ...] = ("body",)) -> JSONResponse:
    detail = [{**error, "loc": [*prefix, *error["loc"]]} for error in exc.errors]
    return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(detail))})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler, plus json_safe for inputs like Infinity.
        return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(exc.errors()))})

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return input_error_response(exc)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(BlobTooLarge)
    async def _too_large(request: Request, exc: BlobTooLarge) -> JSONResponse:
        return JSONResponse(
            status_code=413,
            content={"detail": [{"loc": ["body", "file"], "msg": str(exc), "type": "too_large"}]},
        )

    @app.exception_handler(DispatchError)
    async def _broker_down(request: Request, exc: DispatchError) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content={"detail": f"{exc}. The run was recorded as failed; retry when GET /api/v1/healthz is ok."},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with the traceback and say so without leaking internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error ({type(exc).__name__}); see server logs"})
