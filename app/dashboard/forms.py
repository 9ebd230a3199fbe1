"""HTML form fields from JSON schema, form values back to JSON, and errors back onto fields.

The queue-a-run form renders each probe's parameters from ``Probe.Params.model_json_schema()`` (the
schema ``GET /api/v1/probes`` serves), so a new parameter appears in the form without a template
change. Values go back through the same validation as the API (``create_run``), and each error's
location (``probes.<probe>.<field>``, ``task.target_error`` ...) is mapped to the field it names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.errors import InputError


@dataclass(frozen=True)
class Field:
    name: str  # the HTML name: "probe.<probe>.<param>"
    label: str
    kind: str  # "number", "integer", "checkbox", "select", "text", "json"
    default: Any
    description: str | None
    choices: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def default_text(self) -> str:
        if self.default is None:
            return ""
        if self.kind == "json":
            return json.dumps(self.default)
        return str(self.default)

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"


def _plain(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """``Optional[X]`` is ``anyOf: [X, null]`` in pydantic's schema: use X's own description."""
    variants = [v for v in schema.get("anyOf") or [] if v.get("type") != "null"]
    return {**variants[0], **{k: v for k, v in schema.items() if k != "anyOf"}} if len(variants) == 1 else schema


def fields_from_schema(prefix: str, schema: Mapping[str, Any]) -> list[Field]:
    """One field per top-level property; nested or composite types become JSON text fields."""
    fields = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _plain(raw)
        kind = {"integer": "integer", "number": "number", "boolean": "checkbox", "string": "text"}.get(prop.get("type"), "json")
        if "enum" in prop:
            kind = "select"
        fields.append(Field(
            name=f"{prefix}.{name}", label=prop.get("title") or name, kind=kind, default=raw.get("default"),
            description=raw.get("description") or prop.get("description"), choices=prop.get("enum"),
            minimum=prop.get("minimum", prop.get("exclusiveMinimum")), maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
        ))  # fmt: skip
    return fields


def parse_fields(fields: list[Field], form: Mapping[str, str], loc: list[str]) -> dict[str, Any]:
    """The submitted values that differ from blank, converted to JSON types; unparsable JSON or
    numbers raise ``InputError`` at ``loc + [param]`` (the location the API would report)."""
    values: dict[str, Any] = {}
    errors = []
    for field in fields:
        param = field.name.rsplit(".", 1)[1]
        raw = form.get(field.name)
        if field.kind == "checkbox":
            # An unticked checkbox is absent from the form: it means False only when the default
            # is True (otherwise absent = the default).
            if raw is not None or field.default is True:
                values[param] = raw is not None
            continue
        if raw is None or raw.strip() == "":
            continue
        raw = raw.strip()
        try:
            if field.kind == "integer":
                values[param] = int(raw)
            elif field.kind == "number":
                values[param] = float(raw)
            elif field.kind == "json":
                values[param] = json.loads(raw)
            else:
                values[param] = raw
        except ValueError as exc:
            errors.append({"loc": [*loc, param], "msg": f"not a valid {field.kind}: {exc}", "type": "value_error"})
    if errors:
        raise InputError(errors)
    return values


def errors_by_field(exc: InputError, field_for_loc) -> dict[str, list[str]]:
    """``{html field name: [messages]}``; locations no field claims go under ``"form"``."""
    found: dict[str, list[str]] = {}
    for error in exc.errors:
        name = field_for_loc([str(part) for part in error["loc"]]) or "form"
        message = error["msg"] if name != "form" else f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
        found.setdefault(name, []).append(message)
    return found
