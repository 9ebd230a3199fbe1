"""Sign-in with an API key (only when the app has an authenticator) and sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.dashboard.security import CSRF_FIELD, authenticator, check_csrf, clear_key_cookie, set_key_cookie
from app.dashboard.web import render

router = APIRouter()


def _local(next_url: str | None) -> str:
    # Only same-site paths: a sign-in link must not be able to send the user to another host.
    return next_url if next_url and next_url.startswith("/") and not next_url.startswith("//") else "/"


@router.get("/signin")
def signin_page(request: Request, next: str | None = None) -> Response:
    if authenticator(request) is None:
        return RedirectResponse(_local(next), status_code=303)
    return render(request, "signin.html", {"next": _local(next), "errors": {}})


@router.post("/signin")
def signin(request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/",
           csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:  # fmt: skip
    check_csrf(request, csrf)
    check = authenticator(request)
    if check is None:
        return RedirectResponse(_local(next), status_code=303)
    if not key.strip() or check(key.strip()) is None:
        return render(request, "signin.html", {"next": _local(next), "errors": {"key": ["this key is not valid"]}}, status_code=401)
    response = RedirectResponse(_local(next), status_code=303)
    set_key_cookie(request, response, key.strip())
    return response


@router.post("/signout")
def signout(request: Request, csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None) -> Response:
    check_csrf(request, csrf)
    response = RedirectResponse("/signin", status_code=303)
    clear_key_cookie(response)
    return response
