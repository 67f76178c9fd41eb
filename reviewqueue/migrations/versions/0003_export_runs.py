"""export runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:24:10.483233
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('export_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('verdicts', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('export_runs', schema=None) as batch_op:
        batch_op.create_index('ix_export_runs_key', ['queue', 'format', 'verdicts', 'mode', 'until'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('export_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_export_runs_key')

    op.drop_table('export_runs')

