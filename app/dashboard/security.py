"""Dashboard sign-in and CSRF protection.

Sign-in: with no authenticator (``app.state.dashboard_authenticator`` is None: API keys off, or not
built) the dashboard is open, like the API. With API keys required (``Settings.auth_required``) the
authenticator checks a key with the API's own ``authenticate``; the dashboard asks for a key once,
keeps it in an HttpOnly, SameSite=Strict cookie, and checks it on every page (``require_user``);
forms that change anything also need a key with write scope (``require_writer``).

CSRF: every form carries a random token that must equal the one in the ``pp_csrf`` cookie (the
double-submit pattern). A cross-site page can make the browser send the cookie but cannot read it to
put it in the form; SameSite=Strict on both cookies is a second line of defence.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response, status

from app.dashboard import features

CSRF_COOKIE = "pp_csrf"
CSRF_FIELD = "csrf_token"
KEY_COOKIE = "pp_key"



@dataclass(frozen=True)
class User:
    name: str
    can_write: bool


Authenticator = Callable[[str], "User | None"]


def api_key_authenticator(runtime) -> Authenticator | None:
    """The API's own key check, when keys are required; None (sign-in off) otherwise."""
    api_keys = features.api_keys_module()
    if api_keys is None or not getattr(runtime.settings, "auth_required", False):
        return None

    def check(key: str) -> User | None:
        with runtime.session_factory() as session:
            record = api_keys.authenticate(session, key, runtime.settings.api_key_pepper)
            if record is None:
                return None
            granted = api_keys.granted_scope(record)
            return User(name=record.name, can_write=granted.includes(type(granted)("write")))

    return check


class SignInRequired(Exception):
    """Raised by ``require_user``; the dashboard answers with a redirect to the sign-in page."""

    def __init__(self, next_url: str):
        self.next_url = next_url


def authenticator(request: Request) -> Authenticator | None:
    return getattr(request.app.state, "dashboard_authenticator", None)


def require_user(request: Request) -> User | None:
    """The signed-in user, None when sign-in is off; raises ``SignInRequired`` otherwise."""
    check = authenticator(request)
    if check is None:
        return None
    key = request.cookies.get(KEY_COOKIE)
    user = check(key) if key else None
    if user is None:
        raise SignInRequired(request.url.path)
    return user


def require_writer(request: Request) -> User | None:
    """As ``require_user``, and the key must allow changes (the API's write scope)."""
    user = require_user(request)
    if user is not None and not user.can_write:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"API key '{user.name}' may only read; queuing and uploading need scope 'write'")
    return user


def csrf_token(request: Request) -> str:
    """This browser's token (from its cookie, or a new one that ``set_csrf_cookie`` will store)."""
    token = getattr(request.state, "csrf_token", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        request.state.csrf_token = token
    return token


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_csrf_cookie(request: Request, response: Response) -> None:
    token = csrf_token(request)
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/")


def check_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the form's security token is missing or stale; reload the page and submit again")


def set_key_cookie(request: Request, response: Response, key: str) -> None:
    response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", secure=_secure(request), path="/")


def clear_key_cookie(response: Response) -> None:
    response.delete_cookie(KEY_COOKIE, path="/")
