"""structured outputs: a queue's output schema and field thresholds, an item's field
confidences and flagged fields, a correction's changed fields

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 19:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql')
    with op.batch_alter_table('queues') as batch:
        batch.add_column(sa.Column('output_schema', json, nullable=True))
        batch.add_column(sa.Column('field_thresholds', json, nullable=False, server_default='{}'))
    with op.batch_alter_table('items') as batch:
        batch.add_column(sa.Column('field_confidence', json, nullable=True))
        batch.add_column(sa.Column('flagged_fields', json, nullable=True))
    with op.batch_alter_table('reviews') as batch:
        batch.add_column(sa.Column('changed_fields', json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reviews') as batch:
        batch.drop_column('changed_fields')
    with op.batch_alter_table('items') as batch:
        batch.drop_column('flagged_fields')
        batch.drop_column('field_confidence')
    with op.batch_alter_table('queues') as batch:
        batch.drop_column('field_thresholds')
        batch.drop_column('output_schema')
