"""several reviewers per item: queue consensus settings, assignment and guidelines; items
count their decisions and point at the final one; adjudications are marked

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (with defaults for the rows there are): a batch rebuild of
    # queues on SQLite would trip the items' foreign key.
    json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql')
    op.add_column('queues', sa.Column('consensus', sa.String(length=16), nullable=False, server_default='majority'))
    op.add_column('queues', sa.Column('reviewers', json, nullable=False, server_default='[]'))
    op.add_column('queues', sa.Column('guidelines', sa.String(), nullable=False, server_default=''))
    op.add_column(
        'queues', sa.Column('show_previous_reviews', sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column('items', sa.Column('reviews_done', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('items', sa.Column('final_review_id', sa.Integer(), nullable=True))
    op.add_column('items', sa.Column('agreement', sa.Float(), nullable=True))
    op.add_column('reviews', sa.Column('adjudication', sa.Boolean(), nullable=False, server_default=sa.false()))
    # Until now one decision was the final one.
    op.execute(
        "UPDATE items SET final_review_id = (SELECT max(id) FROM reviews WHERE reviews.item_id = items.id "
        "AND reviews.undone_at IS NULL), agreement = 1.0, reviews_done = 1 "
        "WHERE status IN ('approved', 'corrected', 'rejected')"
    )


def downgrade() -> None:
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_column('adjudication')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('agreement')
        batch_op.drop_column('final_review_id')
        batch_op.drop_column('reviews_done')
    with op.batch_alter_table('queues', schema=None) as batch_op:
        batch_op.drop_column('show_previous_reviews')
        batch_op.drop_column('guidelines')
        batch_op.drop_column('reviewers')
        batch_op.drop_column('consensus')
