"""deadlines with a declared fallback, late reviews, alert rules and where alerts go; the key
each audit seal was made with

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

_DUE = (
    "deadline_at IS NOT NULL AND deadline_state <> 'passed' "
    "AND status IN ('pending', 'in_review', 'disputed')"
)


def upgrade() -> None:
    json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql')
    with op.batch_alter_table('queues') as batch:
        batch.add_column(sa.Column('deadline_seconds', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('on_deadline', sa.String(length=16), nullable=False, server_default='keep'))
        batch.add_column(sa.Column('deadline_reason', sa.String(length=256), nullable=True))
        batch.add_column(sa.Column('escalate_to', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('warn_seconds', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('alerts', json, nullable=False, server_default='{}'))
    with op.batch_alter_table('items') as batch:
        batch.add_column(sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('deadline_state', sa.String(length=16), nullable=False, server_default=''))
        batch.add_column(sa.Column('deadline_action', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('fallback_reason', sa.String(length=256), nullable=True))
    with op.batch_alter_table('reviews') as batch:
        batch.add_column(sa.Column('after_deadline', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table('notify_channels',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('target', sa.String(length=2048), nullable=False),
        sa.Column('queues', json, nullable=False),
        sa.Column('digest', sa.Boolean(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_error', sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table('alert_states',
        sa.Column('queue', sa.String(length=64), nullable=False),
        sa.Column('rule', sa.String(length=32), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('threshold', sa.Float(), nullable=True),
        sa.Column('raised_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('queue', 'rule'),
    )
    with op.batch_alter_table('audit_seals') as batch:
        batch.add_column(sa.Column('key_fingerprint', sa.String(length=32), nullable=True))
    op.create_index('ix_events_kind_at', 'events', ['kind', 'at'], unique=False)
    op.create_index(
        'ix_items_due', 'items', ['deadline_at'], unique=False,
        sqlite_where=sa.text(_DUE), postgresql_where=sa.text(_DUE),
    )


def downgrade() -> None:
    op.drop_index('ix_items_due', 'items')
    op.drop_index('ix_events_kind_at', 'events')
    op.drop_table('alert_states')
    with op.batch_alter_table('audit_seals') as batch:
        batch.drop_column('key_fingerprint')
    op.drop_table('notify_channels')
    with op.batch_alter_table('reviews') as batch:
        batch.drop_column('after_deadline')
    with op.batch_alter_table('items') as batch:
        for name in ('fallback_reason', 'deadline_action', 'deadline_state', 'deadline_at'):
            batch.drop_column(name)
    with op.batch_alter_table('queues') as batch:
        for name in ('alerts', 'warn_seconds', 'escalate_to', 'deadline_reason', 'on_deadline', 'deadline_seconds'):
            batch.drop_column(name)
