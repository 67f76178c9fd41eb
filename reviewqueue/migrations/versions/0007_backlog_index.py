"""the backlog by age and the oldest waiting item from an index: (queue, status, created_at)
replaces (queue, created_at)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 06:00:00
"""
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index('ix_items_waiting', ['queue', 'status', 'created_at'], unique=False)
        batch_op.drop_index('ix_items_queue_created')


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index('ix_items_queue_created', ['queue', 'created_at'], unique=False)
        batch_op.drop_index('ix_items_waiting')
