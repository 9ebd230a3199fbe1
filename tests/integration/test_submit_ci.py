"""Done means: a CI job with only the light client installed (a fresh venv, no PYTHONPATH into this
repo) runs ``priorprobe-client submit`` against the real stack (PostgreSQL, Redis, a Celery worker,
the API served over HTTP with API keys required) and gets the right exit code for each outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.client.submit_fixtures import write_ci_files
from tests.conftest import REPO_ROOT, free_port, light_client_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def api_server(distributed_env, celery_workers, tmp_path_factory):
    """``priorprobe serve`` in distributed mode with PRIORPROBE_AUTH=required, and a write key."""
    port = free_port()
    env = {**os.environ, **distributed_env, "PRIORPROBE_AUTH": "required"}
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/healthz", timeout=2) as response:
                assert json.loads(response.read())["status"] == "ok"
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"API did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
    created = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--name", "ci-bot", "--scope", "write"],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    yield url, created.stdout.strip(), log_path
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def ci(api_server, light_client_venv, tmp_path_factory):
    url, key, _ = api_server
    files = write_ci_files(tmp_path_factory.mktemp("ci"))
    summary = files["arch"].parent / "step-summary.md"

    def submit(checkpoint: str, *args: str, spec: str = "spec", server: str = url):
        summary.unlink(missing_ok=True)
        argv = [str(light_client_venv / "priorprobe-client"), "submit", str(files[checkpoint]), "--spec", str(files[spec]),
                "--arch", str(files["arch"]), "--dataset", str(files["data"]), "--server", server, "--poll", "0.2",
                "--retries", "1", *args]  # fmt: skip
        env = light_client_env(PRIORPROBE_API_KEY=key, GITHUB_STEP_SUMMARY=str(summary))
        done = subprocess.run(argv, env=env, cwd=files["arch"].parent, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout, done.stderr, summary.read_text() if summary.exists() else ""

    return submit


def test_the_start_up_line_says_auth_is_required(api_server):
    _, _, log_path = api_server
    assert "auth: API keys required" in log_path.read_text()


def test_satisfied_gate_exits_0(ci):
    code, out, err, markdown = ci("good", "--model-name", "ci-mlp", "--version", "1", "--commit", "1111111",
                                  "--gate", "sharpness.training_loss < 1e6")  # fmt: skip
    assert code == 0, err
    assert out.rstrip().endswith("PASSED") and "### PriorProbe: ✅ PASSED" in markdown


def test_violated_gate_exits_1(ci):
    code, out, err, markdown = ci("good", "--model-name", "ci-mlp", "--version", "1", "--commit", "1111111",
                                  "--gate", "sharpness.training_loss.ci95.high < 0 or", "--format", "json")  # fmt: skip
    assert code == 2 and "column" in err  # a typo in the gate: exit 2 before anything is uploaded
    code, out, err, markdown = ci("good", "--model-name", "ci-mlp", "--version", "1", "--commit", "1111111",
                                  "--gate", "sharpness.training_loss < 0", "--format", "json")  # fmt: skip
    assert code == 1, err
    assert "already uploaded" in err
    body = json.loads(out)
    assert body["exit_code"] == 1 and body["gates"][0]["passed"] is False and "❌" in markdown


def test_planted_regression_exits_1(ci):
    code, out, err, markdown = ci("worse", "--model-name", "ci-mlp", "--version", "2", "--commit", "2222222",
                                  "--baseline", "latest:ci-mlp", "--max-regression", "sharpness.trace=+1e-9",
                                  "--gate", "sharpness.training_loss < 1e6")  # fmt: skip
    assert code == 1, err
    baseline_table = out.split("Against baseline run", 1)[1]
    line = next(line for line in baseline_table.splitlines() if line.startswith("sharpness.training_loss "))
    assert line.split()[-1] == "regressed"
    assert "| sharpness.training_loss |" in markdown and "| regressed |" in markdown
    print("\n--- GITHUB_STEP_SUMMARY of the planted regression ---\n" + markdown)


def test_bad_gate_and_unreachable_server_exit_2(ci):
    code, out, err, _ = ci("good", "--gate", "sharpness.training_loss << 3")
    assert code == 2 and "bad --gate" in err and "column 26" in err and out == ""
    code, out, err, _ = ci("good", server=f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "server unreachable" in err


def test_timeout_exits_3_and_cancel_frees_the_worker(ci, api_server):
    url, key, _ = api_server
    code, out, err, _ = ci("good", "--model-name", "ci-mlp", "--timeout", "3", spec="slow_spec")
    assert code == 3 and "keeps going on the server" in err, err
    run_id = err.split("timed out after 3 s; run ")[1].split()[0]
    request = urllib.request.Request(f"{url}/api/v1/runs/{run_id}/cancel", method="POST", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["status"] == "cancelled"
    # The worker stops the probe at its next progress point; the next run goes through.
    code, out, err, _ = ci("good", "--model-name", "ci-mlp", "--version", "1", "--commit", "1111111", "--timeout", "120")
    assert code == 0, err
