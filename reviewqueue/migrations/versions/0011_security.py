"""security: refused sign-in attempts are kept (they count against whoever made them);
events are found by their MAC (a copied event is refused by the sealer)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_mac', 'events', ['mac'], unique=False)
    op.add_column(
        'sign_in_attempts', sa.Column('limited', sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_column('sign_in_attempts', 'limited')
    op.drop_index('ix_events_mac', 'events')
