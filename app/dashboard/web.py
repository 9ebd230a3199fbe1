"""The dashboard's shared web plumbing: templates, the render helper, and installing it on the app."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.dashboard.panels import fmt, fmt_interval
from app.services.catalog import NotFound
from app.dashboard.security import CSRF_FIELD, SignInRequired, api_key_authenticator, authenticator, csrf_token, set_csrf_cookie

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


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def install_dashboard(app: FastAPI) -> None:
    """Mount the pages at ``/``, the static files at ``/static`` and an offline ``/docs``."""
    from app.dashboard.pages import router

    app.state.dashboard_authenticator = api_key_authenticator(app.state.runtime)
    app.mount(STATIC_URL, StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        # FastAPI's default page loads Swagger UI from a CDN and is blank offline.
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} API",
            swagger_js_url=f"{STATIC_URL}/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/vendor/swagger-ui/favicon-32x32.png",
        )  # fmt: skip

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/signin?next={exc.next_url}", status_code=303)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        if _wants_html(request):
            return render(request, "error.html", {"status": 404, "detail": str(exc)}, status_code=404)
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Browsers get a page with the way back; API clients keep FastAPI's JSON body.
        if _wants_html(request):
            return render(request, "error.html", {"status": exc.status_code, "detail": exc.detail}, status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))
