"""exports walk a queue's items by when they became final

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 16:00:00
"""
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_items_queue_decided', 'items', ['queue', 'decided_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_items_queue_decided', 'items')
