"""Dashboard routes on the embedded app: pages render, forms validate inline, CSRF and sign-in hold,
and no page names another host."""

from __future__ import annotations

import json
import re

import pytest

from app.dashboard.security import User
from tests.app.api.helpers import upload_model
from tests.conftest import wait_for_run

ARCH = {"name": "mlp", "in_dim": 8, "hidden": [8], "out_dim": 1, "activation": "relu"}
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
ANY_URL = re.compile(r"https?://(?!127\.0\.0\.1|localhost)[^\s\"'<>]+")


def _token(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)


def _queue(client, **fields) -> object:
    form = {"csrf_token": _token(client), "arch": "", "dataset": "builtin:teacher", "target_error": "0.5",
            "probes": ["weight_spectrum"], **fields}  # fmt: skip
    return client.post("/runs", data=form, follow_redirects=False)


@pytest.fixture
def finished_run(embedded_client) -> str:
    model = upload_model(embedded_client, arch=ARCH, name="lineage-a", tags="e2e")
    response = _queue(embedded_client, model=model["id"])
    assert response.status_code == 303, response.text
    run_id = response.headers["location"].split("queued=")[1].split("#")[0]
    assert wait_for_run(embedded_client, run_id)["status"] == "succeeded"
    return run_id


def test_pages_render_and_name_no_other_host(embedded_client, finished_run):
    urls = ["/", "/runs/table", f"/runs/{finished_run}", f"/runs/{finished_run}/status", "/models", "/datasets",
            "/compare", f"/compare?run={finished_run}&run={finished_run}x", "/docs", "/signin"]  # fmt: skip
    model_id = embedded_client.get("/api/v1/models").json()["data"][0]["id"]
    urls.append(f"/models/{model_id}")
    for url in urls:
        response = embedded_client.get(url, headers={"accept": "text/html"})
        assert response.status_code in (200, 404), (url, response.status_code)
        assert not EXTERNAL.search(response.text), (url, EXTERNAL.search(response.text))
        assert not ANY_URL.search(response.text), (url, ANY_URL.search(response.text))
    for asset in ("vega/vega.min.js", "vega-lite/vega-lite.min.js", "vega-embed/vega-embed.min.js", "htmx/htmx.min.js",
                  "swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css"):  # fmt: skip
        assert embedded_client.get(f"/static/vendor/{asset}").status_code == 200, asset


def test_run_page_has_panels_downloads_and_exports(embedded_client, finished_run):
    html = embedded_client.get(f"/runs/{finished_run}").text
    assert re.findall(r'data-probe="(\w+)"', html) == ["weight_spectrum"]
    assert f'/runs/{finished_run}/report.json' in html
    report = embedded_client.get(f"/runs/{finished_run}/report.json")
    assert report.json() == embedded_client.get(f"/api/v1/runs/{finished_run}/report").json()
    chart_id = re.search(r'data-chart="spec-([^"]+)"', html).group(1).replace("-", ".", 1)
    svg = embedded_client.get(f"/runs/{finished_run}/charts/{chart_id}.svg")
    assert svg.status_code in (200, 501) and (svg.status_code == 501 or svg.text.startswith("<svg"))


def test_runs_page_filters_and_table_fragment(embedded_client, finished_run):
    assert finished_run in embedded_client.get("/", params={"probe": "weight_spectrum", "tag": "e2e", "model_name": "lineage-a"}).text
    assert finished_run not in embedded_client.get("/", params={"probe": "inductive_bias"}).text
    assert finished_run not in embedded_client.get("/", params={"tag": "e2"}).text  # whole tags only
    fragment = embedded_client.get("/runs/table").text
    assert fragment.lstrip().startswith('<div id="runs-table"') and 'hx-trigger' not in fragment  # nothing active: no polling
    api = embedded_client.get("/api/v1/runs", params={"probe": "weight_spectrum", "tag": "e2e"}).json()
    assert [run["id"] for run in api["data"]] == [finished_run]


def test_queue_form_shows_errors_by_field(embedded_client):
    response = _queue(embedded_client, arch='{"name": "mlp"', target_error="x")
    assert response.status_code == 422
    assert 'id="arch-error"' in response.text and 'id="target_error-error"' in response.text
    response = _queue(embedded_client, arch='{"name": "mlp", "in_dim": 8, "hidden": [8], "out_dim": 1}', probes=["invariance"],
                      **{"probe.invariance.n_inputs": "-3"})  # fmt: skip
    assert response.status_code == 422
    assert re.search(r'id="probe\.invariance\.n_inputs-error">[^<]*greater than or equal', response.text)
    assert 'aria-invalid="true" aria-describedby="probe.invariance.n_inputs-error"' in response.text


def test_forms_need_the_csrf_token(embedded_client):
    assert embedded_client.post("/runs", data={"probes": ["weight_spectrum"]}).status_code == 403
    forged = {"csrf_token": "forged", "name": "x"}
    assert embedded_client.post("/datasets", data=forged, files={"file": ("a.npz", b"x")}).status_code == 403


def test_unknown_pages_are_html_404s_and_api_404s_stay_json(embedded_client):
    page = embedded_client.get("/runs/nope", headers={"accept": "text/html"})
    assert page.status_code == 404 and "no run with id &#39;nope&#39;" in page.text and "<html" in page.text
    api = embedded_client.get("/api/v1/runs/nope")
    assert api.status_code == 404 and api.json() == {"detail": "no run with id 'nope'"}


def test_sign_in_with_a_key_when_an_authenticator_is_installed(embedded_client):
    users = {"good-key": User("alice", can_write=True), "read-key": User("bob", can_write=False)}
    embedded_client.app.state.dashboard_authenticator = users.get
    try:
        redirect = embedded_client.get("/models", follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/signin?next=/models"
        token = re.search(r'name="csrf_token" value="([^"]+)"', embedded_client.get("/signin").text).group(1)
        bad = embedded_client.post("/signin", data={"csrf_token": token, "key": "bad", "next": "/models"}, follow_redirects=False)
        assert bad.status_code == 401 and 'id="key-error"' in bad.text
        good = embedded_client.post("/signin", data={"csrf_token": token, "key": "good-key", "next": "//evil.example/"}, follow_redirects=False)
        assert good.status_code == 303 and good.headers["location"] == "/"  # only same-site redirects
        cookie = good.headers["set-cookie"]
        assert "pp_key=good-key" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert embedded_client.get("/models", follow_redirects=False).status_code == 200
        # A read-only key reads but cannot queue or upload.
        embedded_client.cookies.clear()
        embedded_client.cookies.set("pp_key", "read-key")
        assert embedded_client.get("/", follow_redirects=False).status_code == 200
        refused = _queue(embedded_client, arch=json.dumps(ARCH))
        assert refused.status_code == 403 and "scope 'write'" in refused.text
    finally:
        embedded_client.app.state.dashboard_authenticator = None


def _insert_run(client, **columns) -> str:
    """A run row written directly (states the worker would leave), through the app's own session."""
    from app.orm import Run

    with client.app.state.runtime.session_factory() as session:
        run = Run(spec={"model": {"arch": ARCH}, "probes": {"weight_spectrum": {}}}, queue="cpu", attempts=1, **columns)
        session.add(run)
        session.commit()
        return run.id


def test_failed_and_long_runs_read_as_people_expect(embedded_client):
    from datetime import datetime, timedelta, timezone

    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    failed = _insert_run(embedded_client, status="failed", progress=0.4, error="probe weight_spectrum: out of memory",
                         started_at=started, finished_at=started + timedelta(seconds=7))  # fmt: skip
    long = _insert_run(embedded_client, status="succeeded", progress=1.0, started_at=started, finished_at=started + timedelta(hours=6, minutes=2))
    page = embedded_client.get(f"/runs/{failed}").text
    assert 'role="alert"' in page and "probe weight_spectrum: out of memory" in page and "7.0 s" in page
    runs = embedded_client.get("/").text
    assert "6 h 02 min" in runs
    # A succeeded run whose report is missing says so instead of drawing nothing.
    assert "report is missing" in embedded_client.get(f"/runs/{long}").text


def test_running_runs_poll_and_finished_ones_stop(embedded_client):
    from datetime import datetime, timezone

    running = _insert_run(embedded_client, status="running", progress=0.25, progress_message="sampling 10/40",
                          started_at=datetime.now(timezone.utc))  # fmt: skip
    table = embedded_client.get("/runs/table").text
    assert 'hx-trigger="every 1s"' in table and "sampling 10/40" in table and "so far" in table
    status = embedded_client.get(f"/runs/{running}/status")
    assert 'hx-get="/runs/' in status.text and "HX-Refresh" not in status.headers
    with embedded_client.app.state.runtime.session_factory() as session:
        from app.orm import Run

        session.get(Run, running).status = "failed"
        session.commit()
    finished = embedded_client.get(f"/runs/{running}/status")
    assert finished.headers["HX-Refresh"] == "true" and "hx-get" not in finished.text


def test_compare_marks_only_non_overlapping_intervals():
    from app.dashboard.pages.compare import shared_metrics

    def report(*metrics):
        return {"metrics": [{"key": k, "value": v, "ci95": ci, "unit": "u"} for k, v, ci in metrics]}

    rows = shared_metrics([
        report(("a", 1.0, [0.9, 1.1]), ("b", 5.0, [4.0, 6.0]), ("only_first", 1.0, None)),
        report(("a", 2.0, [1.5, 2.5]), ("b", 5.5, [5.0, 6.5])),
        report(("a", 1.05, [1.0, 1.2]), ("b", 9.0, None)),
    ])  # fmt: skip
    assert [key for key, _, _ in rows] == ["a", "b"]
    assert [[c.differs for c in cells] for _, _, cells in rows] == [[False, True, False], [False, False, False]]
