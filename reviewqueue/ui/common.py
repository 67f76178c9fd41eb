"""Helpers shared by the pages.

Everything a model or an app supplied is untrusted: it is shown with ``st.code`` /
``st.dataframe`` / ``st.text`` only, which render text inert (no markdown, no HTML, no
image fetches), never in a widget label, and always through :func:`invisible.reveal`,
so direction controls and zero-width characters are shown as ``⟨U+202E⟩`` instead of
silently reordering what the reviewer reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from reviewqueue import cluster, invisible, store
from reviewqueue.settings import get_settings
from reviewqueue.vocab import Route


@st.cache_resource
def _engine(url: str):
    engine = store.get_engine(url)
    store.upgrade(engine)
    cluster.check_key(engine=engine)  # another host's key: refuse, saying what to set
    return engine


def engine():
    return _engine(get_settings().database_url)


#: Why an item was routed, in words.
ROUTE_TEXT = {
    Route.BELOW_THRESHOLD: "confidence below the queue's threshold",
    Route.LABEL_THRESHOLD: "confidence below this label's threshold",
    Route.FIELD_THRESHOLD: "a field's confidence below its threshold",
    Route.AUDIT_SAMPLE: "random audit sample (confidence above threshold)",
    Route.AUTO_ACCEPTED: "auto-accepted",
}


def busiest_first(overview, *, several_reviews: bool = False) -> tuple[list[str], int]:
    """Queue names and the index of the one to open first: the queue with the most
    items (with ``several_reviews``, among those that take several reviews per item, if
    any), not the first by name, which may well be empty."""
    names = [q.name for q in overview]
    if not names:
        return names, 0
    pool = [q for q in overview if q.reviews_required > 1] if several_reviews else []
    best = max(pool or overview, key=lambda q: sum(q.counts.values()))
    return names, names.index(best.name)


def as_text(value: Any) -> str:
    """Untrusted text or JSON as displayable text, hidden characters revealed."""
    if value is None:
        return ""
    text = (
        value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    )
    return invisible.reveal(text)


def show(value: Any, *, height: int | None = None) -> None:
    """Untrusted text or JSON, inert, in a block that scrolls past ``height`` pixels."""
    if height is None:
        st.code(as_text(value), language=None, wrap_lines=True)
    else:  # one element, not a scrolling container around one
        st.code(as_text(value), language=None, wrap_lines=True, height=height)


def plain(value: Any) -> str:
    """A short untrusted value (a model name, a label) for ``st.text``."""
    return "" if value is None else invisible.reveal(str(value))


def review_details(review) -> list[str]:
    """A decision's label, reason and comment, as short inert lines ("reason tone")."""
    named = (("label", review.final_label), ("reason", review.reason), ("comment", review.comment))
    return [f"{name} {plain(value)}" for name, value in named if value]


def warn_hidden(*values: Any) -> None:
    """A warning naming the hidden characters in ``values``, if there are any."""
    found = invisible.found(*values)
    if found:
        st.warning(
            "This item contains invisible or direction-changing characters ("
            + ", ".join(sorted(found))
            + "); they are shown as ⟨U+…⟩ markers. The text may not read the way it looks elsewhere."
        )


def age(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    seconds = (datetime.now(UTC) - dt).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1024 else f"{n // 1024:,} KB"


def stored_files(item_id: str, context: list, *, downloads: bool, images: bool = True) -> None:
    """The files an item's sources carry as stored content (schemas.ContextSource, checked
    at ingest: an image or a PDF whose bytes are what its type says): images drawn from
    those bytes (unless ``images`` is false); PDFs offered for download where a button may
    stand (not in a form), else named. Nothing is fetched from anywhere; a download is
    served as an attachment and does not rerun the page."""
    import base64

    for n, source in enumerate(context or [], 1):
        data = source.get("data") if isinstance(source, dict) else None
        if not data:
            continue
        kind = source.get("media_type") or ""
        if kind.startswith("image/") and not images:
            continue
        raw = base64.b64decode(data)
        if kind.startswith("image/"):
            st.image(raw, caption=f"source {n}: stored image, {_size(len(raw))}", width="stretch")
        elif downloads:
            st.download_button(
                f"Download the PDF of source {n} ({_size(len(raw))})",
                raw,
                file_name=f"source-{n}.pdf",
                mime="application/pdf",
                key=f"rq_pdf_{item_id}_{n}",
                on_click="ignore",
            )
        else:
            st.text(f"source {n}: a stored PDF ({_size(len(raw))}): its download is below the item")
