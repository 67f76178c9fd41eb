"""The bare Streamlit round trip bench_ui.py compares the review app with: one button
(key A) that changes one text, nothing else."""

import streamlit as st

st.session_state.setdefault("n", 0)


def _next() -> None:
    st.session_state.n += 1


st.button("Next", on_click=_next, shortcut="A")
st.text(f"Item {st.session_state.n}")
