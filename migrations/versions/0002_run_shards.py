"""Run shards: independent pieces of a probe's work, claimed by any worker.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 11:53:41.878214
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_shards',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('probe', sa.String(length=64), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'probe', 'index', name='uq_run_shards_run_probe_index')
    )
    with op.batch_alter_table('run_shards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_shards_run_id'), ['run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('run_shards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_shards_run_id'))

    op.drop_table('run_shards')
