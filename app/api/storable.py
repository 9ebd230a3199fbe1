"""Text the database can store: no NUL byte, no lone surrogate, checked before any query.

PostgreSQL refuses NUL in text and JSONB (``DataError``), and a lone UTF-16 surrogate (``"\\ud800"``
in JSON, which Python's parser accepts) cannot be encoded as UTF-8 at all (``UnicodeEncodeError``):
either used to reach the database and come back as a 500. These checks turn them into 422s that
name the field, for path and query parameters (a router dependency), JSON bodies and form fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "contains a NUL byte (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (invalid Unicode), which cannot be stored"
    return None


def unstorable(value: Any, loc: tuple) -> list[dict]:
    """Validation errors (FastAPI's shape) for every unstorable string in ``value``, keys included."""
    errors: list[dict] = []
    if isinstance(value, str):
        if problem := text_problem(value):
            errors.append({"loc": loc, "msg": problem, "type": "string_unstorable", "input": value})
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                errors.append({"loc": (*loc, key), "msg": f"key {problem}", "type": "string_unstorable", "input": key})
            errors += unstorable(item, (*loc, key))
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        for index, item in enumerate(value):
            errors += unstorable(item, (*loc, index))
    return errors


def require_storable(value: Any, loc: tuple) -> None:
    if errors := unstorable(value, loc):
        raise RequestValidationError(errors)


async def storable_params(request: Request) -> None:
    """Router dependency: path and query parameters, before any route touches the database."""
    errors = []
    for name, value in request.path_params.items():
        errors += unstorable(value, ("path", name))
    for name, value in request.query_params.multi_items():
        errors += unstorable(value, ("query", name))
    if errors:
        raise RequestValidationError(errors)
