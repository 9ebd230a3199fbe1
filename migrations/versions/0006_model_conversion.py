"""ONNX uploads: models.conversion records the check against onnxruntime made at upload.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02 07:10:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
# Chained after main's 0004 (merged into wt-h); re-chain after 0005 when wt-g lands.
down_revision = '0004'
branch_labels = None
depends_on = None

JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('conversion', JSONDocument, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_column('conversion')
