"""Exception handlers: user errors become 4xx JSON bodies shaped like FastAPI's own 422s."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.jobs.queue import DispatchError
from app.services.catalog import NotFound
from app.storage import BlobTooLarge
from models.errors import InputError

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying while a dependency is down: long enough not to
# hammer a recovering database, short enough that a restart of a few seconds is barely noticed.
RETRY_AFTER_S = 5

# Errors that mean "a dependency is unreachable", not "this request is wrong": answered 503.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
BROKER_DOWN = (BrokerOperationalError, RedisConnectionError, RedisTimeoutError)


def dependency_down_response(detail: str) -> JSONResponse:
    return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}, content={"detail": detail})


# Echoed inputs are cut to this many characters / items / levels: a 422 names the problem, it
# does not send a multi-megabyte body back.
ECHO_CHARS = 200
ECHO_ITEMS = 20
ECHO_DEPTH = 4


def json_safe(value: Any) -> Any:
    """``value`` with what cannot be encoded as JSON text replaced.

    Validation errors echo the offending ``input``. Non-finite floats (``Infinity``/``NaN``, which
    Python's JSON parser accepts) become their names and lone surrogates become U+FFFD, since
    either would make the 422 itself fail to encode (a 500).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def shortened(value: Any, depth: int = 0) -> Any:
    """An echo of ``value`` with long strings, long lists, large objects and deep nesting cut,
    each cut saying how much was left out."""
    if isinstance(value, (str, bytes)) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]!s}... ({len(value)} characters)"
    if isinstance(value, (dict, list, tuple)) and depth >= ECHO_DEPTH:
        return f"... ({type(value).__name__} nested too deep to echo)"
    if isinstance(value, dict):
        items = list(value.items())
        cut = {key: shortened(item, depth + 1) for key, item in items[:ECHO_ITEMS]}
        if len(items) > ECHO_ITEMS:
            cut["..."] = f"{len(items) - ECHO_ITEMS} more keys"
        return cut
    if isinstance(value, (list, tuple)):
        cut = [shortened(item, depth + 1) for item in value[:ECHO_ITEMS]]
        if len(value) > ECHO_ITEMS:
            cut.append(f"... {len(value) - ECHO_ITEMS} more items")
        return cut
    return value


def error_body(errors: list[dict]) -> dict:
    """``{"detail": errors}`` with each error's echoed ``input`` shortened, ready to encode."""
    detail = [{**error, "input": shortened(error["input"])} if "input" in error else error for error in errors]
    return {"detail": json_safe(jsonable_encoder(detail))}


def input_error_response(exc: InputError, prefix: tuple[str, ...] = ("body",)) -> JSONResponse:
    detail = [{**error, "loc": [*prefix, *error["loc"]]} for error in exc.errors]
    return JSONResponse(status_code=422, content=error_body(detail))


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for this path (Starlette's 405 names only the first
    matching route's methods, so ``OPTIONS /runs`` answered ``Allow: POST`` although GET works)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's JSON answer to an HTTP error, with a 405's ``Allow`` listing every method of the
    path. The dashboard's handler (which replaces this one on the app) calls it for non-browser
    requests. Paths outside the OpenAPI document (the dashboard's pages) keep Starlette's header."""
    if exc.status_code == 405:
        methods = allowed_methods(request)
        if methods:
            exc = StarletteHTTPException(exc.status_code, exc.detail, {**(exc.headers or {}), "Allow": ", ".join(methods)})
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler, plus json_safe for inputs like Infinity.
        return JSONResponse(status_code=422, content=error_body(list(exc.errors())))

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
    async def _dispatch_failed(request: Request, exc: DispatchError) -> JSONResponse:
        return dependency_down_response(f"{exc}. The run was recorded as failed; retry when GET /api/v1/healthz is ok.")

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return dependency_down_response(
            f"the database is unreachable ({type(exc).__name__}); retry when GET /api/v1/healthz is ok"
        )

    async def _broker_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("broker unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return dependency_down_response(f"the broker is unreachable ({type(exc).__name__}); retry when GET /api/v1/healthz is ok")

    for error in DATABASE_DOWN:
        app.add_exception_handler(error, _database_down)
    for error in BROKER_DOWN:
        app.add_exception_handler(error, _broker_down)

    @app.exception_handler(DBAPIError)
    async def _dbapi_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A connection dropped mid-statement surfaces as a DBAPIError flagged as invalidated.
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with the traceback and say so without leaking internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error ({type(exc).__name__}); see server logs"})
