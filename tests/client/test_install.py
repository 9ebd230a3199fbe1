"""``pip install ./client`` in a fresh venv pulls neither torch nor the server's stack."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import light_client_env


@pytest.mark.slow
def test_light_client_installs_without_torch(light_client_venv):
    python = str(light_client_venv / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                            env=light_client_env(), capture_output=True, text=True, check=True).stdout  # fmt: skip
    installed = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "priorprobe-client" in installed and {"httpx", "pydantic"} <= installed
    assert not installed & {"torch", "numpy", "fastapi", "sqlalchemy", "celery", "priorprobe"}, installed
    probe = ("import sys, priorprobe_client, priorprobe_client.cli, priorprobe_client.submit; "
             "print(sorted(m for m in ('torch', 'numpy', 'fastapi', 'app', 'workers', 'models') if m in sys.modules))")  # fmt: skip
    imported = subprocess.run([python, "-c", probe], env=light_client_env(), cwd="/", capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
    usage = subprocess.run([str(light_client_venv / "priorprobe-client"), "submit", "--help"], env=light_client_env(),
                           capture_output=True, text=True)  # fmt: skip
    assert usage.returncode == 0 and "--max-regression" in usage.stdout
