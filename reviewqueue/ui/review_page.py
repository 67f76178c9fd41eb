"""Review: read, press a key, read the next. Keyboard first:

A approve · Ctrl+Enter submit a correction · X reject · 1-9 pick a reject reason (or,
on classification queues, a label; there X first, then 1-9 picks the reason and
rejects) · Esc back · S skip · U undo.

Speed: the item panel is a fragment, and every action runs in the button's callback
before the fragment reruns, so one script run takes a decision and paints the next
item; the queue list and the counts come from short-lived caches, never a scan.

Leases: the app holds its item under a short lease (``REVIEWQUEUE_UI_LEASE_SECONDS``,
two minutes) renewed every 30 seconds while the page is open. A closed browser stops
renewing, so the item is back in the queue within two minutes; a reviewer idle for
longer than the queue's lease gets the item released and a notice; when Streamlit ends
a closed session, the item is released at once.
"""

from __future__ import annotations

import json
import time
import weakref

import streamlit as st

from reviewqueue import cache, claims, decisions, items, metrics, queues, store
from reviewqueue.errors import Conflict, LeaseLost, NotAssigned, ReviewQueueError, ValidationFailed
from reviewqueue.schemas import ItemOut
from reviewqueue.textdiff import diff_lines
from reviewqueue.ui import session
from reviewqueue.ui.common import age, as_text, engine, plain, review_details, show, warn_hidden
from reviewqueue.vocab import WAITING, Route, Status, Verdict

ROUTE_TEXT = {
    Route.BELOW_THRESHOLD: "confidence below the queue's threshold",
    Route.LABEL_THRESHOLD: "confidence below this label's threshold",
    Route.AUDIT_SAMPLE: "random audit sample (confidence above threshold)",
    Route.AUTO_ACCEPTED: "auto-accepted",
}
HEARTBEAT_SECONDS = 30
#: Few enough sources to show open.
OPEN_SOURCES = 3
_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~:$")


def _md(text: str) -> str:
    """Admin-written text (labels, reasons) made literal for a widget label, which
    Streamlit renders as markdown."""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in plain(text))


# --- state --------------------------------------------------------------------------


def _state():
    ss = st.session_state
    for key, default in (
        ("rq_item", None),
        ("rq_done", 0),
        ("rq_last_review", None),
        ("rq_notice", None),
        ("rq_lost_draft", None),
        ("rq_preview", None),
        ("rq_skipped", []),
        ("rq_pick", {}),
        ("rq_rejecting", False),
        ("rq_editing", False),
    ):
        ss.setdefault(key, default)
    return ss


class _Holder:
    """Lives in the session state; when Streamlit drops a closed session, it is
    collected and gives the reviewer's item back."""

    def __init__(self):
        self.item: tuple[str, str, object] | None = None  # (item id, reviewer, engine)
        weakref.finalize(self, _Holder._release, self.__dict__)

    @staticmethod
    def _release(state: dict) -> None:
        held = state.get("item")
        if held:
            try:
                claims.release(held[0], held[1], engine=held[2])
            except ReviewQueueError:
                pass


def _hold(item: dict | None) -> None:
    ss = st.session_state
    holder = ss.setdefault("rq_holder", _Holder())
    holder.item = (item["id"], session.name(), engine()) if item else None
    ss.rq_item = item
    ss.rq_started = time.monotonic()
    ss.rq_seen = time.monotonic()
    ss.rq_preview = None
    ss.rq_pick = {}
    ss.rq_rejecting = False
    ss.rq_editing = False


def leave() -> None:
    """Give back the item on screen (sign-out, queue change, session end)."""
    ss = st.session_state
    item = ss.get("rq_item")
    if item and session.user():
        try:
            claims.release(item["id"], session.name(), engine=engine())
        except ReviewQueueError:
            pass
    if "rq_item" in ss:
        _hold(None)
    ss["rq_lost_draft"] = None


def _ui_lease(queue) -> int:
    return min(queue.lease_seconds, store.settings_of(engine()).ui_lease_seconds)


def _claim(queue) -> None:
    ss = _state()
    try:
        item = claims.claim_next(
            queue.name,
            session.name(),
            exclude=ss.rq_skipped[-500:],
            lease_seconds=_ui_lease(queue),
            engine=engine(),
        )
    except NotAssigned as exc:  # the admin took this reviewer off the queue meanwhile
        _notice("warning", str(exc))
        item = None
    _hold(item.model_dump() if item else None)


def _notice(kind: str, text: str) -> None:
    st.session_state.rq_notice = (kind, text)


# --- actions (button callbacks: they run before the panel reruns) ---------------------


def _queue(name: str):
    """The queue's settings, at most a couple of seconds old (read on every action)."""
    eng = engine()
    return cache.fresh(
        ("queue", str(eng.url), name),
        store.settings_of(eng).counts_max_age,
        lambda: queues.get(name, engine=eng),
    )


def _act(action: str, value: str | None = None) -> None:
    ss = _state()
    item = ss.rq_item
    if item is None:
        return
    ss.rq_seen = time.monotonic()
    q = _queue(item["queue"])
    if action == "label":
        ss.rq_pick["label"] = value
    elif action == "reason":
        if ss.rq_rejecting:
            _decide(q, {"verdict": Verdict.REJECT, "reason": value})
        else:
            ss.rq_pick["reason"] = None if ss.rq_pick.get("reason") == value else value
    elif action == "reject":
        if ss.rq_pick.get("reason"):
            _decide(q, {"verdict": Verdict.REJECT, "reason": ss.rq_pick["reason"]})
        else:
            ss.rq_rejecting = True
    elif action == "back":
        ss.rq_rejecting = False
    elif action == "edit":  # open the editor and the comment box, or close them
        ss.rq_editing = not ss.rq_editing
    elif action == "approve":
        _decide(q, {"verdict": Verdict.APPROVE})
    elif action == "correct":
        _correct(q, item)
    elif action == "skip":
        try:
            claims.release(item["id"], session.name(), engine=engine())
        except ReviewQueueError:
            pass
        ss.rq_skipped.append(item["id"])
        _claim(q)


def _correct(q, item: dict) -> None:
    ss = _state()
    label = ss.rq_pick.get("label")
    changed_label = label if label is not None and label != item["predicted_label"] else None
    final_output = None
    if not q.labels:  # free text: the correction is the edited output
        draft = ss.get(f"rq_edit_{item['id']}", as_text(item["output"]))
        final_output = draft
        if not isinstance(item["output"], str):
            try:
                final_output = json.loads(draft)
            except ValueError as exc:
                _notice("error", f"The model's output is JSON, so the correction must be valid JSON: {exc}")
                return
        if final_output == item["output"]:
            final_output = None
        elif ss.rq_preview != (item["id"], draft):
            ss.rq_preview = (item["id"], draft)  # show the diff; the next press saves
            return
    if final_output is None and changed_label is None:
        what = "pick another label (keys 1-9)" if q.labels else "edit the output"
        _notice(
            "warning",
            f"Nothing changed yet: {what}, then submit the correction. An output that is right is "
            "approved (A).",
        )
        return
    _decide(q, {"verdict": Verdict.CORRECT, "final_output": final_output, "final_label": changed_label})


def _decide(q, decision: dict) -> None:
    ss = _state()
    item = ss.rq_item
    comment = (ss.get(f"rq_comment_{item['id']}") or "").strip()
    decision = {
        **decision,
        "comment": comment or None,
        "seconds_spent": round(time.monotonic() - ss.get("rq_started", time.monotonic()), 1),
    }
    try:
        rv = decisions.decide(item["id"], session.name(), decision, engine=engine())
    except LeaseLost as exc:
        draft = ss.get(f"rq_edit_{item['id']}")
        ss.rq_lost_draft = draft if draft not in (None, as_text(item["output"])) else None
        _notice("warning", f"{exc}. Your text is kept below until you leave this page.")
        _hold(None)
        _claim(q)
        return
    except ValidationFailed as exc:
        _notice("warning", _for_reviewers(exc))
        return
    except ReviewQueueError as exc:
        _notice("error", str(exc))
        return
    ss.rq_done += 1
    ss.rq_last_review = {"id": rv.id, "item_id": item["id"], "at": time.monotonic(), "verdict": rv.verdict}
    _claim(q)


def _for_reviewers(exc: ValidationFailed) -> str:
    """The domain's message, with what to press."""
    loc = (exc.errors[0]["loc"] if exc.errors else [None])[0]
    if loc == "reason":
        return "Pick a reject reason first: press its number (1-9)."
    return str(exc)


def _undo() -> None:
    ss = _state()
    last = ss.rq_last_review
    if not last:
        return
    try:
        item = decisions.undo(last["id"], session.name(), engine=engine())
    except ReviewQueueError as exc:
        _notice("warning", str(exc))
        ss.rq_last_review = None
        return
    current = ss.rq_item
    if current and current["id"] != item.id:
        try:
            claims.release(current["id"], session.name(), engine=engine())
        except ReviewQueueError:
            pass
    _hold(ItemOut.model_validate(item).model_dump())
    ss.rq_done -= 1
    ss.rq_last_review = None
    _notice("info", "Decision undone; the item is back with you.")


def _pick_queue() -> None:
    leave()
    ss = _state()
    ss.rq_queue = ss.get("rq_queue_pick")
    ss.rq_skipped = []


def _resume() -> None:
    st.session_state.rq_paused = False
    st.session_state.rq_notice = None


def _show_skipped_again() -> None:
    st.session_state.rq_skipped = []


# --- the page -----------------------------------------------------------------------


def render() -> None:
    ss = _state()
    me = session.name()
    every = queues.overview(engine=engine())
    # Only the queues this reviewer is assigned to (a queue without a list is everyone's).
    overview = {q.name: q for q in every if not q.reviewers or me in q.reviewers}
    if not overview:
        st.info(
            "You are not assigned to any queue; an admin can add you on the Admin page."
            if every
            else "There are no queues yet. An admin can create one on the Admin page."
        )
        return
    names = list(overview)
    if ss.get("rq_queue") not in overview:
        ss.rq_queue = names[0] if len(names) == 1 else None
    if "rq_queue_pick" not in ss or ss.rq_queue_pick != ss.rq_queue:
        ss.rq_queue_pick = ss.rq_queue
    # Buttons, not a text box: after a pick the keyboard belongs to the review keys.
    st.pills(
        "Queue",
        names,
        key="rq_queue_pick",
        on_change=_pick_queue,
        format_func=_md,
        label_visibility="collapsed",
    )
    if ss.rq_queue is None:
        st.caption("Pick a queue to start reviewing.")
        return
    q = overview[ss.rq_queue]
    waiting = {s: q.counts.get(s, 0) for s in WAITING}
    st.text(
        f"{ss.rq_queue}: {waiting[Status.PENDING]:,} pending · {waiting[Status.IN_REVIEW]:,} in review · "
        f"oldest waiting {age(q.oldest_pending_at)}"
    )
    if q.guidelines or q.description:
        with st.expander("Guidelines", expanded=False):
            if q.description:
                st.text(plain(q.description))
            if q.guidelines:
                # Written by an admin, not by a model or an app: markdown is allowed here.
                st.markdown(q.guidelines)
    _panel(ss.rq_queue)
    _heartbeat()


@st.fragment
def _panel(queue_name: str) -> None:
    ss = _state()
    q = _queue(queue_name)
    if ss.get("rq_paused"):
        if ss.rq_notice:
            st.info(ss.rq_notice[1])
        st.button("Continue reviewing · N", shortcut="N", type="primary", on_click=_resume)
        return
    if ss.rq_item is None or ss.rq_item["queue"] != queue_name:
        _claim(q)
    # Fixed slots, filled or left empty: elements that come and go (a notice, the undo
    # button) never shift the ones after them, which the browser would then rebuild.
    progress, notice, lost, undo = st.empty(), st.empty(), st.empty(), st.empty()
    progress.text(_progress(queue_name))
    if ss.rq_notice:
        kind, text = ss.rq_notice
        getattr(notice, kind)(text)  # our own wording; no model text goes here
        ss.rq_notice = None
    if ss.rq_lost_draft is not None:
        lost.text_area("Your unsaved text (copy it before leaving)", ss.rq_lost_draft, key="lost-draft")
    last = ss.rq_last_review
    if last and time.monotonic() - last["at"] <= store.settings_of(engine()).undo_seconds:
        undo.button(f"Undo last decision ({last['verdict']})", shortcut="U", on_click=_undo)
    item = ss.rq_item
    if item is None:
        if ss.rq_skipped:
            st.info(f"Only items you skipped are left ({len(ss.rq_skipped)}).")
            st.button("Show skipped items again", on_click=_show_skipped_again)
        else:
            st.success("Nothing is waiting in this queue. New items appear here as they arrive.")
        st.button("Check again", shortcut="N")
        return
    _show_item(q, item)


#: How often a reviewer's own figures are read again from the database (in between,
#: each decision of this session is counted here).
PROGRESS_SECONDS = 30


def _progress(queue_name: str) -> str:
    ss = _state()
    cached = ss.get("rq_progress")
    if cached is None or cached["queue"] != queue_name or time.monotonic() - cached["at"] > PROGRESS_SECONDS:
        cached = ss.rq_progress = {
            "queue": queue_name,
            "at": time.monotonic(),
            "done": ss.rq_done,
            **metrics.reviewer_progress(session.name(), queue_name, engine=engine()),
        }
    extra = ss.rq_done - cached["done"]  # decided here since the figures were read
    median = f"{cached['median_seconds']:.0f} s" if cached["median_seconds"] is not None else "-"
    return f"You: {cached['today'] + extra} today · {cached['week'] + extra} this week · median {median} per item"


def _show_item(q, item: dict) -> None:
    ss = _state()
    st.text(
        f"Item {item['id']}  ·  model {plain(item['model']) or '-'} {plain(item['model_version'])}  ·  "
        f"confidence {item['confidence']:.3f}  ·  {ROUTE_TEXT.get(item['route'], item['route'])}  ·  "
        f"waiting {age(item['created_at'])}"
    )
    with st.empty():  # a slot, whether or not this item needs the warning
        warn_hidden(
            item["input"],
            item["output"],
            item["context"],
            item["model"],
            item["model_version"],
            item["predicted_label"],
            item["metadata"],
        )
    left, right = st.columns(2, gap="medium")
    with left:
        st.text("Input")
        show(item["input"], height=260)
        if item["context"]:
            with st.expander(
                f"Retrieved sources ({len(item['context'])})", expanded=len(item["context"]) <= OPEN_SOURCES
            ):
                for n, source in enumerate(item["context"], 1):
                    st.text(f"[{n}] {plain(source.get('title')) or '(untitled)'}")
                    if source.get("url"):
                        st.code(plain(source["url"]), language=None)
                    show(source.get("text", ""), height=160)
    with right:
        # One form for every item, so its buttons update in place. The text fields (the
        # editor, the comment) appear only when asked for (E): building text widgets
        # was most of what a decision cost the browser, and a key pressed after a
        # decision can then never land in the previous item's editor.
        with st.form("rq_decide", enter_to_submit=False, border=False):
            _buttons(q, item)
            label = (
                f" · predicted label: {plain(item['predicted_label'])}"
                if item["predicted_label"] is not None
                else ""
            )
            st.text("Model output" + label)
            show(item["output"], height=200)
            if q.show_previous_reviews and item.get("reviews_done"):
                _previous_reviews(item)
            if ss.rq_editing:
                _editor(q, item)


def _previous_reviews(item: dict) -> None:
    """What the reviewers before this one decided (queues that are not blind)."""
    ss = _state()
    cached = ss.get("rq_previous")
    if cached is None or cached[0] != item["id"]:
        earlier = [r for r in items.get(item["id"], engine=engine()).reviews if r.undone_at is None]
        cached = ss.rq_previous = (item["id"], earlier)
    lines = []
    for r in cached[1]:
        parts = [f"{plain(r.reviewer)}: {r.verdict}", *review_details(r)]
        if r.verdict == Verdict.CORRECT and r.final_output is not None and r.final_label is None:
            parts.append("correction: " + as_text(r.final_output))
        lines.append(" · ".join(parts))
    st.text("Decisions so far")
    st.code("\n".join(lines), language=None, wrap_lines=True)


def _editor(q, item: dict) -> None:
    ss = _state()
    if not q.labels:
        edit, diff = st.columns(2)
        original = as_text(item["output"])
        draft = edit.text_area("Corrected output", original, height=170, key=f"rq_edit_{item['id']}")
        with diff:
            st.text("Your change (- removed, + added)")
            preview = ss.rq_preview
            shown = preview[1] if preview and preview[0] == item["id"] else draft
            st.code(
                diff_lines(original, shown) or "(no change yet)", language="diff", wrap_lines=True, height=170
            )
    st.text_input("Comment (optional; Enter does not submit)", key=f"rq_comment_{item['id']}")


def _buttons(q, item: dict) -> None:
    ss = _state()
    c = [st.container(horizontal=True, gap="small")] * 5  # one row: one container, not five columns
    c[0].form_submit_button(
        "Approve · A", type="primary", shortcut="A", width="stretch", on_click=_act, args=("approve",)
    )
    c[1].form_submit_button(
        "Submit correction · Ctrl+Enter" if ss.rq_editing or q.labels else "Correct · E",
        shortcut="Ctrl+Enter" if ss.rq_editing or q.labels else "E",
        width="stretch",
        on_click=_act,
        args=("correct" if ss.rq_editing or q.labels else "edit",),
    )
    c[2].form_submit_button("Reject · X", shortcut="X", width="stretch", on_click=_act, args=("reject",))
    c[3].form_submit_button("Skip · S", shortcut="S", width="stretch", on_click=_act, args=("skip",))
    c[4].form_submit_button(
        "Close editor · Esc" if ss.rq_editing and not ss.rq_rejecting else "Comment · M",
        shortcut="Escape" if ss.rq_editing and not ss.rq_rejecting else "M",
        width="stretch",
        on_click=_act,
        args=("edit",),
    )
    picking_reasons = ss.rq_rejecting or not q.labels
    if q.labels and not ss.rq_rejecting:
        st.text("Label (the correction is the label): press its number, then Ctrl+Enter")
        _numbered(q.labels, "label", ss.rq_pick.get("label") or item["predicted_label"])
    if picking_reasons:
        if ss.rq_rejecting:
            st.warning("Reject: which reason? Press its number (Esc to go back).")
        else:
            st.text("Reject reason: press its number, then X")
        _numbered(q.reject_reasons, "reason", ss.rq_pick.get("reason"))
        back = st.empty()  # a slot, so the output below never moves
        if ss.rq_rejecting:
            back.form_submit_button("Back · Esc", shortcut="Escape", on_click=_act, args=("back",))


def _numbered(choices: list[str], action: str, picked: str | None) -> None:
    """One button per choice, the first nine on the number keys, in one wrapping row."""
    row = st.container(horizontal=True, gap="small")
    for n, choice in enumerate(choices, 1):
        row.form_submit_button(
            f"{_md(choice)}{f' · {n}' if n <= 9 else ''}",
            shortcut=str(n) if n <= 9 else None,
            type="primary" if choice == picked else "secondary",
            on_click=_act,
            args=(action, choice),
        )


@st.fragment(run_every=HEARTBEAT_SECONDS)
def _heartbeat() -> None:
    """While the page is open: renew the lease, or give the item back when the reviewer
    has been idle longer than the queue's lease."""
    ss = _state()
    item = ss.get("rq_item")
    if not item or not session.user():
        return
    q = _queue(item["queue"])
    idle = time.monotonic() - ss.get("rq_seen", time.monotonic())
    try:
        if idle > q.lease_seconds:
            claims.release(item["id"], session.name(), engine=engine())
            _hold(None)
            _notice("info", f"You were away for {int(idle // 60)} min, so your item went back to the queue.")
            ss.rq_paused = True
            st.rerun()
        claims.renew(item["id"], session.name(), lease_seconds=_ui_lease(q), engine=engine())
    except (LeaseLost, Conflict) as exc:
        draft = ss.get(f"rq_edit_{item['id']}")
        ss.rq_lost_draft = draft if draft not in (None, as_text(item["output"])) else None
        _notice("warning", f"{exc}. Your text is kept below until you leave this page.")
        _hold(None)
        st.rerun()
