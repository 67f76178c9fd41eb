"""Rotating the server key (rotation.py), on SQLite and PostgreSQL: stored secrets still
decrypt, the audit log verifies with the old key retired, new events and seals use the
new key, a host on the old key is refused, tampering is still found; and a rotation is
refused while the log does not verify or another process runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from reviewqueue import audit, cli, cluster, ingest, keys, notify, queues, review, rotation, store, webhooks
from reviewqueue.errors import Conflict, KeyMismatch, ValidationFailed
from reviewqueue.models import JobLease
from reviewqueue.settings import Settings, get_settings

from .conftest import item


@pytest.fixture(autouse=True)
def _local(monkeypatch):
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")


def _history(engine):
    queues.create("support", {"audit_rate": 0.0}, engine=engine)
    _, secret = webhooks.add("support", "http://127.0.0.1:9/hook", engine=engine)
    notify.add("slack", "http://127.0.0.1:9/T1/B2/alert-secret", engine=engine)
    ingest.submit_many([item(i) for i in range(5)], engine=engine)
    for _ in range(3):
        held = review.claim_next("support", "ann", engine=engine)
        review.decide(held.id, "ann", {"verdict": "approve"}, engine=engine)
    assert audit.seal(engine=engine) is not None
    ingest.submit(item(9), engine=engine)  # an event left for the rotation to seal
    return secret


def _engine_with(db_url, **settings):
    get_settings.cache_clear()
    return store.make_engine(db_url, settings=Settings(**settings))


def test_rotation_keeps_secrets_and_the_audit_log(db_url, engine, tmp_path):
    secret = _history(engine)
    old = keys.key(store.settings_of(engine)).decode()
    new = rotation.new_key()
    done = rotation.rotate(new, engine=engine)
    assert done.seals >= 1 and done.secrets == 2
    assert done.old_fingerprint == cluster.fingerprint(old.encode()) != done.new_fingerprint
    # The key file was replaced, the old key kept beside it, retired.
    key_file = store.settings_of(engine).secret_key_file
    assert done.key_file == key_file and open(key_file).read().strip() == new
    assert open(key_file + ".retired").read().split() == [old]
    rotated = _engine_with(db_url, secret_key=new, secret_keys_retired=old)
    try:
        assert cluster.check_key(engine=rotated) == done.new_fingerprint
        check = audit.verify(engine=rotated)
        assert check.ok, check.problem
        [hook] = webhooks.all_webhooks(engine=rotated)
        assert keys.unseal(hook.secret, store.settings_of(rotated)) == secret
        assert notify.channels(engine=rotated)[0]["to"] == "127.0.0.1"
        # New work is MACed and sealed with the new key, and everything still verifies.
        held = review.claim_next("support", "bob", engine=rotated)
        review.decide(held.id, "bob", {"verdict": "approve"}, engine=rotated)
        sealed = audit.seal(engine=rotated)
        assert sealed.key_fingerprint == done.new_fingerprint
        assert audit.verify(engine=rotated).ok
        # Edit an event sealed under the old key: still found.
        with rotated.begin() as conn:
            conn.execute(text("UPDATE events SET actor = 'mallory' WHERE id = (SELECT min(id) FROM events)"))
        assert not audit.verify(engine=rotated).ok
    finally:
        store.dispose(rotated)
    # Without the retired key the old seals cannot be checked, and it says what to do.
    bare = _engine_with(db_url, secret_key=new, secret_key_file=str(tmp_path / "none.key"))
    try:
        problem = audit.verify(engine=bare).problem
        assert "REVIEWQUEUE_SECRET_KEYS_RETIRED" in problem and done.old_fingerprint in problem
    finally:
        store.dispose(bare)
    # A host still on the old key is refused at start.
    stale = _engine_with(db_url, secret_key=old)
    try:
        with pytest.raises(KeyMismatch):
            cluster.check_key(engine=stale)
    finally:
        store.dispose(stale)


def test_rotation_is_refused_when_the_log_does_not_verify(engine):
    _history(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET actor = 'mallory' WHERE id = (SELECT min(id) FROM events)"))
    fingerprint = cluster.recorded_fingerprint(engine=engine)
    with pytest.raises(Conflict, match="does not verify"):
        rotation.rotate(engine=engine)
    assert cluster.recorded_fingerprint(engine=engine) == fingerprint  # nothing changed


def test_rotation_is_refused_while_another_process_runs(engine):
    _history(engine)
    from reviewqueue import clock

    with store.write(engine) as tx:
        tx.session.add(
            JobLease(
                name="audit-seal", holder="host-b:4242:abcd", expires_at=clock.now() + timedelta(seconds=15)
            )
        )
    with pytest.raises(Conflict, match="other reviewqueue processes are running"):
        rotation.rotate(engine=engine)
    with pytest.raises(ValidationFailed, match="the key in use"):
        rotation.rotate(keys.key(store.settings_of(engine)).decode(), engine=engine)
    with pytest.raises(ValidationFailed, match="url-safe base64"):
        rotation.rotate("not-a-key", engine=engine)


def test_cli_rotate_with_a_key_from_stdin(engine, monkeypatch):
    _history(engine)
    new = rotation.new_key()
    out = CliRunner().invoke(cli.app, ["key", "rotate", "--new-key-stdin"], input=new + "\n")
    assert out.exit_code == 0, out.output
    assert "rotated the server key" in out.output and ".retired" in out.output
    assert new not in out.output  # never printed when you gave it
    assert cluster.recorded_fingerprint(engine=engine) == cluster.fingerprint(new.encode())
