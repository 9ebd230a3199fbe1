"""One independent piece of a probe's work within a run, executed by whichever worker claims it.

Shards let one run use every worker: the run's own task creates them, enqueues a message per
shard, and works through them too; the probe merges their results in order.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base, JSONDocument, new_id, utcnow


class RunShard(Base):
    __tablename__ = "run_shards"
    __table_args__ = (UniqueConstraint("run_id", "probe", "index", name="uq_run_shards_run_probe_index"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    probe: Mapped[str] = mapped_column(String(64))
    index: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict | None] = mapped_column(JSONDocument)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
