"""``priorprobe keys create|list|revoke`` on the embedded SQLite file, and ``priorprobe submit``."""

from __future__ import annotations

from click.testing import CliRunner

from app.cli import main
from app.config import Settings
from app.orm import ApiKey
from app.runtime import Runtime
from app.services.api_keys import authenticate, hash_key


def test_keys_create_list_revoke(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORPROBE_DATA_DIR", str(tmp_path / "data"))
    for name in ("PRIORPROBE_DATABASE_URL", "PRIORPROBE_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--name", "ci-bot", "--scope", "write"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("ppk_") and len(key) > 40 and "shown only this once" in created.stderr

    runtime = Runtime(Settings(data_dir=tmp_path / "data"))
    with runtime.session_factory() as session:
        record = session.query(ApiKey).one()
        assert record.key_hash == hash_key(key, "") and key not in (record.key_hash, record.prefix)
        assert authenticate(session, key, "").name == "ci-bot"
        assert authenticate(session, key[:-1] + ("A" if key[-1] != "A" else "B"), "") is None
    listing = runner.invoke(main, ["keys", "list"])
    assert listing.exit_code == 0 and record.prefix in listing.output and "ci-bot" in listing.output and "write" in listing.output
    assert key not in listing.output

    revoked = runner.invoke(main, ["keys", "revoke", record.prefix])
    assert revoked.exit_code == 0 and f"revoked key {record.prefix}" in revoked.output
    with runtime.session_factory() as session:
        assert authenticate(session, key, "") is None
    assert runner.invoke(main, ["keys", "revoke", "nope"]).exit_code == 1
    assert runner.invoke(main, ["keys", "create", "--name", "has space"]).exit_code == 2
    runtime.dispose()


def test_server_submit_is_the_light_clients_command():
    result = CliRunner().invoke(main, ["submit", "--help"])
    assert result.exit_code == 0 and "--max-regression" in result.output and "priorprobe-client" in result.output
    bad_gate = CliRunner().invoke(main, ["submit", "x.safetensors", "--spec", "s.json", "--gate", "a <"])
    assert bad_gate.exit_code == 2
