"""Migration 0003 brings stored reports to the typed format and backfills ``run_metrics`` from them,
on the embedded SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.migrate import upgrade
from app.orm.base import JSONDocument
from tests.migrations.scratch_database import scratch_postgres_url
from workers.report import Report

LEGACY = json.loads((Path(__file__).parents[1] / "workers" / "fixtures" / "report_v1.json").read_text())


def _seed_format_1(url: str) -> str:
    """A succeeded run with a format-1 report and an unreadable report beside it, at revision 0002."""
    upgrade(url, "0002")
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    runs = sa.Table("runs", metadata, autoload_with=engine)
    reports = sa.Table("reports", sa.MetaData(), sa.Column("run_id", sa.String), sa.Column("body", JSONDocument),
                       sa.Column("created_at", sa.DateTime(timezone=True)))
    now = datetime.now(timezone.utc)
    run_id, broken_id = uuid.uuid4().hex, uuid.uuid4().hex
    with engine.begin() as connection:
        for rid in (run_id, broken_id):
            connection.execute(runs.insert().values(
                id=rid, status="succeeded", spec=LEGACY["run"]["spec"], queue="cpu", progress=1.0, attempts=1,
                created_at=now, finished_at=now, timing=LEGACY["timing"]))  # fmt: skip
        connection.execute(reports.insert().values(run_id=run_id, body={**LEGACY, "run": {**LEGACY["run"], "id": run_id}}, created_at=now))
        connection.execute(reports.insert().values(run_id=broken_id, body={"not": "a report"}, created_at=now))
    engine.dispose()
    return run_id


def _check_backfill(url: str) -> None:
    run_id = _seed_format_1(url)
    upgrade(url, "head")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        body = connection.execute(sa.select(sa.column("body", JSONDocument)).select_from(sa.table("reports"))
                                  .where(sa.column("run_id") == run_id)).scalar_one()  # fmt: skip
        timing = connection.execute(sa.select(sa.column("timing", JSONDocument)).select_from(sa.table("runs"))
                                    .where(sa.column("id") == run_id)).scalar_one()  # fmt: skip
        rows = connection.execute(sa.text("SELECT key, value, ci_low, ci_high, better, scope FROM run_metrics WHERE run_id = :r"),
                                  {"r": run_id}).all()  # fmt: skip
        total = connection.execute(sa.text("SELECT count(*) FROM run_metrics")).scalar_one()
    engine.dispose()
    report = Report.model_validate(body)
    assert report.environment.report_format == 2 and "target" in report.probes.inductive_bias.spaces
    assert timing == body["timing"] and set(timing["inductive_bias"]) == {"total_s", "phases"}
    stored = {row.key: row for row in rows}
    assert set(stored) == {metric.key for metric in report.metrics} and total == len(stored)  # the broken one has none
    bits = stored["inductive_bias.bits"]
    target = report.probes.inductive_bias.spaces["target"]
    assert (bits.value, bits.ci_low, bits.ci_high) == (target.bits, target.ci95[0], target.ci95[1])
    assert bits.better == "lower" and bits.scope == "init"


def test_backfill_on_sqlite(tmp_path):
    _check_backfill(f"sqlite:///{tmp_path / 'legacy.db'}")


@pytest.mark.integration
def test_backfill_on_postgresql():
    with scratch_postgres_url() as url:
        _check_backfill(url)
