"""Migration 0006 adds ``models.conversion`` (the onnxruntime check of ONNX uploads), on SQLite and
PostgreSQL; existing rows keep working with it NULL, and downgrading removes it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from app.migrate import upgrade
from tests.migrations.scratch_database import scratch_postgres_url


def _columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("models")}
    finally:
        engine.dispose()


def _check(url: str) -> None:
    upgrade(url, "0004")
    assert "conversion" not in _columns(url)
    engine = sa.create_engine(url)
    models = sa.Table("models", sa.MetaData(), autoload_with=engine)
    model_id = uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(models.insert().values(
            id=model_id, name="old", tags=[], arch={"name": "mlp"}, family="mlp", sha256="0" * 64, size_bytes=1,
            format="safetensors", parameter_count=1, created_at=datetime.now(timezone.utc)))  # fmt: skip
    engine.dispose()
    upgrade(url, "0006")
    assert "conversion" in _columns(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT name, conversion FROM models WHERE id = :i"), {"i": model_id}).one()
    engine.dispose()
    assert tuple(stored) == ("old", None)


def test_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.mark.integration
def test_postgresql():
    with scratch_postgres_url() as url:
        _check(url)
