"""review-app sessions kept in the database, named by an HttpOnly cookie

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ui_sessions',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('user', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('client', sa.String(length=64), nullable=False, server_default=''),
        sa.ForeignKeyConstraint(['user'], ['users.name']),
        sa.PrimaryKeyConstraint('id_hash'),
    )
    op.create_index('ix_ui_sessions_user', 'ui_sessions', ['user', 'ended_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_ui_sessions_user', 'ui_sessions')
    op.drop_table('ui_sessions')
