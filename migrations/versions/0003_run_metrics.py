"""Typed reports (format 2) and the run_metrics table, backfilled from stored reports.

Every stored report is brought to the current format (``workers.report_upgrade``): one timing
shape, the symmetric inductive_bias result, metrics and warnings. Its metrics become rows of
``run_metrics``, and ``runs.timing`` takes the new timing shape. A report that cannot be read as
the current format is left as it is and named in the log (its run then has no metric rows).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:00:00
"""
import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table('run_metrics',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('probe', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('ci_low', sa.Float(), nullable=True),
    sa.Column('ci_high', sa.Float(), nullable=True),
    sa.Column('unit', sa.String(length=64), nullable=False),
    sa.Column('better', sa.String(length=8), nullable=False),
    sa.Column('n', sa.Integer(), nullable=True),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'key')
    )
    with op.batch_alter_table('run_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_run_metrics_key_run', ['key', 'run_id'], unique=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        # The metric trend orders a model's runs by when they finished.
        batch_op.create_index('ix_runs_model_finished', ['model_id', 'finished_at'], unique=False)
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index('ix_models_name', ['name'], unique=False)
    _backfill()


def _backfill() -> None:
    # Imported here: only the data step needs the application's report code.
    from app.services.run_metrics import metric_rows
    from workers.report_upgrade import upgrade_report

    bind = op.get_bind()
    reports = sa.table('reports', sa.column('run_id', sa.String), sa.column('body', JSONDocument))
    runs = sa.table('runs', sa.column('id', sa.String), sa.column('timing', JSONDocument))
    run_metrics = sa.table('run_metrics', *(sa.column(name) for name in (
        'run_id', 'key', 'probe', 'value', 'ci_low', 'ci_high', 'unit', 'better', 'n', 'scope', 'description')))
    for run_id, body in bind.execute(sa.select(reports.c.run_id, reports.c.body)).all():
        try:
            report = upgrade_report(body)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.warning("report of run %s left in its old format: %s", run_id, str(exc)[:500])
            continue
        document = report.model_dump(mode="json")
        bind.execute(reports.update().where(reports.c.run_id == run_id).values(body=document))
        bind.execute(runs.update().where(runs.c.id == run_id).values(timing=document["timing"]))
        rows = metric_rows(run_id, report.metrics)
        if rows:
            bind.execute(run_metrics.insert(), rows)


def downgrade() -> None:
    # Reports stay in format 2: format 1 dropped nothing that format 2 lacks, but old code cannot read it.
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index('ix_models_name')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_model_finished')
    with op.batch_alter_table('run_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_run_metrics_key_run')
    op.drop_table('run_metrics')
