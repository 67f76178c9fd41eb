"""Admin: queues and thresholds, users and roles, tokens, webhooks, policies.

Every change reruns the page, so the tables always show what was just saved."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from reviewqueue import clock, policies, queues, redaction, tokens, users, webhooks
from reviewqueue.errors import ReviewQueueError
from reviewqueue.ui import session
from reviewqueue.ui.common import engine, plain
from reviewqueue.vocab import Consensus, DeadlineAction, QueueKind, Role, Scope, Status

_FLASH = "rq_admin_flash"


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.replace(",", "\n").splitlines() if x.strip()]


def _done(message: str) -> None:
    """Show ``message`` after the rerun that refreshes the tables."""
    st.session_state[_FLASH] = message
    st.rerun()


def _try(action, message: str) -> None:
    try:
        action()
    except ReviewQueueError as exc:
        st.error(str(exc))
        return
    _done(message)


def render() -> None:
    if not session.at_least(Role.ADMIN):  # the page is not offered to others; this guards direct calls
        st.error("Admins only.")
        return
    st.header("Admin")
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    # Tabs that remember which is open (and show it in the address): a save reruns the
    # page, and it used to jump back to Queues.
    t_queues, t_users, t_tokens, t_hooks, t_policies = st.tabs(
        ["Queues", "Users", "Tokens", "Webhooks", "Policies"],
        key="rq_admin_tab",
        on_change="rerun",
        bind="query-params",
    )
    with t_queues:
        _queues()
    with t_users:
        _users()
    with t_tokens:
        _tokens()
    with t_hooks:
        _webhooks()
    with t_policies:
        _policies()


def _queues() -> None:
    eng, me = engine(), session.name()
    overview = queues.overview(engine=eng)
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "queue": q.name,
                    "description": plain(q.description),
                    "threshold": q.threshold,
                    "audit rate": q.audit_rate,
                    "lease s": q.lease_seconds,
                    "labels": ", ".join(q.labels),
                    "label thresholds": str(q.label_thresholds),
                    "reject reasons": ", ".join(q.reject_reasons),
                    "reviews per item": f"{q.reviews_required} ({q.consensus})"
                    if q.reviews_required > 1
                    else "1",
                    "reviewers": ", ".join(q.reviewers) or "everyone",
                    "deadline": f"{q.deadline_seconds} s, then {q.on_deadline}"
                    if q.deadline_seconds
                    else "none",
                    "pending": q.counts.get(Status.PENDING, 0),
                    "disputed": q.counts.get(Status.DISPUTED, 0),
                    "timed out": q.counts.get(Status.TIMED_OUT, 0),
                }
                for q in overview
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    target = st.selectbox("Queue to edit", ["(new queue)", *[q.name for q in overview]])
    current = next((q for q in overview if q.name == target), None)
    with st.form(f"queue-form-{target}", enter_to_submit=False):
        name = st.text_input("Name", "" if current is None else current.name, disabled=current is not None)
        description = st.text_area(
            "Description (plain text: what the queue is for, shown above its guidelines)",
            current.description if current else "",
            height=68,
        )
        c1, c2, c3 = st.columns(3)
        threshold = c1.number_input("Threshold", 0.0, 1.0, current.threshold if current else 0.8, 0.01)
        audit = c2.number_input(
            "Audit rate", 0.0, 1.0, current.audit_rate if current else 0.02, 0.005, format="%.3f"
        )
        lease = c3.number_input("Lease seconds", 10, 86400, current.lease_seconds if current else 600)
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
        rules = current.redaction if current else []
        c4, c5 = st.columns(2)
        detectors = c4.multiselect(
            "Remove PII at ingest (before anything is stored)",
            list(redaction.DETECTORS),
            default=[r for r in rules if isinstance(r, str)],
        )
        custom = c4.text_area(
            "Custom redaction rules (NAME=regular expression per line)",
            "\n".join(f"{r['name']}={r['pattern']}" for r in rules if isinstance(r, dict)),
        )
        retention = c5.number_input(
            "Purge content after this many days (0: keep)",
            0,
            36_500,
            (current.retention_days or 0) if current else 0,
        )
        st.text("Several reviewers per item")
        c6, c7, c8 = st.columns(3)
        required = c6.number_input("Reviews per item (1-5)", 1, 5, current.reviews_required if current else 1)
        rule = c7.selectbox(
            "Consensus",
            list(Consensus),
            index=list(Consensus).index(Consensus(current.consensus)) if current else 0,
            help="majority: more than half agree; unanimous: all agree. Otherwise a lead settles it.",
        )
        previous = c8.checkbox(
            "Show reviewers the decisions already made (default: blind)",
            current.show_previous_reviews if current else False,
        )
        assigned = st.multiselect(
            "Reviewers of this queue (none: everyone)",
            [u.name for u in users.all_users(engine=eng) if u.active],
            default=current.reviewers if current else [],
        )
        st.text("Deadlines (for items that arrive after saving; an item may carry its own)")
        d1, d2, d3, d4 = st.columns(4)
        deadline = d1.number_input(
            "Deadline, seconds after arrival (0: none)",
            0,
            366 * 86400,
            (current.deadline_seconds or 0) if current else 0,
        )
        actions = list(DeadlineAction)
        on_deadline = d2.selectbox(
            "At the deadline",
            actions,
            index=actions.index(DeadlineAction(current.on_deadline)) if current else 0,
            help="keep: the item waits on, late; accept: the model's output stands; reject: rejected with "
            "the reason on the right; escalate: moved to the queue on the right.",
        )
        reason_choices = ["(none)", *(current.reject_reasons if current else [])]
        deadline_reason = d3.selectbox(
            "Reject reason (reject)",
            reason_choices,
            index=reason_choices.index(current.deadline_reason)
            if current and current.deadline_reason in reason_choices
            else 0,
        )
        others = ["(none)", *[q.name for q in overview if q.name != target]]
        escalate_to = d4.selectbox(
            "Escalate to (escalate)",
            others,
            index=others.index(current.escalate_to) if current and current.escalate_to in others else 0,
        )
        warn = d1.number_input(
            "Warn this many seconds before (0: no warning)",
            0,
            366 * 86400,
            (current.warn_seconds or 0) if current else 0,
        )
        st.text("Structured outputs and tool calls")
        s1, s2 = st.columns(2)
        kinds = list(QueueKind)
        kind = s1.selectbox(
            "Kind of outputs",
            kinds,
            index=kinds.index(QueueKind(current.kind)) if current else 0,
            help="text: any output; tool_call: agents' proposed tool calls, approved before they run.",
        )
        field_thr = s1.text_area(
            "Field thresholds (path=value per line, e.g. total=0.95)",
            "\n".join(f"{k}={v}" for k, v in (current.field_thresholds or {}).items()) if current else "",
        )
        schema_text = s2.text_area(
            "Output schema (JSON Schema; empty: none)",
            json.dumps(current.output_schema, indent=2) if current and current.output_schema else "",
            height=160,
        )
        guidelines = st.text_area(
            "Guidelines for reviewers (markdown, shown on the Review page)",
            (current.guidelines or "") if current else "",
            height=150,
        )
        save = st.form_submit_button("Save queue", type="primary")
    if save:
        try:
            thr = {k.strip(): float(v) for k, _, v in (line.partition("=") for line in _lines(label_thr))}
        except ValueError:
            st.error("Label thresholds take one label=value per line, e.g. billing=0.9")
            return
        try:
            fields = {k.strip(): float(v) for k, _, v in (line.partition("=") for line in _lines(field_thr))}
        except ValueError:
            st.error("Field thresholds take one path=value per line, e.g. total=0.95")
            return
        try:
            schema = json.loads(schema_text) if schema_text.strip() else {}
        except ValueError as exc:
            st.error(f"The output schema is not JSON: {exc}")
            return
        settings = {
            "description": description,
            "threshold": threshold,
            "audit_rate": audit,
            "lease_seconds": int(lease),
            "labels": _lines(labels),
            "label_thresholds": thr,
            "reject_reasons": _lines(reasons),
            "redaction": [
                *detectors,
                *(
                    {"name": k.strip(), "pattern": v.strip()}
                    for k, _, v in (line.partition("=") for line in custom.splitlines() if line.strip())
                ),
            ],
            "retention_days": int(retention),
            "reviews_required": int(required),
            "consensus": rule,
            "show_previous_reviews": previous,
            "reviewers": assigned,
            "guidelines": guidelines,
            "deadline_seconds": int(deadline),
            "on_deadline": on_deadline,
            "warn_seconds": int(warn),
            "kind": kind,
            "output_schema": schema,
            "field_thresholds": fields,
            **({"deadline_reason": deadline_reason} if deadline_reason != "(none)" else {}),
            **({"escalate_to": escalate_to} if escalate_to != "(none)" else {}),
        }
        queue_name = current.name if current else name.strip()
        _try(lambda: queues.upsert(queue_name, settings, actor=me, engine=eng), f"Queue {queue_name} saved.")


def _users() -> None:
    eng, me = engine(), session.name()
    accounts = users.all_users(engine=eng)
    st.dataframe(
        pd.DataFrame(
            [{"name": u.name, "role": u.role, "email": u.email, "active": u.active} for u in accounts]
        ),
        hide_index=True,
    )
    with st.form("user-form", clear_on_submit=True, enter_to_submit=False):
        st.text("New account")
        c1, c2 = st.columns(2)
        uname = c1.text_input("User name")
        role = c2.selectbox("Role", list(Role))
        email = c1.text_input("E-mail (optional, for single sign-on)")
        pw = c2.text_input("Initial password", type="password")
        add = st.form_submit_button("Add user")
    if add:
        _try(
            lambda: users.add(
                uname.strip(), role=role, password=pw, email=email.strip() or None, actor=me, engine=eng
            ),
            f"User {uname.strip()} added.",
        )
    others = [u for u in accounts if u.name != me]
    who = st.selectbox(
        "Manage an account", others, index=None, format_func=lambda u: u.name, placeholder="Pick a user"
    )
    if who is None:
        return
    c1, c2, c3 = st.columns(3)
    with c1, st.form(f"role-{who.name}", enter_to_submit=False):
        new_role = st.selectbox("Role", list(Role), index=list(Role).index(Role(who.role)))
        if st.form_submit_button("Change role"):
            _try(
                lambda: users.update(who.name, role=new_role, actor=me, engine=eng),
                f"{who.name} is now {new_role}.",
            )
    with c2, st.form(f"password-{who.name}", clear_on_submit=True, enter_to_submit=False):
        new_pw = st.text_input("New password", type="password")
        if st.form_submit_button("Reset password"):
            _try(
                lambda: users.update(who.name, password=new_pw, actor=me, engine=eng),
                f"Password of {who.name} reset.",
            )
    with c3:
        if who.active:
            if st.button("Deactivate", key=f"deactivate-{who.name}"):
                _try(
                    lambda: users.update(who.name, active=False, actor=me, engine=eng),
                    f"{who.name} deactivated.",
                )
        elif st.button("Reactivate", key=f"reactivate-{who.name}"):
            _try(
                lambda: users.update(who.name, active=True, actor=me, engine=eng), f"{who.name} reactivated."
            )


def _tokens() -> None:
    eng, me = engine(), session.name()
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
    with st.form("token-form", enter_to_submit=False):
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
                tname.strip(), scope, queues=tqueues, user=tuser, actor=me, engine=eng
            )
        except ReviewQueueError as exc:
            st.error(str(exc))
        else:
            st.success("Token created. Copy it now: it is not shown again.")
            st.code(plaintext, language=None)
    live = [t.name for t in tokens.all_tokens(engine=eng) if not t.revoked_at]
    gone = st.selectbox("Revoke a token", live, index=None)
    if gone and st.button("Revoke"):
        _try(lambda: tokens.revoke(gone, actor=me, engine=eng), f"Token {gone} revoked.")


def _webhooks() -> None:
    eng = engine()
    hooks = webhooks.status(engine=eng)
    st.dataframe(pd.DataFrame(hooks), hide_index=True, width="stretch")
    with st.form("hook-form", enter_to_submit=False):
        hq = st.selectbox("Queue", queues.names(engine=eng))
        url = st.text_input("URL")
        addh = st.form_submit_button("Add webhook")
    if addh:
        try:
            _, secret = webhooks.add(hq, url.strip(), actor=session.name(), engine=eng)
        except ReviewQueueError as exc:
            st.error(str(exc))
        else:
            st.success("Webhook added. Its signing secret (shown once):")
            st.code(secret, language=None)
    active = [h for h in hooks if h["active"]]
    drop = st.selectbox(
        "Remove a webhook", active, index=None, format_func=lambda h: f"#{h['id']} {h['queue']}"
    )
    if drop and st.button("Remove webhook"):
        _try(
            lambda: webhooks.remove(drop["id"], actor=session.name(), engine=eng),
            f"Webhook #{drop['id']} removed; its pending deliveries were cancelled.",
        )


def _policies() -> None:
    eng = engine()
    with st.form("policies", enter_to_submit=False):
        roles = st.multiselect(
            "Roles that may run week and range exports (admins always may; only admins run "
            "the incremental feeds)",
            list(Role),
            default=[Role(r) for r in policies.get("export_roles", engine=eng)],
        )
        save = st.form_submit_button("Save policies")
    if save:
        _try(
            lambda: policies.update(
                "export_roles", [str(r) for r in roles], actor=session.name(), engine=eng
            ),
            "Policies saved.",
        )
