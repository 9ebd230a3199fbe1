"""One metric of a succeeded run, stored as a row so trends and baselines are indexed queries.

Written in the same transaction as the report and the ``succeeded`` status (``run_state``), from
the report's ``metrics`` list; the report keeps the full typed document.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.orm.base import Base


class RunMetric(Base):
    __tablename__ = "run_metrics"
    __table_args__ = (
        # The trend query: one key across runs, newest first (joined to runs for time and model).
        Index("ix_run_metrics_key_run", "key", "run_id"),
    )

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    probe: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(64))
    better: Mapped[str] = mapped_column(String(8))
    n: Mapped[int | None] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500))
