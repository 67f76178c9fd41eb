"""Someone with write access to the database, but not the server key, edits the audit
log: 23 kinds of tampering, each on its own copy of one database (two seals, then more
events not sealed yet). ``audit verify`` must report every one, and the sealer must
refuse to seal over it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from reviewqueue import audit, ingest, queues, review, store, users
from reviewqueue.settings import Settings, get_settings

from .conftest import item, seal_now

# (name, SQL by dialect or both, what verify says, whether the sealer refuses to go on):
# the SQL runs against a copy. The sealer refuses whatever it would otherwise seal over
# (new events without a valid MAC, copies, seals that differ from the anchor file); an
# edit inside a sealed block stays a broken block whatever is sealed after it.
TAMPERING = [
    (
        "edit a sealed event's actor",
        "UPDATE events SET actor = 'mallory' WHERE id = {sealed_mid}",
        "MAC",
        False,
    ),
    (
        "edit a sealed event's payload",
        {
            "sqlite": "UPDATE events SET after = json_set(after, '$.status', 'tampered') WHERE id = {sealed_mid}",
            "postgresql": "UPDATE events SET after = jsonb_set(coalesce(after, '{{}}'::jsonb), '{{status}}', "
            "'\"tampered\"') WHERE id = {sealed_mid}",
        },
        "MAC",
        False,
    ),
    (
        "edit a sealed event's time",
        {
            "sqlite": "UPDATE events SET at = '2001-01-01 00:00:00.000000' WHERE id = {sealed_mid}",
            "postgresql": "UPDATE events SET at = '2001-01-01T00:00:00Z' WHERE id = {sealed_mid}",
        },
        "MAC",
        False,
    ),
    ("delete a sealed event from the middle", "DELETE FROM events WHERE id = {sealed_mid}", "missing", False),
    ("delete the last sealed event", "DELETE FROM events WHERE id = {sealed_last}", "missing", False),
    (
        "slip in an event without a MAC",
        "INSERT INTO events (at, actor, kind, queue, seq) SELECT at, 'mallory', 'queue.updated', 'support', seq "
        "FROM events WHERE id = {unsealed_first}",
        "MAC",
        True,
    ),
    (
        "slip in an event dated before 1970",
        {
            "sqlite": "INSERT INTO events (at, actor, kind) VALUES ('1969-07-20 20:17:40.000000', 'mallory', 'user.created')",
            "postgresql": "INSERT INTO events (at, actor, kind) VALUES ('1969-07-20T20:17:40Z', 'mallory', 'user.created')",
        },
        "MAC",
        True,
    ),
    (
        "slip in an event with an empty or endless time",
        {
            "sqlite": "INSERT INTO events (at, actor, kind) VALUES ('', 'mallory', 'user.created')",
            "postgresql": "INSERT INTO events (at, actor, kind) VALUES ('-infinity', 'mallory', 'user.created')",
        },
        "MAC",
        True,
    ),
    (
        "slip in an event inside a sealed range",
        {
            "sqlite": "INSERT INTO events (id, at, actor, kind) VALUES (0, '2026-01-01 00:00:00.000000', "
            "'mallory', 'user.created')",
            "postgresql": "INSERT INTO events (id, at, actor, kind, seq) SELECT {gap_id}, at, 'mallory', "
            "'user.created', seq FROM events WHERE id = {sealed_mid}",
        },
        "",
        False,
    ),
    (
        "copy an event, MAC and all",
        "INSERT INTO events (at, actor, kind, item_id, queue, before, after, mac) SELECT at, actor, kind, item_id, "
        "queue, before, after, mac FROM events WHERE id = {unsealed_first}",
        "copy",
        True,
    ),
    (
        "swap two sealed events' order",
        "UPDATE events SET id = CASE WHEN id = {sealed_mid} THEN {gap_id} ELSE id END WHERE id = {sealed_mid}",
        "",
        False,
    ),
    (
        "swap two events' MACs",
        "UPDATE events SET mac = CASE WHEN id = {unsealed_first} THEN (SELECT mac FROM events WHERE id = "
        "{unsealed_last}) ELSE (SELECT mac FROM events WHERE id = {unsealed_first}) END "
        "WHERE id IN ({unsealed_first}, {unsealed_last})",
        "MAC",
        True,
    ),
    (
        "edit an unsealed event's actor",
        "UPDATE events SET actor = 'mallory' WHERE id = {unsealed_last}",
        "MAC",
        True,
    ),
    ("delete every seal", "DELETE FROM audit_seals", "anchor", True),
    ("delete the last seal", "DELETE FROM audit_seals WHERE number = 2", "anchor", True),
    ("delete the first seal", "DELETE FROM audit_seals WHERE number = 1", "missing", True),
    ("edit a seal's chain", "UPDATE audit_seals SET chain = '" + "1" * 64 + "' WHERE number = 2", "", True),
    ("edit a seal's event count", "UPDATE audit_seals SET events = events - 1 WHERE number = 1", "", True),
    ("move a seal's bound", "UPDATE audit_seals SET upto = upto - 1 WHERE number = 1", "", True),
    ("renumber a seal", "UPDATE audit_seals SET number = 3 WHERE number = 2", "", True),
    ("re-seal the history with a key of one's own", "RESEAL", "", True),
    (
        "move an event out of every range",
        {
            "sqlite": "UPDATE events SET seq = -5 WHERE id = {sealed_mid}",
            "postgresql": "UPDATE events SET seq = -5 WHERE id = {sealed_mid}",
        },
        "",
        False,
    ),
    ("delete every seal and the anchor file", "DELETE FROM audit_seals; ANCHOR", "not sealed", False),
]


def test_at_least_nineteen_kinds():
    assert len(TAMPERING) >= 19 and len({t[0] for t in TAMPERING}) == len(TAMPERING)


@pytest.fixture
def history(engine, db_url, fake_clock, tmp_path):
    """A database with two seals, then more events, closed for copying."""
    queues.create("support", {"threshold": 0.8, "audit_rate": 0.0}, engine=engine)
    users.add("ann", password="password-123", engine=engine)
    for n in range(3):
        for i in range(4):
            ingest.submit(item(10 * n + i), engine=engine)
            held = review.claim_next("support", "ann", engine=engine)
            review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
        if n < 2:
            assert seal_now(engine) is not None
    result = audit.verify(engine=engine)
    assert result.ok and result.seals == 2 and result.unsealed > 4, result.problem
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM events ORDER BY id"))]
        sealed = ids[: result.events]
        unsealed = ids[result.events :]
    marks = {
        "sealed_mid": sealed[len(sealed) // 2],
        "sealed_last": sealed[-1],
        "unsealed_first": unsealed[0],
        "unsealed_last": unsealed[-1],
        "gap_id": max(ids) + 1000,
    }
    store.dispose_engines()
    return {"url": db_url, "marks": marks, "anchor": Path(get_settings().audit_anchor_file)}


def _copy(history, tmp_path, n: int) -> tuple[str, Path]:
    url = make_url(history["url"])
    anchor = tmp_path / f"anchor-{n}.log"
    shutil.copy(history["anchor"], anchor)
    if url.get_backend_name() == "sqlite":
        target = tmp_path / f"copy-{n}.db"
        shutil.copy(url.database, target)
        if Path(url.database + "-wal").exists():  # what is not checkpointed yet belongs to it too
            shutil.copy(url.database + "-wal", str(target) + "-wal")
        return f"sqlite:///{target}", anchor
    name = f"{url.database}_tamper"
    admin = store.make_engine(history["url"].replace(f"/{url.database}", "/postgres"), pool=False)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), anchor


def _apply(engine, sql, marks, anchor: Path, monkeypatch) -> None:
    if isinstance(sql, dict):
        sql = sql[engine.dialect.name]
    if sql == "RESEAL":
        with monkeypatch.context() as m:
            # The attacker's own sealer: it checks nothing, it only hashes.
            m.setattr(audit, "_event_ok", lambda *_: True)
            m.setattr(audit, "_check_anchors", lambda *_: None)
            _reseal_with_another_key(engine)
        return
    for statement in sql.split(";"):
        statement = statement.strip()
        if statement == "ANCHOR":
            anchor.unlink()
        elif statement:
            with engine.begin() as conn:
                conn.execute(text(statement.format(**marks)))


def _reseal_with_another_key(engine) -> None:
    """Recompute every seal's chain and MAC as the product would, but with a key the
    attacker made (they do not have the server's)."""
    from cryptography.fernet import Fernet

    mallory = store.make_engine(
        engine.url.render_as_string(hide_password=False),
        settings=Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            secret_key=Fernet.generate_key().decode(),
            audit_anchor_file="/nonexistent/anchor",
        ),
    )
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_seals"))
    audit.seal(engine=mallory)
    store.dispose(mallory)


@pytest.mark.parametrize("n", range(len(TAMPERING)), ids=[t[0] for t in TAMPERING])
def test_every_kind_of_tampering_is_detected(history, tmp_path, n, fake_clock, monkeypatch):
    name, sql, says, refuses = TAMPERING[n]
    url, anchor = _copy(history, tmp_path, n)
    settings = Settings(
        **{**get_settings().model_dump(), "database_url": url, "audit_anchor_file": str(anchor)}
    )
    engine = store.make_engine(url, settings=settings)
    try:
        assert audit.verify(engine=engine).ok  # the copy verifies before anyone touches it
        _apply(engine, sql, history["marks"], anchor, monkeypatch)
        if "ANCHOR" in str(sql):
            fake_clock.advance(audit.UNSEALED_GRACE.total_seconds() + 60)  # nobody noticed for a while
        result = audit.verify(engine=engine)
        assert not result.ok, name
        assert says.lower() in result.problem.lower(), (name, result.problem)
        if refuses:
            with pytest.raises(audit.Tampered):  # nor does the sealer bless it
                audit.seal(engine=engine)
            assert not audit.verify(engine=engine).ok
    finally:
        store.dispose(engine)
