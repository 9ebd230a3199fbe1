"""Access control, checked on every route of the app's route table (so a route added later is
checked too) with no key, a key of too small a scope, and a key of the needed scope."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.services.api_keys import create_key, revoke_key
from priorprobe_client.schemas.keys import KeyScope

PUBLIC = {("GET", "/api/v1/healthz"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}


def needed_scope(method: str, path: str) -> KeyScope | None:
    """The rule every route must follow: reads need read, changes write; keys and deletes admin."""
    if (method, path) in PUBLIC:
        return None
    if path.startswith("/api/v1/keys") or method == "DELETE":
        return KeyScope.admin
    return KeyScope.read if method in ("GET", "HEAD") else KeyScope.write


def _all_routes() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, included routers flattened (HEAD is GET's twin)."""
    app = create_app(Settings(database_url=None, broker_url=None))
    return sorted(
        (method, context.path)
        for context in iter_route_contexts(app.router.routes)
        for method in getattr(context.original_route, "methods", None) or ()
        if method != "HEAD"
    )


ALL_ROUTES = _all_routes()
# The API takes bearer keys; the dashboard's pages take the key from a sign-in cookie instead.
# Prometheus's /metrics sits at the root (/api/v1/metrics is the metric trends) but is scraped
# with a bearer key like the API.
ROUTES = [(method, path) for method, path in ALL_ROUTES
          if path.startswith("/api/") or path == "/metrics" or (method, path) in PUBLIC]
DASHBOARD_OPEN = {("GET", "/signin"), ("POST", "/signin"), ("POST", "/signout")}
DASHBOARD_ROUTES = [route for route in ALL_ROUTES if route not in ROUTES and route not in DASHBOARD_OPEN]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("auth") / "data", database_url=None, broker_url=None, auth="required")
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime
        with runtime.session_factory() as session:
            keys = {scope: create_key(session, f"bot-{scope}", scope, settings.api_key_pepper)[1] for scope in KeyScope}
            revoked = create_key(session, "gone", KeyScope.admin, settings.api_key_pepper)
            revoke_key(session, revoked[0].prefix)
        client.keys, client.revoked_key = keys, revoked[1]
        yield client


def _call(client, method: str, path: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.request(method, re.sub(r"\{[^}]+\}", "x", path), headers=headers)


def test_the_route_table_is_not_empty_and_has_every_verb():
    assert len(ROUTES) >= 25 and ("POST", "/api/v1/runs/{run_id}/cancel") in ROUTES and {method for method, _ in ROUTES} >= {"GET", "POST", "DELETE"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_route_needs_its_scope(secured, method, path):
    scope = needed_scope(method, path)
    if scope is None:
        assert _call(secured, method, path, None).status_code not in (401, 403)
        return
    missing = _call(secured, method, path, None)
    assert missing.status_code == 401, missing.text
    assert f"scope '{scope}'" in missing.json()["detail"] and missing.headers["www-authenticate"] == "Bearer"
    revoked = _call(secured, method, path, secured.revoked_key)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    garbage = _call(secured, method, path, "ppk_00000000_not-a-key")
    assert garbage.status_code == 401
    for weaker in [s for s in KeyScope if not s.includes(scope)]:
        refused = _call(secured, method, path, secured.keys[weaker])
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"].endswith(f"has scope '{weaker}'; this needs scope '{scope}'")
    for enough in [s for s in KeyScope if s.includes(scope)]:
        assert _call(secured, method, path, secured.keys[enough]).status_code not in (401, 403)


def test_every_dashboard_page_sends_a_visitor_without_a_key_to_sign_in(secured):
    """The pages (routes outside /api/v1, from the same route table) hold data too: without the
    sign-in cookie each one redirects to /signin, whatever the method, and never shows content."""
    assert len(DASHBOARD_ROUTES) >= 10 and ("GET", "/") in DASHBOARD_ROUTES
    for method, path in DASHBOARD_ROUTES:
        response = secured.request(method, re.sub(r"\{[^}]+\}", "x", path), follow_redirects=False)
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"].startswith("/signin?next=")
        # A bearer header is not a dashboard sign-in: the pages read only their cookie.
        with_header = secured.request(method, re.sub(r"\{[^}]+\}", "x", path), follow_redirects=False,
                                      headers={"Authorization": f"Bearer {secured.keys[KeyScope.admin]}"})
        assert with_header.status_code == 303


def test_docs_and_openapi_are_public_and_declare_the_scheme(secured):
    assert secured.get("/docs").status_code == 200
    schema = secured.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API key (`priorprobe keys create --name NAME --scope read|write|admin`) as a Bearer token.",
    }
    operations = [op for path in schema["paths"].values() for op in path.values()]
    secured_ops = [op["operationId"] for op in operations if op.get("security") == [{"APIKey": []}]]
    assert "healthz" not in secured_ops and len(secured_ops) == len(operations) - 1


def _security_by_operation(settings: Settings) -> dict[str, list | None]:
    schema = create_app(settings).openapi()
    return {op["operationId"]: op.get("security") for path in schema["paths"].values() for op in path.values()}


def test_openapi_security_says_what_the_deployment_enforces(tmp_path):
    """Auth off: no operation asks for a key (the scheme stays declared). Public reads: exactly the
    read-scope operations also accept no key ({}); the others still need one."""
    common = dict(data_dir=tmp_path / "data", database_url=None, broker_url=None)
    open_ops = _security_by_operation(Settings(**common, auth="off"))
    assert all(security is None for security in open_ops.values())
    public = _security_by_operation(Settings(**common, auth="required", public_read=True))
    reads = {op for op, security in public.items() if security == [{"APIKey": []}, {}]}
    assert {"list_runs", "get_run", "get_run_report", "list_models", "list_probes", "list_webhooks"} <= reads
    assert not reads & {"create_run", "cancel_run", "delete_model", "create_key", "list_keys", "create_webhook"}
    assert all(public[op] == [{"APIKey": []}] for op in public if op not in reads and op != "healthz")


def test_public_read_lets_reads_through_without_a_key(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url=None, broker_url=None, auth="required", public_read=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/models").status_code == 200
        assert client.get("/api/v1/runs").status_code == 200
        refused = client.post("/api/v1/runs", json={})
        assert refused.status_code == 401 and "scope 'write'" in refused.json()["detail"]


def test_created_by_is_the_key_name_and_last_used_is_recorded(secured):
    from tests.app.api.helpers import checkpoint_bytes, MLP_ARCH
    import json

    response = secured.post("/api/v1/models", files={"file": ("net.safetensors", checkpoint_bytes())},
                            data={"arch": json.dumps(MLP_ARCH)}, headers={"Authorization": f"Bearer {secured.keys[KeyScope.write]}"})
    assert response.status_code == 201 and response.json()["created_by"] == "bot-write"
    listing = secured.get("/api/v1/keys", headers={"Authorization": f"Bearer {secured.keys[KeyScope.admin]}"}).json()
    used = {key["name"]: key["last_used_at"] for key in listing["data"]}
    assert used["bot-write"] is not None and used["gone"] is None
    assert all("key" not in key and "key_hash" not in key for key in listing["data"])


def test_keys_over_the_api(secured):
    admin = {"Authorization": f"Bearer {secured.keys[KeyScope.admin]}"}
    created = secured.post("/api/v1/keys", json={"name": "ci-bot", "scope": "write"}, headers=admin)
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(f"ppk_{body['prefix']}_") and body["scopes"] == ["write"]
    new = {"Authorization": f"Bearer {body['key']}"}
    assert secured.get("/api/v1/runs", headers=new).status_code == 200
    assert secured.delete(f"/api/v1/keys/{body['prefix']}", headers=admin).json()["revoked_at"] is not None
    assert secured.get("/api/v1/runs", headers=new).status_code == 401
    assert secured.post("/api/v1/keys", json={"name": "bad name!", "scope": "write"}, headers=admin).status_code == 422


def test_auth_defaults_follow_the_environment():
    assert Settings(database_url=None, broker_url=None).auth == "off"
    production = Settings(environment="production", database_url="postgresql://x/y", broker_url="redis://z")
    assert production.auth == "required" and production.auth_required
    assert Settings(environment="production", database_url="postgresql://x/y", broker_url="redis://z", auth="off").auth == "off"
