"""``priorprobe serve`` with nothing configured really serves the embedded default over HTTP."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # starts a server process that imports torch: 10-30 s
def test_serve_embedded_default_answers_healthz(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORPROBE_")}
    env["PRIORPROBE_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.2)
        assert body == {"status": "ok", "mode": "embedded", "database": "ok", "broker": "embedded"}
        assert (tmp_path / "data" / "priorprobe.db").is_file()
    finally:
        process.terminate()
        process.wait(timeout=20)
    start_up = process.stdout.read().decode().splitlines()[0]
    assert start_up.endswith("auth: off: no API keys, every caller is the one local user (PRIORPROBE_AUTH=required to change)")
