"""Who may call a route: ``Authorization: Bearer <API key>`` checked against the route's scope.

Every route of the API declares the scope it needs by taking one of ``ReadAccess``, ``WriteAccess``
or ``AdminAccess`` (``tests/app/api/test_auth.py`` walks the app's route table to check that each
does). With ``PRIORPROBE_AUTH=off`` every request acts as the one local user; with ``required`` a
request without a valid key is 401 and one whose key lacks the scope is 403, both saying which scope
is needed. ``PRIORPROBE_PUBLIC_READ=true`` lets requests without a key read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.deps import SessionDep
from app.services.api_keys import authenticate, granted_scope
from priorprobe_client.schemas.keys import KeyScope

# auto_error=False: a missing header is our 401 with the needed scope, not FastAPI's bare 403.
# Declaring the scheme here is what puts ``securitySchemes`` into /openapi.json.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="An API key (`priorprobe keys create --name NAME --scope read|write|admin`) as a Bearer token.",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (recorded as ``created_by``), or None with auth off or anonymous reads."""

    key_name: str | None
    scope: KeyScope


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"})


def require(scope: KeyScope):
    """A dependency that admits callers whose key includes ``scope``."""

    def check(
        request: Request,
        session: SessionDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        settings = request.app.state.runtime.settings
        if not settings.auth_required:
            return Principal(key_name=None, scope=KeyScope.admin)
        if credentials is None:
            if scope == KeyScope.read and settings.public_read:
                return Principal(key_name=None, scope=KeyScope.read)
            raise _unauthorised(
                f"this needs an API key with scope '{scope}': send 'Authorization: Bearer <key>' "
                f"(an admin creates one with `priorprobe keys create --name NAME --scope {scope}`)"
            )
        record = authenticate(session, credentials.credentials, settings.api_key_pepper)
        if record is None:
            raise _unauthorised(f"the API key is not valid or was revoked; this needs a key with scope '{scope}'")
        granted = granted_scope(record)
        if not granted.includes(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"API key '{record.name}' ({record.prefix}) has scope '{granted}'; this needs scope '{scope}'",
            )
        return Principal(key_name=record.name, scope=granted)

    check.required_scope = scope  # read by the route-table test
    return check


ReadAccess = Annotated[Principal, Depends(require(KeyScope.read))]
WriteAccess = Annotated[Principal, Depends(require(KeyScope.write))]
AdminAccess = Annotated[Principal, Depends(require(KeyScope.admin))]
