import pytest
from pydantic import ValidationError

from app.config import Settings


def test_embedded_default_without_database_or_broker(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=None, broker_url=None)
    assert settings.embedded
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'priorprobe.db').resolve()}"
    assert settings.resolved_storage_dir == (tmp_path / "blobs").resolve()


@pytest.mark.parametrize("scheme", ["postgres://", "postgresql://"])
def test_postgres_urls_get_the_psycopg_driver(scheme):
    settings = Settings(database_url=f"{scheme}u:p@db:5432/x", broker_url="redis://r:6379/0")
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/x"
    assert not settings.embedded


def test_production_refuses_the_embedded_fallback():
    with pytest.raises(ValidationError, match="PRIORPROBE_DATABASE_URL"):
        Settings(environment="production", database_url=None, broker_url=None)


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("PRIORPROBE_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("PRIORPROBE_BROKER_URL", "redis://127.0.0.1:6379/1")
    settings = Settings()
    assert settings.max_upload_bytes == 1234
    assert settings.broker_url == "redis://127.0.0.1:6379/1"
