"""An uploaded model: architecture spec + a checkpoint blob in content-addressed storage."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, JSONDocument, new_id, utcnow


class ModelRecord(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), index=True)  # the lineage: `latest:<name>` is its newest model
    version: Mapped[str | None] = mapped_column(String(100))
    # Git provenance of the checkpoint, as the CI job that uploaded it reports it.
    commit: Mapped[str | None] = mapped_column(String(64))
    branch: Mapped[str | None] = mapped_column(String(200))
    ci_url: Mapped[str | None] = mapped_column(String(500))
    tags: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    arch: Mapped[dict] = mapped_column(JSONDocument)
    family: Mapped[str] = mapped_column(String(32), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str | None] = mapped_column(String(100))  # the API key's name; null with auth off
    # ONNX uploads: the check against onnxruntime at upload (models.graph.describe); None otherwise.
    conversion: Mapped[dict | None] = mapped_column(JSONDocument, nullable=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
