"""Streamlit entry point: ``streamlit run review_app.py``. The app lives in the package
(``reviewqueue/ui/``): its pages, and the routes beside them (sign-in, sessions, export
downloads), so an installed reviewqueue runs it from anywhere (``reviewqueue ui``)."""

import streamlit as st

from reviewqueue.ui.routes import SCRIPT, middleware, routes

app = st.App(str(SCRIPT), routes=routes, middleware=middleware)
