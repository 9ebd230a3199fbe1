"""Service features the dashboard uses when they exist (they arrive with the API-keys work).

Each hook is looked up once, by name, so the dashboard runs the same on a branch without them and
lights the feature up after the merge, with no second code path to keep in step:

- ``app.services.run_state.cancel(factory, run_id)``: the Cancel buttons on queued and running runs;
- ``app.services.uploads.ModelProvenance`` and ``create_model(provenance=..., created_by=...)``: the
  model form's Version field, and recording who uploaded;
- ``create_run(..., created_by=...)``: recording who queued a run;
- ``Settings.auth_required`` with ``app.services.api_keys.authenticate`` / ``granted_scope``: sign-in
  with an API key (``app.dashboard.security``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from app.services import run_state, runs, uploads

cancel_run = getattr(run_state, "cancel", None)
ModelProvenance = getattr(uploads, "ModelProvenance", None)
_MODEL_PARAMS = inspect.signature(uploads.create_model).parameters
_RUN_PARAMS = inspect.signature(runs.create_run).parameters
model_versions = ModelProvenance is not None and "provenance" in _MODEL_PARAMS


def model_upload_extras(version: str | None, created_by: str | None) -> dict[str, Any]:
    """Keyword arguments for ``create_model`` that this service understands."""
    extras: dict[str, Any] = {}
    if model_versions:
        extras["provenance"] = ModelProvenance(version=version or None)
    if "created_by" in _MODEL_PARAMS:
        extras["created_by"] = created_by
    return extras


def run_extras(created_by: str | None) -> dict[str, Any]:
    return {"created_by": created_by} if "created_by" in _RUN_PARAMS else {}


def api_keys_module():
    """``app.services.api_keys`` when API keys exist, else None."""
    try:
        return importlib.import_module("app.services.api_keys")
    except ModuleNotFoundError:
        return None
