"""A probe run. This row is the only source of truth for a run's status (never the broker)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, JSONDocument, new_id, utcnow
from priorprobe_client.schemas.runs import RunStatus

__all__ = ["Run", "RunStatus"]


class Run(Base):
    __tablename__ = "runs"
    # A model's runs in the order they finished: the metric trend of a lineage.
    __table_args__ = (Index("ix_runs_model_finished", "model_id", "finished_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.queued, index=True)
    spec: Mapped[dict] = mapped_column(JSONDocument)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), index=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(Text)
    timing: Mapped[dict | None] = mapped_column(JSONDocument)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(100))  # the API key's name; null with auth off
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
