"""The shared listings on both databases: the probe filter is a JSONB key test on PostgreSQL and a
JSON path on SQLite, the tag filter a match on the JSON text; both must select exactly the same runs."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from app.migrate import upgrade
from app.orm import ModelRecord, Run
from app.services import catalog


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def session(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with sessionmaker(engine)() as session:
        yield session
    engine.dispose()


def _model(session, name: str, tags: list[str]) -> ModelRecord:
    record = ModelRecord(name=name, tags=tags, arch={"name": "mlp"}, family="mlp", sha256=uuid.uuid4().hex * 2,
                         size_bytes=1, format="safetensors", parameter_count=1)  # fmt: skip
    session.add(record)
    session.flush()
    return record


def _run(session, model: ModelRecord, probes: list[str], status: str = "succeeded") -> str:
    run = Run(spec={"model": {"weights": model.id}, "probes": {p: {"note": "inductive_bias"} for p in probes}},
              model_id=model.id, status=status, queue="cpu", progress=1.0, attempts=1)  # fmt: skip
    session.add(run)
    session.flush()
    return run.id


def test_filters_select_exactly_the_matching_runs(session):
    lineage = f"catalog-{uuid.uuid4().hex[:8]}"  # the PostgreSQL database is shared by the session's tests
    tagged = _model(session, lineage, ["team_a", "nightly"])
    other = _model(session, lineage, ["team-a"])
    both = _run(session, tagged, ["invariance", "weight_spectrum"])
    spectrum_only = _run(session, other, ["weight_spectrum"], status="failed")
    # A probe name appearing as a *value* inside the spec does not count as the probe being run.
    decoy = _run(session, other, ["sharpness"])
    session.commit()

    def ids(**filters):
        rows, count = catalog.list_runs(session, catalog.RunFilters(model_name=lineage, **filters), limit=50, offset=0)
        assert count == len(rows)
        return {row.run.id for row in rows}

    assert ids() == {both, spectrum_only, decoy}
    assert ids(probe="weight_spectrum") == {both, spectrum_only}
    assert ids(probe="inductive_bias") == set()
    assert ids(probe="invariance") == {both}
    assert ids(probe="weight%") == set()  # not a probe name: matches nothing rather than a pattern
    assert ids(tag="team_a") == {both}  # '_' is literal, not a LIKE wildcard matching 'team-a'
    assert ids(tag="team-a") == {spectrum_only, decoy}
    assert ids(tag="team") == set()
    assert ids(status="failed", probe="weight_spectrum") == {spectrum_only}
    rows = catalog.runs_by_ids(session, [decoy, both])
    assert [row.run.id for row in rows] == [decoy, both] and rows[0].model_name == lineage
    with pytest.raises(catalog.NotFound, match="no run with id 'nope'"):
        catalog.runs_by_ids(session, [both, "nope"])
