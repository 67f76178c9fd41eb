"""several nodes on one database: the cluster's own facts (the key's fingerprint), leases
of background jobs, audit seals ordered by the database (not by host clocks), webhook
deliveries in order per item, export runs waiting by a database deadline

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == 'postgresql'
    op.create_table('cluster',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table('job_leases',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('holder', sa.String(length=256), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )
    # events.seq orders the audit chain by the database, never by a host's clock. On
    # PostgreSQL it is the writing transaction's id (every transaction with a smaller
    # id has ended once the oldest running one is past it); on SQLite, where writers
    # take turns, the row id is that order and seq stays NULL. Events sealed before
    # this revision (by time) get 0; the others are next in line (1 on PostgreSQL).
    op.add_column('events', sa.Column(
        'seq', sa.BigInteger(), nullable=True,
        server_default=sa.text('(pg_current_xact_id()::text::bigint)') if pg else None,
    ))
    op.create_index('ix_events_seq', 'events', ['seq', 'id'], unique=False)
    op.execute(
        "UPDATE events SET seq = CASE WHEN at < (SELECT max(until_at) FROM audit_seals) THEN 0 ELSE "
        + ("1" if pg else "NULL") + " END"
    )
    # Every event from now on carries a MAC made with the server key (events.py);
    # the ones not sealed yet get theirs now, so that none is left unprotected.
    op.add_column('events', sa.Column('mac', sa.String(length=96), nullable=True))
    _mac_unsealed_events()
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('upto', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('first_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))
    op.execute("UPDATE audit_seals SET number = id")
    op.create_index('ix_audit_seals_number', 'audit_seals', ['number'], unique=True)
    op.add_column('items', sa.Column('webhook_seq', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('webhook_deliveries', sa.Column('sequence', sa.Integer(), nullable=True))
    op.add_column('webhook_deliveries', sa.Column('sending_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('export_runs', sa.Column('pending_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('export_runs', sa.Column('host', sa.String(length=255), nullable=True))
    # A feed's default name no longer holds the output folder: "jsonl@/srv/out" becomes
    # "jsonl" when that format and filter were exported to one folder only, so the
    # cron line of every host continues the same feed.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT DISTINCT feed FROM export_runs WHERE feed LIKE '%@/%'")).all()
    by_name: dict[str, list[str]] = {}
    for (feed,) in rows:
        by_name.setdefault(feed.split('@', 1)[0], []).append(feed)
    for name, feeds in by_name.items():
        taken = conn.execute(sa.text("SELECT count(*) FROM export_runs WHERE feed = :n"), {"n": name}).scalar()
        if len(feeds) == 1 and not taken:
            conn.execute(sa.text("UPDATE export_runs SET feed = :n WHERE feed = :f"), {"n": name, "f": feeds[0]})


def _mac_unsealed_events() -> None:
    import json
    import os

    from reviewqueue import clock, events
    from reviewqueue.settings import get_settings

    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT id, at, actor, kind, item_id, queue, before, after FROM events WHERE seq IS NULL OR seq <> 0"
    )).all()
    if not rows:
        return
    key = events.mac_key(get_settings())

    def loaded(value):
        return json.loads(value) if isinstance(value, str) else value

    updates = []
    for r in rows:
        nonce = os.urandom(8).hex()
        mac = events.fields_mac(
            key, nonce, clock.iso(clock.parse(r.at)), r.actor, r.kind, r.item_id, r.queue,
            loaded(r.before), loaded(r.after),
        )
        updates.append({"id": r.id, "mac": f"{nonce}:{mac}"})
    conn.execute(sa.text("UPDATE events SET mac = :mac WHERE id = :id"), updates)


def downgrade() -> None:
    op.drop_column('export_runs', 'host')
    op.drop_column('export_runs', 'pending_until')
    op.drop_column('webhook_deliveries', 'sending_until')
    op.drop_column('webhook_deliveries', 'sequence')
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('webhook_seq')
    op.drop_index('ix_audit_seals_number', 'audit_seals')
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.drop_column('mac')
        batch_op.drop_column('last_at')
        batch_op.drop_column('first_at')
        batch_op.drop_column('upto')
        batch_op.drop_column('number')
    op.drop_column('events', 'mac')
    op.drop_index('ix_events_seq', 'events')
    op.drop_column('events', 'seq')
    op.drop_table('job_leases')
    op.drop_table('cluster')
