"""Installing the dashboard on the FastAPI app: pages at ``/``, static files, an offline ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.dashboard.pages import router
from app.dashboard.security import SignInRequired, api_key_authenticator
from app.dashboard.web import HERE, STATIC_URL, render
from app.services.catalog import NotFound


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def install_dashboard(app: FastAPI) -> None:
    """Mount the pages at ``/``, the static files at ``/static`` and an offline ``/docs``."""
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
            # Swagger UI would otherwise fetch a validity badge from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
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
