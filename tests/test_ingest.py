import math

import pytest
from sqlalchemy import func, select

from reviewqueue import ingest, items, store
from reviewqueue.errors import PayloadTooLarge, QueueNotFound, ValidationFailed
from reviewqueue.models import Event, Item
from reviewqueue.settings import get_settings

from .conftest import item


def stored(engine) -> int:
    with store.read(engine) as tx, tx.session as s:
        return s.scalar(select(func.count()).select_from(Item))


@pytest.mark.parametrize(
    "confidence, field_msg",
    [
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (-0.01, "greater than or equal to 0"),
        (1.0001, "less than or equal to 1"),
        ("0.5", "valid number"),
        (True, "valid number"),
        (None, "valid number"),
    ],
)
def test_bad_confidence_is_rejected_and_nothing_stored(engine, queue, confidence, field_msg):
    with pytest.raises(ValidationFailed) as e:
        ingest.submit(item(confidence=confidence), engine=engine)
    assert e.value.errors[0]["loc"] == ["confidence"]
    assert field_msg in e.value.errors[0]["msg"]
    assert "confidence" in str(e.value)
    assert stored(engine) == 0


@pytest.mark.parametrize("missing", ["queue", "input", "output", "confidence"])
def test_missing_required_field(engine, queue, missing):
    data = item()
    del data[missing]
    with pytest.raises(ValidationFailed) as e:
        ingest.submit(data, engine=engine)
    assert e.value.errors[0]["loc"] == [missing]
    assert "required" in e.value.errors[0]["msg"].lower()
    assert stored(engine) == 0


def test_unknown_field_and_bad_types(engine, queue):
    with pytest.raises(ValidationFailed) as e:
        ingest.submit(item(colour="red", priority="high", context="not a list"), engine=engine)
    locs = {tuple(err["loc"]) for err in e.value.errors}
    assert {("colour",), ("priority",), ("context",)} <= locs


def test_unknown_queue(engine, queue):
    with pytest.raises(QueueNotFound) as e:
        ingest.submit(item(queue="nope"), engine=engine)
    assert "nope" in str(e.value) and e.value.name == "nope"
    assert stored(engine) == 0


def test_oversized_item(engine, queue):
    limit = get_settings().max_item_bytes
    with pytest.raises(PayloadTooLarge) as e:
        ingest.submit(item(output="x" * (limit + 1)), engine=engine)
    assert "limit" in str(e.value)
    # Multibyte text is measured in bytes, not characters.
    with pytest.raises(PayloadTooLarge):
        ingest.submit(item(output="é" * (limit // 2 + 10)), engine=engine)
    assert stored(engine) == 0
    ok = ingest.submit(item(output="x" * (limit // 2)), engine=engine)
    assert not ok.duplicate


def test_batch_is_atomic_and_names_every_bad_item(engine, queue):
    batch = [item(i) for i in range(5)]
    batch[1]["confidence"] = 2
    batch[3]["input"] = None
    with pytest.raises(ValidationFailed) as e:
        ingest.submit_many(batch, engine=engine)
    locs = [err["loc"] for err in e.value.errors]
    assert ["items", 1, "confidence"] in locs
    assert any(loc[:2] == ["items", 3] for loc in locs)
    assert stored(engine) == 0


def test_batch_with_unknown_queue_stores_nothing(engine, queue):
    with pytest.raises(QueueNotFound) as e:
        ingest.submit_many([item(1), item(2, queue="ghost")], engine=engine)
    assert "ghost" in str(e.value) and "[1]" in str(e.value)
    assert stored(engine) == 0


def test_untrusted_text_is_stored_verbatim(engine, queue):
    evil = '<img src="http://127.0.0.1:9/x.png"> ![x](http://127.0.0.1:9/p.png) [a](javascript:alert(1)) émoji 🎉\n"q"'
    r = ingest.submit(
        item(output=evil, input={"messages": [{"role": "user", "content": evil}]}), engine=engine
    )
    got = items.get(r.id, engine=engine)
    assert got.output == evil
    assert got.input["messages"][0]["content"] == evil


def test_json_outputs_context_and_metadata_round_trip(engine, queue):
    r = ingest.submit(
        item(
            output={"answer": "42", "citations": [1, 2]},
            context=[{"title": "Doc", "text": "body", "url": "https://example.invalid/d", "score": 0.7}],
            metadata={"tenant": "acme", "latency_ms": 812},
            model="gpt-x",
            model_version="2026-11",
            priority=5,
            predicted_label=None,
        ),
        engine=engine,
    )
    got = items.get(r.id, engine=engine)
    assert got.output == {"answer": "42", "citations": [1, 2]}
    assert got.context[0]["score"] == 0.7 and got.context[0]["title"] == "Doc"
    assert got.metadata == {"tenant": "acme", "latency_ms": 812}
    assert (got.model, got.model_version, got.priority) == ("gpt-x", "2026-11", 5)


def test_ingest_writes_an_audit_event(engine, queue):
    ingest.submit_many(
        [item(i) for i in range(3)] + [item(9, confidence=0.99)], actor="app:test", engine=engine
    )
    with store.read(engine) as tx, tx.session as s:
        ev = s.scalars(select(Event).where(Event.kind == "items.ingested")).one()
    assert ev.actor == "app:test" and ev.queue == "support"
    assert ev.after == {"count": 4, "routes": {"below_threshold": 3, "auto_accepted": 1}}


def test_duplicate_external_id_returns_existing(engine, queue):
    first = ingest.submit(item(1), engine=engine)
    again = ingest.submit(item(1, output="something else", confidence=0.99), engine=engine)
    assert again.duplicate and again.id == first.id and again.route == first.route
    batch = ingest.submit_many([item(1), item(2), item(2)], engine=engine)
    assert [r.duplicate for r in batch] == [True, False, True]
    assert batch[0].id == first.id and batch[1].id == batch[2].id
    assert stored(engine) == 2


def test_same_external_id_in_other_queue_is_separate(engine, queue, label_queue):
    a = ingest.submit(item(1), engine=engine)
    b = ingest.submit(item(1, queue="tickets"), engine=engine)
    assert a.id != b.id and not b.duplicate


def test_nul_characters_are_refused_on_every_backend(engine, queue):
    for bad in (item(1, output="a\x00b"), item(2, metadata={"k": "\x00"}), item(3, model="m\x00")):
        with pytest.raises(ValidationFailed):
            ingest.submit(bad, engine=engine)
    ok = ingest.submit(item(4, output="a literal \\u0000 is fine"), engine=engine)
    assert items.get(ok.id, engine=engine).output == "a literal \\u0000 is fine"
    assert stored(engine) == 1
