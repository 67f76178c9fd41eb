"""tool calls: a queue's kind, an item's own output schema (a tool's arguments), when
a tool call's decision was applied by the agent

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 19:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql')
    with op.batch_alter_table('queues') as batch:
        batch.add_column(sa.Column('kind', sa.String(16), nullable=False, server_default='text'))
    with op.batch_alter_table('items') as batch:
        batch.add_column(sa.Column('output_schema', json, nullable=True))
        batch.add_column(sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('items') as batch:
        batch.drop_column('applied_at')
        batch.drop_column('output_schema')
    with op.batch_alter_table('queues') as batch:
        batch.drop_column('kind')
