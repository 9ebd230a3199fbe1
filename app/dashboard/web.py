"""The dashboard's templates and the helper every page renders through."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from app.dashboard.panels import fmt, fmt_interval
from app.dashboard.security import CSRF_FIELD, authenticator, csrf_token, set_csrf_cookie

HERE = Path(__file__).parent
STATIC_URL = "/static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = fmt
templates.env.filters["interval"] = fmt_interval


def _chart_json(spec: dict) -> Markup:
    # Inside <script type="application/json">: escape "<" so no string in the data can close the tag.
    return Markup(json.dumps(spec, allow_nan=False).replace("<", "\\u003c"))


def format_seconds(seconds: float) -> str:
    """A duration as people say it: 0.4 s, 3 min 05 s, 6 h 02 min."""
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def _duration(run) -> str:
    if run.started_at is None:
        return "—"
    if run.finished_at is None:
        started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=timezone.utc)
        return f"{format_seconds((datetime.now(timezone.utc) - started).total_seconds())} so far"
    return format_seconds((run.finished_at - run.started_at).total_seconds())


templates.env.filters["chart_json"] = _chart_json
templates.env.filters["duration"] = _duration
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD
templates.env.globals["static"] = lambda path: f"{STATIC_URL}/{path}"


def render(request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:  # fmt: skip
    """A page or fragment, with the CSRF token its forms need and the cookie that pairs with it."""
    context = {"csrf_token": csrf_token(request), "signin_enabled": authenticator(request) is not None, **(context or {})}
    response = templates.TemplateResponse(request, template, context, status_code=status_code, headers=headers)
    set_csrf_cookie(request, response)
    return response
