"""The review app: its pages (``app.py``) and the routes beside them (``routes.py``), as
one ASGI app that ``streamlit run`` finds by this assignment (``reviewqueue ui`` runs it)."""

import streamlit as st

from reviewqueue.ui.routes import SCRIPT, middleware, routes

app = st.App(str(SCRIPT), routes=routes, middleware=middleware)
