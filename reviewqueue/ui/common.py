"""Helpers shared by the pages. Everything that came from a model or an app is
untrusted: it is shown with ``st.code`` / ``st.json`` / ``st.dataframe`` only, which
render text inert (no markdown, no HTML, no image fetches), and never in a label."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from reviewqueue import store
from reviewqueue.settings import get_settings
from reviewqueue.vocab import Role


@st.cache_resource
def _engine(url: str):
    engine = store.get_engine(url)
    store.upgrade(engine)
    return engine


def engine():
    return _engine(get_settings().database_url)


def as_text(value: Any) -> str:
    if value is None:
        return ""
    return (
        value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    )


def show(value: Any) -> None:
    """Untrusted text or JSON, inert."""
    if isinstance(value, (dict, list)):
        st.json(value)
    else:
        st.code(as_text(value), language=None, wrap_lines=True)


def age(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    seconds = (datetime.now(UTC) - dt).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def user():
    return st.session_state.get("user")


def is_admin() -> bool:
    u = user()
    return bool(u and u["role"] == Role.ADMIN)
