"""Admin: queues and thresholds, users, tokens, webhooks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from reviewqueue import clock, queues, tokens, users, webhooks
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui.common import engine, is_admin, user
from reviewqueue.vocab import Role, Scope, Status


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.replace(",", "\n").splitlines() if x.strip()]


def render() -> None:
    if not is_admin():  # the page is not offered to reviewers; this guards direct calls
        st.error("Admins only.")
        return
    st.header("Admin")
    eng = engine()
    t_queues, t_users, t_tokens, t_hooks = st.tabs(["Queues", "Users", "Tokens", "Webhooks"])
    with t_queues:
        overview = queues.overview(engine=eng)
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "queue": q.name,
                        "threshold": q.threshold,
                        "audit rate": q.audit_rate,
                        "lease s": q.lease_seconds,
                        "labels": ", ".join(q.labels),
                        "label thresholds": str(q.label_thresholds),
                        "reject reasons": ", ".join(q.reject_reasons),
                        "pending": q.counts.get(Status.PENDING, 0),
                    }
                    for q in overview
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        names = [q.name for q in overview]
        target = st.selectbox("Queue to edit", ["(new queue)", *names])
        current = next((q for q in overview if q.name == target), None)
        with st.form("queue-form"):
            name = st.text_input(
                "Name", "" if current is None else current.name, disabled=current is not None
            )
            threshold = st.number_input("Threshold", 0.0, 1.0, current.threshold if current else 0.8, 0.01)
            audit = st.number_input(
                "Audit rate", 0.0, 1.0, current.audit_rate if current else 0.02, 0.005, format="%.3f"
            )
            lease = st.number_input("Lease seconds", 10, 86400, current.lease_seconds if current else 600)
            labels = st.text_area(
                "Labels (one per line, for classification)", "\n".join(current.labels) if current else ""
            )
            label_thr = st.text_area(
                "Label thresholds (label=value per line)",
                "\n".join(f"{k}={v}" for k, v in (current.label_thresholds if current else {}).items()),
            )
            reasons = st.text_area(
                "Reject reasons (one per line)",
                "\n".join(current.reject_reasons) if current else "incorrect\nharmful\nother",
            )
            save = st.form_submit_button("Save queue", type="primary")
        if save:
            try:
                thr = {}
                for line in _lines(label_thr):
                    k, _, v = line.partition("=")
                    thr[k.strip()] = float(v)
                settings = {
                    "threshold": threshold,
                    "audit_rate": audit,
                    "lease_seconds": int(lease),
                    "labels": _lines(labels),
                    "label_thresholds": thr,
                    "reject_reasons": _lines(reasons),
                }
                queues.upsert(
                    current.name if current else name.strip(), settings, actor=user()["name"], engine=eng
                )
                st.success("Queue saved.")
            except ValueError:
                st.error("Label thresholds take one label=value per line, e.g. billing=0.9")
            except ReviewQueueError as exc:
                st.error(str(exc))
    with t_users:
        st.dataframe(
            pd.DataFrame(
                [
                    {"name": u.name, "role": u.role, "email": u.email, "active": u.active}
                    for u in users.all_users(engine=eng)
                ]
            ),
            hide_index=True,
        )
        with st.form("user-form"):
            uname = st.text_input("New user name")
            role = st.selectbox("Role", list(Role))
            email = st.text_input("E-mail (optional, for single sign-on)")
            pw = st.text_input("Initial password", type="password")
            add = st.form_submit_button("Add user")
        if add:
            try:
                users.add(
                    uname.strip(),
                    role=role,
                    password=pw,
                    email=email.strip() or None,
                    actor=user()["name"],
                    engine=eng,
                )
                st.success("User added.")
            except ReviewQueueError as exc:
                st.error(str(exc))
        active = [u.name for u in users.all_users(engine=eng) if u.active and u.name != user()["name"]]
        who = st.selectbox("Deactivate user", active, index=None)
        if who and st.button("Deactivate"):
            users.update(who, active=False, actor=user()["name"], engine=eng)
            st.success("Deactivated.")
    with t_tokens:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": t.name,
                        "scope": t.scope,
                        "queues": ", ".join(t.queues) or "all",
                        "user": t.user,
                        "token": t.prefix + "...",
                        "state": "revoked" if t.revoked_at else "active",
                        "last used": clock.iso(t.last_used_at),
                    }
                    for t in tokens.all_tokens(engine=eng)
                ]
            ),
            hide_index=True,
        )
        with st.form("token-form"):
            tname = st.text_input("Token name")
            scope = st.selectbox("Scope", list(Scope))
            tqueues = st.multiselect("Limit to queues", queues.names(engine=eng))
            tuser = st.selectbox(
                "Acts as user (review scope)", [u.name for u in users.all_users(engine=eng)], index=None
            )
            make = st.form_submit_button("Create token")
        if make:
            try:
                _, plaintext = tokens.create(
                    tname.strip(), scope, queues=tqueues, user=tuser, actor=user()["name"], engine=eng
                )
                st.success("Token created. Copy it now: it is not shown again.")
                st.code(plaintext, language=None)
            except ReviewQueueError as exc:
                st.error(str(exc))
        live = [t.name for t in tokens.all_tokens(engine=eng) if not t.revoked_at]
        gone = st.selectbox("Revoke token", live, index=None)
        if gone and st.button("Revoke"):
            tokens.revoke(gone, actor=user()["name"], engine=eng)
            st.success("Revoked.")
    with t_hooks:
        st.dataframe(pd.DataFrame(webhooks.status(engine=eng)), hide_index=True, width="stretch")
        with st.form("hook-form"):
            hq = st.selectbox("Queue", queues.names(engine=eng))
            url = st.text_input("URL")
            addh = st.form_submit_button("Add webhook")
        if addh:
            try:
                hook = webhooks.add(hq, url.strip(), engine=eng)
                st.success("Webhook added. Its signing secret:")
                st.code(hook.secret, language=None)
            except ReviewQueueError as exc:
                st.error(str(exc))
