"""End to end in headless Chromium: the embedded server, the real pages, the real chart library.

Upload a model through the form, queue runs with two probes, watch the progress reach done without a
reload, check every panel drew marks, compare two runs, and check no request left 127.0.0.1.
Screenshots go to ``test-artifacts/dashboard/`` (ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.app.api.helpers import checkpoint_bytes

REPO_ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "dashboard"
CHROMIUM = Path(os.environ.get("PRIORPROBE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
# The teacher dataset's defaults: 8 features, one regression target.
ARCH = {"name": "mlp", "in_dim": 8, "hidden": [16], "out_dim": 1, "activation": "relu"}
ALL_PROBES = {
    "inductive_bias": {"n_hypotheses": 40},
    "invariance": {"n_inputs": 16, "n_init_samples": 2},
    "simplicity": {"grid_size": 16, "n_planes": 1, "n_init_samples": 2},
    "weight_spectrum": {},
    "sharpness": {"max_train_samples": 64, "top_k": 2, "n_lanczos_iter": 6, "hutchinson_probes": 4},
}
IN_CI = os.environ.get("CI", "").lower() == "true"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not IN_CI and (sync_playwright is None or not CHROMIUM.exists()),
        reason=f"needs playwright (pip install -e '.[test]') and Chromium at {CHROMIUM} (apt-get install chromium); "
        "in CI (CI=true) this test never skips",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``priorprobe serve`` on a free port with a fresh data directory (embedded SQLite + worker)."""
    data_dir = tmp_path_factory.mktemp("dashboard-data")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORPROBE_")}
    env.update(PRIORPROBE_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    log = open(data_dir / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/healthz", timeout=2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (data_dir / "server.log").read_text()
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None or not CHROMIUM.exists():
        pytest.fail(f"CI=true but playwright or {CHROMIUM} is missing: .ci/run installs both")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    requested_hosts: set[str] = set()

    def only_this_host(route):
        # Every request is recorded; any for another host is refused, as on a network without internet.
        url = urlparse(route.request.url)
        requested_hosts.add(url.hostname or url.scheme)
        route.continue_() if url.hostname == "127.0.0.1" else route.abort()

    context.route("**/*", only_this_host)
    page = context.new_page()
    page.requested_hosts = requested_hosts
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


def _shot(page, name: str, full: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


def _marks(chart) -> int:
    """Drawn marks (paths, rects, lines, symbols) inside a chart's SVG."""
    return chart.locator("svg .role-mark > *").count()


def _queue_run(page, model_label: str, probes: dict[str, dict[str, str]]) -> str:
    page.goto("/")
    page.select_option("#model", value=page.locator("#model option", has_text=model_label).first.get_attribute("value"))
    page.select_option("#dataset", value="builtin:teacher")
    page.fill("#target_error", "0.5")
    for name, params in probes.items():
        page.check(f"input[name=probes][value={name}]")
        if params:
            page.locator(f"details:has(summary:text('parameters of {name}')) summary").click()
        for param, value in params.items():
            page.fill(f"#probe-{name}-{param}", value)
    page.click("#queue-form button[type=submit]")
    page.wait_for_url("**/?queued=*")
    return page.url.split("queued=")[1].split("#")[0]


def test_dashboard_end_to_end(page, tmp_path):
    checkpoint = tmp_path / "browser-mlp.safetensors"
    checkpoint.write_bytes(checkpoint_bytes(ARCH, seed=3))

    # Empty state first, then an inline validation error, then the upload.
    page.goto("/models")
    expect(page.locator(".empty")).to_contain_text("No models uploaded yet")
    page.set_input_files("#model-file", str(checkpoint))
    page.fill("#model-arch", '{"name": "mlp", "in_dim": 8')
    expect(page.locator("#model-arch-json")).to_contain_text("not valid JSON")  # as the user types
    page.click("#model-form button[type=submit]")
    expect(page.locator("#arch-error")).to_contain_text("JSON")
    page.set_input_files("#model-file", str(checkpoint))
    page.fill("#model-arch", json.dumps(ARCH))
    page.fill("#model-name", "browser-mlp")
    page.fill("#model-tags", "e2e")
    page.click("#model-form button[type=submit]")
    page.wait_for_url("**/models/*")
    expect(page.locator("h1")).to_contain_text("browser-mlp")

    # Queue a run with two probes; the table follows it to "succeeded" without a reload.
    probes = {"invariance": {"n_inputs": "16", "n_init_samples": "2"}, "weight_spectrum": {}}
    navigations = []
    first = _queue_run(page, "browser-mlp", probes)
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    row = page.locator(f"#run-{first}")
    expect(row).to_be_visible()
    expect(page.locator(f"#run-{first}[data-status=succeeded]")).to_be_visible(timeout=60_000)
    expect(row.locator("progress")).to_have_attribute("value", "1.0")
    assert navigations == [], f"the runs page reloaded: {navigations}"
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "runs", full=False)

    # The run page: one panel per probe, each drew a chart with marks.
    page.click(f"#run-{first} a[href='/runs/{first}']")
    panels = page.locator("section.panel")
    expect(panels).to_have_count(2)
    for index in range(2):
        panel = panels.nth(index)
        charts = panel.locator(".chart")
        assert charts.count() >= 1, panel.get_attribute("data-probe")
        for c in range(charts.count()):
            expect(charts.nth(c)).to_have_attribute("data-rendered", "true", timeout=20_000)
            assert _marks(charts.nth(c)) > 0, f"{panel.get_attribute('data-probe')} chart {c} drew nothing"
    _shot(page, "run")

    # A second run of the same model with every probe (small sizes), queued through the API: each
    # of its five panels draws.
    model_id = page.request.get("/api/v1/models").json()["data"][0]["id"]
    spec = {"model": {"weights": model_id}, "task": {"dataset": {"builtin": "teacher"}, "loss": "mse", "target_error": 0.5},
            "probes": ALL_PROBES, "seed": 1}  # fmt: skip
    second = page.request.post("/api/v1/runs", data=spec).json()["id"]
    page.goto("/")
    expect(page.locator(f"#run-{second}[data-status=succeeded]")).to_be_visible(timeout=90_000)
    page.goto(f"/runs/{second}")
    panels = page.locator("section.panel")
    expect(panels).to_have_count(len(ALL_PROBES))
    for index in range(len(ALL_PROBES)):
        charts = panels.nth(index).locator(".chart")
        assert charts.count() >= 1, panels.nth(index).get_attribute("data-probe")
        for c in range(charts.count()):
            expect(charts.nth(c)).to_have_attribute("data-rendered", "true", timeout=20_000)
            assert _marks(charts.nth(c)) > 0, f"{panels.nth(index).get_attribute('data-probe')} chart {c} drew nothing"
    _shot(page, "run-all-probes")
    page.locator("#panel-inductive_bias").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, document.getElementById('panel-inductive_bias').offsetTop - 8)")
    _shot(page, "run-panels", full=False)

    # Compare the two runs: picked on the Runs page.
    page.goto("/")
    page.check(f"#run-{first} input[name=run]")
    page.check(f"#run-{second} input[name=run]")
    page.click("#compare-form button[type=submit]")
    page.wait_for_url("**/compare?*")
    expect(page.locator("table.compare tbody tr").first).to_be_visible()
    charts = page.locator(".chart")
    assert charts.count() >= 2
    for c in range(charts.count()):
        expect(charts.nth(c)).to_have_attribute("data-rendered", "true", timeout=20_000)
        assert _marks(charts.nth(c)) > 0
    _shot(page, "compare")

    # The lineage page draws one trend per metric.
    page.goto(f"/runs/{first}")
    page.click("main p.muted a[href^='/models/']")
    trends = page.locator(".chart")
    assert trends.count() >= 1
    expect(trends.first).to_have_attribute("data-rendered", "true", timeout=20_000)

    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.goto("/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # Phone width: the runs page still fits (no horizontal scrolling of the page itself).
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    _shot(page, "runs-390")

    # Swagger UI works from the vendored files.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info")).to_be_visible(timeout=20_000)

    assert page.errors == [], page.errors
    assert page.requested_hosts <= {"127.0.0.1", "data", "blob"}, f"requests left the host: {page.requested_hosts}"
