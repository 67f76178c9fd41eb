"""governance: token expiry, sign-in attempts kept where every process sees them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 05:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('webhooks', schema=None) as batch_op:  # secrets are stored encrypted
        batch_op.alter_column('secret', type_=sa.String(length=512), existing_type=sa.String(length=128))
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


def downgrade() -> None:
    op.drop_table('sign_in_attempts')
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column('secret', type_=sa.String(length=128), existing_type=sa.String(length=512))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
