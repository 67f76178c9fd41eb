"""reviews.edit_distance: computed once per decision instead of per export row

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 05:00:00
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edit_distance', sa.Integer(), nullable=True))
    # Backfill existing decisions with the distance exports used to compute per row.
    from reviewqueue.textdiff import decision_distance

    conn = op.get_bind()
    conn.execute(sa.text("UPDATE reviews SET edit_distance = 0 WHERE verdict = 'approve'"))
    rows = conn.execute(sa.text(
        "SELECT r.id, CAST(i.output AS TEXT), CAST(r.final_output AS TEXT) FROM reviews r "
        "JOIN items i ON i.id = r.item_id WHERE r.verdict = 'correct'"
    )).all()
    if rows:
        conn.execute(
            sa.text("UPDATE reviews SET edit_distance = :d WHERE id = :id"),
            [{"id": rid, "d": decision_distance("correct", json.loads(out) if out else None,
                                                json.loads(final) if final else None)}
             for rid, out, final in rows],
        )


def downgrade() -> None:
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_column('edit_distance')
