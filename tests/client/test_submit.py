"""``priorprobe-client submit`` against a real HTTP server (embedded stack, API keys required)."""

from __future__ import annotations

import json

import pytest

from app.config import Settings
from app.main import create_app
from app.services.api_keys import create_key
from priorprobe_client.cli import main
from priorprobe_client.schemas.gates import SubmitSummary
from priorprobe_client.schemas.keys import KeyScope
from tests.client.submit_fixtures import write_ci_files
from tests.conftest import LiveServer, free_port


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    settings = Settings(data_dir=root / "data", database_url=None, broker_url=None, auth="required")
    with LiveServer(create_app(settings)) as live:
        with live.app.state.runtime.session_factory() as session:
            live.key = create_key(session, "ci-bot", KeyScope.write, settings.api_key_pepper)[1]
        live.files = write_ci_files(root / "ci")
        yield live


@pytest.fixture
def submit(stack, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PRIORPROBE_API_KEY", stack.key)
    summary_file = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    for name in ("GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_HEAD_REF", "GITHUB_RUN_ID", "CI_COMMIT_SHA", "CI_JOB_URL"):
        monkeypatch.delenv(name, raising=False)

    def run(checkpoint: str, *args: str, spec: str = "spec", server: str | None = None, arch: bool = True):
        files = stack.files
        argv = ["submit", str(files[checkpoint]), "--spec", str(files[spec]), *(["--arch", str(files["arch"])] if arch else []),
                "--dataset", str(files["data"]), "--server", server or stack.url, "--poll", "0.1", "--retries", "1", *args]  # fmt: skip
        code = main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err, summary_file.read_text() if summary_file.exists() else ""

    return run


def test_satisfied_gate_passes_and_writes_the_step_summary(submit):
    code, out, err, markdown = submit("good", "--model-name", "mlp-ci", "--version", "1", "--commit", "abc123",
                                      "--gate", "sharpness.training_loss < 1e6 and sharpness.trace.ci95.high < 1e9")  # fmt: skip
    assert code == 0, err
    assert "uploaded model" in err and "queued run" in err and "succeeded" in err
    assert "sharpness.training_loss" in out and out.rstrip().endswith("PASSED")
    assert markdown.startswith("### PriorProbe: ✅ PASSED") and "| sharpness.trace |" in markdown
    assert "version `1`, commit `abc123`" in markdown


def test_reupload_is_idempotent_and_a_violated_gate_fails(submit):
    code, out, err, _ = submit("good", "--model-name", "mlp-ci", "--version", "1", "--commit", "abc123",
                               "--gate", "sharpness.training_loss < 0", "--format", "json")  # fmt: skip
    assert code == 1, err
    assert "already uploaded" in err and "uploaded model" not in err
    summary = SubmitSummary.model_validate_json(out)
    assert summary.exit_code == 1 and not summary.passed and summary.gates[0].passed is False
    assert summary.gates[0].detail.startswith("sharpness.training_loss = ")


def test_planted_regression_against_latest_baseline(submit):
    code, out, err, markdown = submit("worse", "--model-name", "mlp-ci", "--version", "2", "--baseline", "latest:mlp-ci",
                                      "--format", "markdown")  # fmt: skip
    assert code == 1, err
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| sharpness.")}
    assert "| regressed |" in rows["sharpness.training_loss"]
    assert "Against baseline run" in out and "❌ FAILED" in markdown
    # Tolerating any rise of the training loss (and of everything else) turns it green.
    code, out, err, _ = submit("worse", "--model-name", "mlp-ci", "--version", "2", "--baseline", "latest:mlp-ci",
                               "--max-regression", "*=1e12")  # fmt: skip
    assert code == 0, out + err
    assert "regressed" not in out


def test_arch_comes_from_the_lineage_when_not_given(submit):
    code, out, err, _ = submit("worse", "--model-name", "mlp-ci", "--version", "3", arch=False)
    assert code == 0, err
    assert "uploaded model" in err
    code, out, err, _ = submit("worse", "--model-name", "no-such-lineage", arch=False)
    assert code == 2 and "no --arch given and no model named 'no-such-lineage'" in err


def test_first_run_of_a_lineage_has_no_baseline_yet(submit):
    code, out, err, _ = submit("good", "--model-name", "brand-new", "--baseline", "latest:brand-new")
    assert code == 0, err
    assert "No succeeded run of 'brand-new' yet" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--gate", "sharpness.training_loss <"], "bad --gate: expected a metric key or a number, found the end of the gate at column 26"),
    (["--gate", "sharpness.training_los < 1"], "a gate names the metric 'sharpness.training_los', which run"),
    (["--max-regression", "sharpness.trace=-1"], "expected KEY=AMOUNT"),
    (["--baseline", "no-such-run"], "404 no run with id 'no-such-run'"),
])  # fmt: skip
def test_usage_and_input_errors_exit_2(submit, args, message):
    code, out, err, _ = submit("good", "--model-name", "mlp-ci", *args)
    assert code == 2 and message in err and out == ""


def test_unreachable_server_exits_2(submit):
    code, _, err, _ = submit("good", server=f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "server unreachable after 1 retries" in err


def test_wrong_scope_exits_2(submit, monkeypatch):
    monkeypatch.setenv("PRIORPROBE_API_KEY", "ppk_00000000_wrong")
    code, _, err, _ = submit("good")
    assert code == 2 and "401" in err and "scope" in err


def test_timeout_exits_3_and_the_run_keeps_going(submit, stack):
    from priorprobe_client import PriorProbeClient

    code, out, err, _ = submit("good", "--model-name", "mlp-ci", "--timeout", "1", spec="slow_spec")
    assert code == 3 and out == ""
    assert "timed out after 1 s; run " in err and "keeps going on the server" in err
    run_id = err.split("timed out after 1 s; run ")[1].split()[0]
    with PriorProbeClient(stack.url, api_key=stack.key) as client:
        assert client.get_run(run_id).status in ("queued", "running")
        assert client.cancel_run(run_id).status == "cancelled"  # frees the embedded worker
