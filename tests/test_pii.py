"""Personal data planted in every field an app or a reviewer fills (44 values: the usual
formats and the ones that once slipped through), then looked for everywhere it could
end up: the database (SQLite's file, WAL and free pages; every column on PostgreSQL),
every export format, webhook bodies as a receiver got them, API answers, /v1/events
and the logs. Not one original may be found; an identifier holding personal data is
refused with a 422 naming the field."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from reviewqueue import export, queues, webhooks

from .conftest import LocalServer, quiet_handler

PLANTED = {
    "email": [
        "jane.doe@example.com",
        "JOHN.SMITH+inbox@Example.CO.UK",
        "josé.garcía@correo.es",
        "müller@bücher.de",
        "用户@例子.广告",
        "info@xn--bcher-kva.de",
        "a.b-c_d@sub.domain.example.org",
    ],
    "phone": [
        "+1 202-555-0143",
        "(202) 555-0178",
        "202.555.0199",
        "+44 20 7946 0958",
        "0044 20 7946 0123",
        "+49 30 901820",
        "+33 1 42 68 53 00",
        "+1 (415) 555-2671",
        "+41 44 668 18 00",
    ],
    "card": [
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "378282246310005",
        "4012.8888.8888.1881",
        "6011\u00a01111\u00a01111\u00a01117",
        "3566 0020 2036 0505",
        "5105105105105100",
        "4000 0566 5566 5556",
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "fr14 2004 1010 0505 0001 3m02 606",
        "NL91-ABNA-0417-1643-00",
        "ES9121000418450200051332",
        "BE68 5390 0754 7034",
    ],
    "ip": [
        "192.168.10.77",
        "10.20.30.40",
        "2001:db8:85a3::8a2e:370:7334",
        "fe80::1ff:fe23:4567:890a",
        "8.8.4.4",
    ],
    "ssn": ["123-45-6789", "219-09-9999", "078-05-1120"],
    "order": ["ORD-123456", "ORD-987654"],
}
#: Card and phone numbers an app sent as JSON numbers, not text.
NUMBERS = {"card_number": 4242424242424242, "phone_number": 2025550187}
VALUES = [v for vs in PLANTED.values() for v in vs]
RULES = ["email", "phone", "card", "iban", "ip", "ssn", {"name": "ORDER", "pattern": r"ORD-\d{6}"}]


def test_there_are_at_least_forty_planted_values():
    assert len(VALUES) + len(NUMBERS) >= 40


def originals() -> list[bytes]:
    return [v.encode() for v in VALUES] + [str(n).encode() for n in NUMBERS.values()]


class _Hook(quiet_handler()):
    def do_POST(self):
        self.server.owner.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()


class Hook(LocalServer):
    def __init__(self):
        self.bodies: list[bytes] = []
        super().__init__(_Hook)


@pytest.fixture(autouse=True)
def _receivers_on_this_machine(monkeypatch):
    monkeypatch.setenv("REVIEWQUEUE_WEBHOOK_ALLOW_PRIVATE", "1")


def _item(n: int, value: str) -> dict:
    sentence = f"Please contact {value}. Thanks"
    return {
        "queue": "pii",
        "external_id": f"p-{n}",
        "input": sentence,
        "output": {"reply": sentence, "to": value},
        "confidence": 0.1,
        "model": "reply-drafter",
        "context": [{"title": value, "text": sentence}],
        "metadata": {value: value, "note": sentence, **NUMBERS},
    }


@pytest.mark.parametrize(
    "field, value",
    [
        ("external_id", "jane.doe@example.com"),
        ("external_id", "+44 20 7946 0958"),
        ("model", "tuned-for-4111111111111111"),
        ("model_version", "DE89370400440532013000"),
        ("predicted_label", "192.168.10.77"),
        ("external_id", "123-45-6789"),
        ("external_id", "ORD-123456"),
    ],
)
def test_an_identifier_holding_personal_data_is_refused(api, engine, make_token, field, value):
    queues.create("pii", {"threshold": 0.8, "redaction": RULES}, engine=engine)
    headers = make_token("ingest")
    body = {**_item(1, "nothing"), field: value}
    r = api.post("/v1/items", json=body, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [field], r.text
    assert "personal data" in r.json()["detail"][0]["msg"] and value not in r.text
    r = api.post("/v1/items/batch", json={"items": [_item(2, "x"), body]}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["items", 1, field]
    # Plain ids are not mistaken for personal data.
    plain = {**_item(3, "x"), "external_id": "2025550123", "model_version": "2026-11-15"}
    assert api.post("/v1/items", json=plain, headers=headers).status_code == 201


def test_no_planted_value_is_stored_exported_sent_answered_or_logged(
    api, engine, db_url, make_token, tmp_path, fake_clock, caplog
):
    caplog.set_level(logging.DEBUG)
    queues.create("pii", {"threshold": 0.8, "audit_rate": 0.0, "redaction": RULES}, engine=engine)
    ingest_headers, reviewer = make_token("ingest"), make_token("review", user="rita")
    with Hook() as hook:
        webhooks.add("pii", f"{hook.base}/hook", engine=engine)
        # Every value in input, output, sources and metadata (keys too), over both routes.
        assert api.post("/v1/items", json=_item(0, VALUES[0]), headers=ingest_headers).status_code == 201
        batch = [_item(n, v) for n, v in enumerate(VALUES) if n]
        r = api.post("/v1/items/batch", json={"items": batch}, headers=ingest_headers)
        assert r.status_code == 200, r.text
        # Reviewers write them too: corrections and comments.
        answers = []
        for n, value in enumerate(VALUES):
            held = api.post("/v1/queues/pii/claim", headers=reviewer).json()
            decision = (
                {
                    "verdict": "correct",
                    "final_output": {"reply": f"Write to {value} instead"},
                    "comment": value,
                }
                if n % 2
                else {"verdict": "reject", "reason": "other", "comment": f"caller gave {value} twice"}
            )
            r = api.post(f"/v1/items/{held['id']}/decision", json=decision, headers=reviewer)
            assert r.status_code == 200, r.text
            answers.append(r.content)
            answers.append(api.get(f"/v1/items/{held['id']}", headers=reviewer).content)
        worker = webhooks.Worker(engine, interval=0.05).start()
        try:
            deadline = time.monotonic() + 30
            while len(hook.bodies) < len(VALUES) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
        assert len(hook.bodies) == len(VALUES)
    admin = make_token("admin", user="adam")
    answers.append(api.get("/v1/events?limit=1000", headers=admin).content)
    answers.append(api.get("/v1/items?queue=pii&limit=1000", headers=admin).content)
    fake_clock.advance(2)
    files = [
        r.path
        for fmt in ("jsonl", "csv", "parquet", "chat-jsonl")
        for r in export.export(tmp_path, fmt=fmt, engine=engine)
    ]
    assert files
    found = []
    for o in originals():
        for where, blob in [
            *((f"webhook body {i}", b) for i, b in enumerate(hook.bodies)),
            *((f"API answer {i}", a) for i, a in enumerate(answers)),
            *((str(f), Path(f).read_bytes()) for f in files),
            ("logs", caplog.text.encode()),
        ]:
            if o in blob:
                found.append((o, where))
    assert found == []
    # The placeholders are what is there instead.
    stored = json.loads(answers[1])
    placeholders = {f"[{kind}]" for kind in stored["redactions"]}
    assert placeholders and all(p in json.dumps(stored, ensure_ascii=False) for p in placeholders)
    _assert_not_in_database(engine, db_url, originals())


def _assert_not_in_database(engine, db_url, needles: list[bytes]) -> None:
    if engine.dialect.name == "sqlite":
        # The raw bytes, as they are now: the file (free pages included), the WAL, the
        # shared memory index.
        db_file = Path(db_url.removeprefix("sqlite:///"))
        content = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
        assert not [n for n in needles if n in content]
        return
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for column in [c["name"] for c in inspect(conn).get_columns(table)]:
                hits = [
                    n
                    for n in needles
                    if conn.execute(
                        text(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE :p'),
                        {"p": f"%{n.decode()}%"},
                    ).scalar()
                ]
                assert hits == [], (table, column, hits)


def test_what_redaction_covers_is_what_docs_security_says():
    doc = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    for phrase in ("corrections", "comments", "external_id", "JSON numbers", "00"):
        assert phrase in doc, phrase
