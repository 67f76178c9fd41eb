"""export feeds (a watermark per feed), runs recorded before their file moves, policies

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:00:00
"""
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('export_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feed', sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column('pending_path', sa.String(length=1024), nullable=True))
        batch_op.drop_index('ix_export_runs_key')
        batch_op.create_index('ix_export_runs_feed', ['feed', 'queue', 'until'], unique=False)
    # Existing incremental runs become the default feed of their folder (OUT/<queue>/
    # <period>/data.<ext> then), so a cron job continues where it left off.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, format, verdicts, path FROM export_runs WHERE mode = 'incremental'")).all()
    for run_id, fmt, verdicts, path in rows:
        out = os.path.abspath(Path(path).parents[2])
        feed = f"{fmt}{'+' + verdicts if verdicts else ''}@{out}"
        conn.execute(sa.text("UPDATE export_runs SET feed = :f WHERE id = :i"), {"f": feed, "i": run_id})

    op.create_table('policies',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', JSON, nullable=True),
        sa.Column('updated_by', sa.String(length=128), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('policies')
    with op.batch_alter_table('export_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_export_runs_feed')
        batch_op.create_index('ix_export_runs_key', ['queue', 'format', 'verdicts', 'mode', 'until'], unique=False)
        batch_op.drop_column('pending_path')
        batch_op.drop_column('feed')
