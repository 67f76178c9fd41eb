"""governance: token expiry, sign-in attempts, encrypted webhook secrets, PII redaction
and retention settings, purged content, the sealed audit chain

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 05:00:00
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    _encrypted_secrets()
    op.create_table('sign_in_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('client', sa.String(length=64), nullable=True),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('sign_in_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_sign_in_name', ['name', 'at'], unique=False)
        batch_op.create_index('ix_sign_in_client', ['client', 'at'], unique=False)
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redaction', JSON, nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('retention_days', sa.Integer(), nullable=True))
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redactions', JSON, nullable=True))
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('item_id', sa.String(length=36), nullable=True))
        batch_op.create_index('ix_webhook_deliveries_item_id', ['item_id'], unique=False)
    op.create_table('audit_seals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('until_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.Column('chain', sa.String(length=64), nullable=False),
        sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('audit_seals')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_item_id')
        batch_op.drop_column('item_id')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('purged_at')
        batch_op.drop_column('redactions')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('retention_days')
        batch_op.drop_column('redaction')
    op.drop_table('sign_in_attempts')
    # (Encrypted secrets stay encrypted: reviewqueue reads both.)
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')


def _encrypted_secrets() -> None:
    """webhooks.secret becomes long enough for an encrypted secret, and existing secrets
    are encrypted with the server key. On SQLite the column is replaced in place (ALTER
    TABLE ... DROP/RENAME COLUMN): recreating the table would trip the deliveries'
    foreign key."""
    from reviewqueue import keys
    from reviewqueue.settings import get_settings

    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        op.add_column('webhooks', sa.Column('secret_sealed', sa.String(length=512), nullable=False, server_default=''))
        op.execute("UPDATE webhooks SET secret_sealed = secret")
        op.execute("ALTER TABLE webhooks DROP COLUMN secret")
        op.execute("ALTER TABLE webhooks RENAME COLUMN secret_sealed TO secret")
    else:
        op.alter_column('webhooks', 'secret', type_=sa.String(length=512), existing_type=sa.String(length=128))
    settings = get_settings()
    for hook_id, secret in conn.execute(sa.text("SELECT id, secret FROM webhooks")).all():
        if not secret.startswith(keys.PREFIX):
            conn.execute(sa.text("UPDATE webhooks SET secret = :s WHERE id = :i"),
                         {"s": keys.seal(secret, settings), "i": hook_id})
