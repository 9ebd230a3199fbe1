"""The Dockerfile and docker-compose.yml cannot be run here (no Docker engine): parse and check them."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_has_every_service_with_the_right_command():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "worker", "postgres", "redis", "flower", "migrate", "scheduler"} <= set(services)
    assert services["scheduler"]["command"] == ["priorprobe", "scheduler"]
    assert services["api"]["command"][:2] == ["priorprobe", "serve"]
    assert services["worker"]["command"][:2] == ["priorprobe", "worker"]
    assert services["migrate"]["command"] == ["priorprobe", "db", "upgrade"]
    assert "flower" in services["flower"]["command"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("api", "worker", "migrate", "scheduler"):
        env = services[name]["environment"]
        assert env["PRIORPROBE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["PRIORPROBE_BROKER_URL"].startswith("redis://redis:6379")
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Published ports listen on loopback only; api and worker say whether they are alive.
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    assert "/api/v1/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "9808/metrics" in " ".join(services["worker"]["healthcheck"]["test"])


def test_compose_commands_exist_in_the_cli():
    from click.testing import CliRunner

    from app.cli import main

    for args in (["serve", "--help"], ["worker", "--help"], ["db", "upgrade", "--help"], ["scheduler", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output


def test_dockerfile_installs_the_package_and_serves():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11")
    assert any(line.startswith("RUN") and "torch==2.13.0" in line for line in lines)
    for package in ("app", "workers", "models", "migrations"):
        assert any(line.startswith(f"COPY {package} ") for line in lines), package
    assert "COPY client/priorprobe_client ./priorprobe_client" in lines
    assert lines[-1] == 'CMD ["priorprobe", "serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert any(line.startswith("USER ") and "root" not in line for line in lines)


def test_compose_publishes_ports_on_loopback_only_and_requires_keys():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["api"] == ["127.0.0.1:8000:8000"] and published["flower"] == ["127.0.0.1:5555:5555"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)
    # environment=production makes API keys required by default (PRIORPROBE_AUTH unset).
    assert compose["services"]["api"]["environment"]["PRIORPROBE_ENVIRONMENT"] == "production"
    assert "PRIORPROBE_AUTH" not in compose["services"]["api"]["environment"]
