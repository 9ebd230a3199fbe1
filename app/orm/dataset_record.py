"""An uploaded dataset: a blob plus its validated description (shapes, task type, classes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, JSONDocument, new_id, utcnow


class DatasetRecord(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    # Dataset.describe(): lets POST /runs check shapes against the architecture without the arrays.
    description: Mapped[dict] = mapped_column(JSONDocument)
    created_by: Mapped[str | None] = mapped_column(String(100))  # the API key's name; null with auth off
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
