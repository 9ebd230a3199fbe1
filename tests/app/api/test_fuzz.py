"""The whole API fuzzed from its own OpenAPI document: no 500, every status documented, JSON errors.

schemathesis runs every phase (examples, coverage, fuzzing, stateful) against a real uvicorn
server, once on SQLite and once on PostgreSQL (which refuses NUL bytes that SQLite stores), with
a fixed seed and a bounded number of examples per operation. Runs are queued on the test Redis
database and never executed, so accepted bodies cost nothing.

Every check runs except ``positive_data_acceptance``: a schema-valid run spec or upload can still
be refused for reasons OpenAPI cannot express (an uploaded id that does not exist, a checkpoint
that does not match its architecture, a probe that needs a task). How many of the generated POST
bodies were accepted is printed instead, from the run's HAR log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 14
MAX_EXAMPLES = 10
MAX_TIME_S = 90


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def api_url(request, tmp_path, redis_url):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PRIORPROBE_DATA_DIR": str(tmp_path / "data"),
           "PRIORPROBE_BROKER_URL": redis_url, "PRIORPROBE_MAX_UPLOAD_BYTES": str(1 << 20)}
    if request.param == "postgresql":
        env["PRIORPROBE_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    else:
        # A distributed deployment on SQLite: migrate it as `priorprobe db upgrade` would.
        from app.migrate import upgrade

        (tmp_path / "data").mkdir()
        url = f"sqlite:///{tmp_path / 'data' / 'priorprobe.db'}"
        upgrade(url)
        env["PRIORPROBE_DATABASE_URL"] = url
    port = _free_port()
    log = open(tmp_path / "uvicorn.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _accepted_share(har_path: Path) -> dict[str, str]:
    entries = json.loads(har_path.read_text())["log"]["entries"]
    totals, accepted = Counter(), Counter()
    for entry in entries:
        if entry["request"]["method"] != "POST":
            continue
        # One line per operation: an id in the path (generated or linked) becomes {id}.
        path = re.sub(r"^(/api/v1/\w+)/[^/]+", r"\1/{id}", urlparse(entry["request"]["url"]).path)
        totals[path] += 1
        accepted[path] += 200 <= entry["response"]["status"] < 300
    return {path: f"{accepted[path]}/{totals[path]}" for path in sorted(totals)}


def test_schemathesis_finds_no_failure(api_url, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is a test dependency (pip install -e '.[test]')"
    report_dir = tmp_path / "schemathesis"
    command = [
        st, "run", f"{api_url}/openapi.json", "--wait-for-schema", "60", "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME_S), "--workers", "1",
        "--phases", "examples,coverage,fuzzing,stateful", "--checks", "all",
        "--exclude-checks", "positive_data_acceptance", "--generation-database", "none",
        "--request-timeout", "30", "--no-color", "--report", "har", "--report-har-path", str(report_dir / "run.har"),
    ]
    started = time.monotonic()
    # In tmp_path: schemathesis keeps a cache directory in its working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=MAX_TIME_S + 120, cwd=tmp_path)
    print(result.stdout[-6000:])
    print(f"schemathesis took {time.monotonic() - started:.0f} s; accepted POST bodies:",
          _accepted_share(report_dir / "run.har"))
    assert result.returncode == 0, result.stdout[-6000:]
