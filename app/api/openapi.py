"""The published OpenAPI document, with request schemas as close to what the API accepts as
OpenAPI can say.

The run spec is validated in two steps (``RunSpec``, then each probe's own ``Params``), so the
schema pydantic derives from ``RunSpec`` alone says "any object" for each probe's params and "any
string" for a built-in dataset name. Here those are replaced by the registries' own schemas: one
property per registered probe with its ``Params`` schema, the built-in dataset names as an enum,
and "arch or weights" for the model reference. What OpenAPI cannot express (an uploaded id that
must exist, a probe that needs a task, an architecture a probe does not take) stays a 422.

The security requirements say what this deployment enforces: with ``PRIORPROBE_AUTH=off`` no
operation requires a key (the scheme stays declared, for clients that send one anyway), and with
``PRIORPROBE_PUBLIC_READ=true`` the read operations also accept no key. A document that asks for a
key the server does not check misleads clients and generated tests alike.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic.json_schema import models_json_schema

from app.config import Settings
from priorprobe_client.schemas.keys import KeyScope
from workers.data.builtin import BUILTIN_DATASETS
from workers.probes.registry import PROBES

_REF = "#/components/schemas/{model}"


def _probe_params(schemas: dict[str, Any]) -> dict[str, Any]:
    names = sorted(PROBES)
    refs, top = models_json_schema([(PROBES[name].Params, "validation") for name in names], ref_template=_REF)
    schemas.update(top.get("$defs", {}))
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {name: refs[(PROBES[name].Params, "validation")] for name in names},
        "title": "Probes",
        "description": "Probe name -> its parameters (see GET /api/v1/probes).",
    }


def refine(schema: dict[str, Any]) -> dict[str, Any]:
    schemas = schema.get("components", {}).get("schemas", {})
    if "RunSpec" in schemas:
        schemas["RunSpec"]["properties"]["probes"] = _probe_params(schemas)
    if "ModelRef" in schemas:
        schemas["ModelRef"]["anyOf"] = [
            {"required": ["arch"], "properties": {"arch": {"type": "object"}}},
            {"required": ["weights"], "properties": {"weights": {"type": "string"}}},
        ]
    if "BuiltinDatasetRef" in schemas:
        schemas["BuiltinDatasetRef"]["properties"]["builtin"] = {"type": "string", "enum": sorted(BUILTIN_DATASETS)}
    return schema


def _required_scope(route: APIRoute) -> KeyScope | None:
    """The scope the route's access parameter asks for (``app.api.auth.require`` marks it)."""
    for dependency in route.dependant.dependencies:
        scope = getattr(dependency.call, "required_scope", None)
        if scope is not None:
            return scope
    return None


def enforced_security(schema: dict[str, Any], routes: list, settings: Settings) -> dict[str, Any]:
    """``schema`` with each operation's ``security`` as ``settings`` enforces it."""
    originals = [context.original_route for context in iter_route_contexts(routes)]  # included routers flattened
    read_operations = {route.operation_id for route in originals
                       if isinstance(route, APIRoute) and _required_scope(route) == KeyScope.read}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "security" not in operation:
                continue
            if not settings.auth_required:
                del operation["security"]
            elif settings.public_read and operation.get("operationId") in read_operations:
                operation["security"] = [*operation["security"], {}]  # {}: no key is also accepted
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = refine(get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes,
            ))
            app.openapi_schema = enforced_security(schema, app.routes, app.state.runtime.settings)
        return app.openapi_schema

    app.openapi = openapi
