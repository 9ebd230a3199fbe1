"""Migration 0004 keeps existing rows (new columns are null: made before keys and provenance
existed) and downgrades cleanly, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from app.migrate import alembic_config, upgrade
from tests.migrations.scratch_database import scratch_postgres_url

NEW_TABLES = {"api_keys", "webhooks", "webhook_deliveries", "webhook_attempts"}


def _check(url: str) -> None:
    from alembic import command

    upgrade(url, "0003")
    engine = sa.create_engine(url)
    models = sa.Table("models", sa.MetaData(), autoload_with=engine)
    model_id = uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(models.insert().values(
            id=model_id, name="old", tags=[], arch={"name": "mlp"}, family="mlp", sha256="0" * 64, size_bytes=1,
            format="safetensors", parameter_count=1, created_at=datetime.now(timezone.utc)))  # fmt: skip
    upgrade(url, "0004")
    inspector = sa.inspect(engine)
    assert NEW_TABLES <= set(inspector.get_table_names())
    model_columns = {c["name"] for c in inspector.get_columns("models")}
    assert {"version", "commit", "branch", "ci_url", "created_by"} <= model_columns
    assert "created_by" in {c["name"] for c in inspector.get_columns("runs")}
    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT name, version, created_by FROM models WHERE id = :id"), {"id": model_id}).one()
    assert tuple(row) == ("old", None, None)
    engine.dispose()

    command.downgrade(alembic_config(url), "0003")
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    assert not NEW_TABLES & set(inspector.get_table_names())
    assert "version" not in {c["name"] for c in inspector.get_columns("models")}
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM models")).scalar() == 1
    engine.dispose()


def test_0004_on_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.mark.integration
def test_0004_on_postgresql():
    with scratch_postgres_url() as url:
        _check(url)
