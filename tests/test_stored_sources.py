"""Sources that carry their file as stored content (schemas.ContextSource): an image or a
PDF the app posted, checked at ingest (its type, its first bytes, its size; never SVG;
refused on queues that redact personal data), shown on the review page from those
bytes (an image) or offered for download under the review form and on Browse (a PDF);
nothing fetched."""

from __future__ import annotations

import base64

import pytest
from streamlit.testing.v1 import AppTest

from reviewqueue import ingest, items, queues
from reviewqueue.errors import ValidationFailed
from reviewqueue.schemas import MAX_SOURCE_BYTES

from .test_ui import button, page_app, seeded  # noqa: F401 (seeded: a fixture)

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def source(raw: bytes, media_type: str, **extra) -> dict:
    return {
        "title": "scan",
        "text": "page 1",
        "media_type": media_type,
        "data": base64.b64encode(raw).decode(),
        **extra,
    }


def post(engine, n, context, queue="support"):
    return ingest.submit(
        {
            "queue": queue,
            "external_id": f"s{n}",
            "input": "read the scan",
            "output": "total 119",
            "confidence": 0.1,
            "context": context,
        },
        engine=engine,
    )


def test_stored_files_are_checked_at_ingest(engine, queue):
    kept = post(engine, 1, [source(PNG, "image/png"), source(PDF, "application/pdf")])
    got = items.get(kept.id, engine=engine).context
    assert base64.b64decode(got[0]["data"]) == PNG and got[1]["media_type"] == "application/pdf"
    bad = [
        (source(PNG, "image/svg+xml"), "media_type must be one of"),
        (source(PNG, "application/pdf"), "is not a application/pdf file"),
        (source(b"<svg onload=alert(1)>", "image/png"), "is not a image/png file"),
        ({"title": "x", "media_type": "image/png"}, "give the file as base64 data"),
        ({"title": "x", "media_type": "image/png", "data": "not base64!!"}, "not base64"),
        (source(PNG + b"\0" * MAX_SOURCE_BYTES, "image/png"), "KiB decoded"),
    ]
    for n, (ctx, why) in enumerate(bad, 2):
        with pytest.raises(ValidationFailed) as e:
            post(engine, n, [ctx])
        assert why in str(e.value.errors), (why, e.value.errors)
    assert items.count(items.ItemFilter(queues=["support"]), engine=engine) == 1


def test_a_queue_that_redacts_refuses_files(engine):
    queues.create("private", {"threshold": 0.8, "redaction": ["email"]}, engine=engine)
    with pytest.raises(ValidationFailed) as e:
        post(engine, 1, [source(PNG, "image/png")], queue="private")
    assert "cannot be checked" in e.value.errors[0]["msg"]


def test_the_review_page_shows_the_image_and_both_pages_offer_the_pdf(seeded):  # noqa: F811
    engine = seeded
    post(engine, 9, [source(PNG, "image/png"), source(PDF, "application/pdf")])
    at = page_app("review_page")
    at.run()
    at.session_state["rq_queue"] = "support"
    # The item with the file is the least confident: claimed first.
    at.run()
    while at.session_state["rq_item"]["external_id"] != "s9":
        button(at, "Skip").click().run()
    assert not at.exception
    assert len([e for e in _walk(at._tree) if getattr(e, "type", "") == "image"]) == 1
    assert any("stored PDF" in t.value for t in at.text)
    # Under the form (a form holds no download button), without a rerun on a click.
    pdfs = at.get("download_button")
    assert [d.label.split(" (")[0] for d in pdfs] == ["Download the PDF of source 2"]
    assert pdfs[0].proto.ignore_rerun
    browse = AppTest.from_function(
        _browse_detail, args=(at.session_state["rq_item"]["id"],), default_timeout=30
    )
    browse.run()
    assert not browse.exception, [x.value for x in browse.exception]
    assert any(d.label.startswith("Download the PDF of source 2") for d in browse.get("download_button"))


def _browse_detail(item_id: str) -> None:
    from reviewqueue.ui import browse_page

    browse_page._detail(item_id)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)
