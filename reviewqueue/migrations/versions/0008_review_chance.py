"""items.review_chance (the chance an item had of being queued for review when it arrived:
1 below the threshold, the queue's audit rate above it) and items.confidence_band (its
1%-wide confidence band), with the index the quality report reads them through

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 08:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('items', sa.Column('review_chance', sa.Float(), nullable=True))
    op.add_column('items', sa.Column('confidence_band', sa.Integer(), nullable=True))
    floor = "CAST(confidence * 100 + 1e-9 AS INTEGER)"  # confidence >= 0: CAST truncates
    if op.get_bind().dialect.name == "postgresql":
        floor = "CAST(FLOOR(confidence * 100 + 1e-9) AS INTEGER)"
    op.execute(f"UPDATE items SET confidence_band = CASE WHEN {floor} > 99 THEN 99 ELSE {floor} END")
    # Items stored before: below the threshold they were certain to be queued; above
    # it, the queue's audit rate now is the best record there is of the rate then.
    op.execute(
        "UPDATE items SET review_chance = 1.0 WHERE route IN ('below_threshold', 'label_threshold')"
    )
    op.execute(
        "UPDATE items SET review_chance = (SELECT audit_rate FROM queues WHERE queues.name = items.queue) "
        "WHERE route IN ('audit_sample', 'auto_accepted')"
    )
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index(
            'ix_items_quality',
            ['queue', 'model_version', 'route', 'review_chance', 'confidence_band', 'predicted_label',
             'status', 'confidence', 'created_at'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_quality')
        batch_op.drop_column('confidence_band')
        batch_op.drop_column('review_chance')
