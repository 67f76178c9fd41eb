"""Review: read, press a key, read the next. Keyboard first:

A approve · Ctrl+Enter submit a correction · X reject · 1-9 pick a reject reason (or,
on classification queues, a label; there X first, then 1-9 picks the reason and
rejects) · Esc back · S skip · U undo.

Speed: the item panel is a fragment, and every action runs in the button's callback
before the fragment reruns, so one script run takes a decision and paints the next
item; the queue list and the counts come from short-lived caches, never a scan.

Leases: the app holds its item under a short lease (``REVIEWQUEUE_UI_LEASE_SECONDS``,
two minutes) renewed every 30 seconds while the page is open. A closed browser stops
renewing, so the item is back in the queue within two minutes; a reload or a second
tab gets the same item back (a claim returns the reviewer's own live lease), so the
item is never released just because a page went away; a reviewer idle for longer than
the queue's lease gets the item released and a notice. The queue being reviewed is in
the page's address (``/review?queue=support``).
"""

from __future__ import annotations

import functools
import html
import json
import time

import streamlit as st

from reviewqueue import cache, claims, clock, decisions, invisible, items, metrics, queues, store
from reviewqueue.errors import (
    Conflict,
    DeadlinePassed,
    LeaseLost,
    NotAssigned,
    ReviewQueueError,
    ValidationFailed,
)
from reviewqueue.schemas import ItemOut
from reviewqueue.textdiff import diff_lines
from reviewqueue.ui import fields_form, session
from reviewqueue.ui.common import (
    ROUTE_TEXT,
    age,
    as_text,
    engine,
    plain,
    review_details,
    show,
    stored_files,
    warn_hidden,
)
from reviewqueue.vocab import WAITING, QueueKind, Status, Verdict

HEARTBEAT_SECONDS = 30
#: The longest comment a decision takes (schemas.DecisionIn).
COMMENT_LIMIT = 10_000
#: The tallest a block of text grows before it scrolls, in pixels.
MAX_OUTPUT_HEIGHT, MAX_INPUT_HEIGHT = 320, 240
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
        ("rq_drafts", {}),
    ):
        ss.setdefault(key, default)
    return ss


def _hold(item: dict | None) -> None:
    ss = st.session_state
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


def _keep_drafts(item: dict) -> dict:
    """What the reviewer typed for this item (the editor, the comment), kept until the
    decision or an explicit discard: a box closed with Esc, or gone with the form, keeps
    its text. (Streamlit forgets a widget's value once the widget is not drawn.)"""
    ss = _state()
    draft = ss.rq_drafts.setdefault(item["id"], {})
    for field, key in (("edit", f"rq_edit_{item['id']}"), ("comment", f"rq_comment_{item['id']}")):
        if key in ss:
            draft[field] = ss[key]
    return draft


def _act(item_id: str, action: str, value: str | None = None) -> None:
    ss = _state()
    item = ss.rq_item
    if item is None or item["id"] != item_id:
        return  # pressed on the page of an item decided since (see _on)
    ss.rq_seen = time.monotonic()
    _keep_drafts(item)
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
    elif action == "unlock":  # the fields the model was sure of become editable too
        ss.rq_unlocked = item["id"]
    elif action == "edit":  # open the editor and the comment box, or close them (keeping the text)
        ss.rq_editing = not ss.rq_editing
    elif action == "discard":  # the explicit way to drop what was typed
        ss.rq_drafts.pop(item["id"], None)
        for key in (f"rq_edit_{item['id']}", f"rq_comment_{item['id']}"):
            ss.pop(key, None)
        ss.rq_editing = False
        ss.rq_preview = None
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
    if fields_form.applies(q, item):  # structured: the fields as typed
        try:
            corrected, changed = fields_form.collect(item)
        except ValueError as exc:
            _notice("error", str(exc))
            return
        if changed:
            final_output = corrected
            shown = (
                item["id"],
                json.dumps(corrected, sort_keys=True),
                fields_form.diff_lines(item, corrected, changed),
            )
            if ss.rq_preview != shown:
                ss.rq_preview = shown  # show the changes; the next press saves
                return
    elif not q.labels:  # free text: the correction is the edited output
        draft = ss.rq_drafts.get(item["id"], {}).get("edit", as_text(item["output"]))
        final_output = draft
        if not isinstance(item["output"], str):
            try:
                final_output = json.loads(draft)
            except ValueError as exc:
                _notice("error", f"The model's output is JSON, so the correction must be valid JSON: {exc}")
                return
        if final_output == item["output"] or draft == as_text(item["output"]):  # untouched (markers and all)
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
    comment = (ss.rq_drafts.get(item["id"], {}).get("comment") or "").strip()
    if len(comment) > COMMENT_LIMIT:
        _notice(
            "warning",
            f"The comment is {len(comment):,} characters; the limit is {COMMENT_LIMIT:,}. Shorten it (M), then decide.",
        )
        return
    decision = {
        **decision,
        "comment": comment or None,
        "seconds_spent": round(time.monotonic() - ss.get("rq_started", time.monotonic()), 1),
    }
    try:
        rv = decisions.decide(item["id"], session.name(), decision, engine=engine())
    except DeadlinePassed as exc:
        ss.rq_late_item = None
        _fallback_took(item, exc.action)
        _claim(q)
        return
    except LeaseLost as exc:
        draft = ss.rq_drafts.get(item["id"], {}).get("edit")
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
    if rv.after_deadline:
        _notice(
            "info",
            "The deadline had passed and the queue's fallback had answered the app; your decision is kept "
            "as a review made after the deadline (evaluation data, and the app is told).",
        )
    ss.rq_done += 1
    ss.rq_drafts.pop(item["id"], None)
    ss.rq_last_review = {
        "id": rv.id,
        "item_id": item["id"],
        "queue": item["queue"],
        "at": time.monotonic(),
        "verdict": rv.verdict,
    }
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


def _pick_queue(name: str | None) -> None:
    """Start on a queue (or, with ``None``, go back to choosing one): the item held is
    given back, and undo stays with the queue its decision was made in."""
    leave()
    ss = _state()
    ss.rq_queue = name
    ss.rq_skipped = []
    ss.rq_last_review = None
    if name:
        st.query_params["queue"] = name
    else:
        st.query_params.pop("queue", None)


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
        asked = st.query_params.get("queue")  # a reload, or a bookmarked /review?queue=...
        ss.rq_queue = asked if asked in overview else (names[0] if len(names) == 1 else None)
        if ss.rq_queue:
            st.query_params["queue"] = ss.rq_queue
    if ss.rq_queue is None:
        _queue_picker(names, overview)
        return
    q = overview[ss.rq_queue]
    waiting = {s: q.counts.get(s, 0) for s in WAITING}
    top = st.container(horizontal=True, vertical_alignment="center", gap="small")
    top.text(
        f"{ss.rq_queue}: {waiting[Status.PENDING]:,} pending · {waiting[Status.IN_REVIEW]:,} in review · "
        f"oldest waiting {age(q.oldest_pending_at)}",
        width="content",
    )
    if len(names) > 1:
        top.button("Change queue", shortcut="Q", on_click=_pick_queue, args=(None,), type="tertiary")
    if q.guidelines or q.description:
        with top.popover("Guidelines", type="tertiary"):
            if q.description:
                st.text(plain(q.description))
            if q.guidelines:
                # Written by an admin, not by a model or an app: markdown is allowed here.
                st.markdown(q.guidelines)
    _panel(ss.rq_queue)
    _heartbeat()


def _queue_picker(names: list[str], overview: dict) -> None:
    """Buttons, with number keys: picking a queue needs no mouse, and a picked button
    is gone at once, so no focus is left on it for Enter to press again."""
    st.text("Pick a queue: press its number.")
    row = st.container(horizontal=True, gap="small")
    for n, name in enumerate(names, 1):
        pending = overview[name].counts.get(Status.PENDING, 0)
        row.button(
            f"{_md(name)} ({pending:,} pending)",
            key=f"rq_pick_{name}",
            shortcut=str(n) if n <= 9 else None,
            on_click=_pick_queue,
            args=(name,),
        )


@st.fragment
def _panel(queue_name: str) -> None:
    ss = _state()
    q = _queue(queue_name)
    if ss.get("rq_paused"):
        if ss.rq_notice:
            st.info(ss.rq_notice[1])
        st.button("Continue reviewing", shortcut="N", type="primary", on_click=_resume)
        return
    if ss.rq_item is None or ss.rq_item["queue"] != queue_name:
        _claim(q)
    item = ss.rq_item
    if item is None:
        st.text(_progress(queue_name))
        _show_notice(st.empty())
        if ss.rq_skipped:
            st.info(f"Only items you skipped are left ({len(ss.rq_skipped)}).")
            st.button("Show skipped items again", on_click=_show_skipped_again)
        else:
            st.success("Nothing is waiting in this queue. New items appear here as they arrive.")
        st.button("Check again", shortcut="N")
        return
    # One form for every item (its buttons are keyed by their item: see _on); the action
    # bar first, the notices right under it (where the eye is after a key), then the item.
    with st.form("rq_decide", enter_to_submit=False, border=False):
        # Which item is on screen, for the keyboard script (ui/keys.py): keys typed ahead
        # of a page replacement never act on an item the reviewer has not seen. First in
        # the form, so it changes before the new item's text is drawn.
        st.html(f'<span data-rq-item="{html.escape(str(item["id"]))}" hidden></span>')
        _buttons(q, item)
        notice, lost = st.empty(), st.empty()
        _show_notice(notice)
        if ss.rq_lost_draft is not None:
            lost.text_area("Your unsaved text (copy it before leaving)", ss.rq_lost_draft, key="lost-draft")
        _show_item(q, item)
    # A form holds no download button: the PDFs among the sources are offered under it.
    stored_files(item["id"], item["context"], downloads=True, images=False)


def _show_notice(slot) -> None:
    ss = _state()
    if ss.rq_notice:
        kind, text = ss.rq_notice
        getattr(slot, kind)(text)  # our own wording; no model text goes here
        ss.rq_notice = None


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


def _height(value, limit: int) -> int | None:
    """A block's height: its content's, up to ``limit`` pixels (then it scrolls)."""
    text = as_text(value)
    lines = sum(1 + len(line) // 90 for line in text.splitlines() or [""])
    needed = 28 + 21 * lines
    return None if needed <= limit else limit


def _model(item: dict) -> str:
    return " ".join(x for x in (plain(item["model"]), plain(item["model_version"])) if x) or "-"


def _show_item(q, item: dict) -> None:
    ss = _state()
    label = (
        f" · predicted label {plain(item['predicted_label'])}" if item["predicted_label"] is not None else ""
    )
    st.text(
        f"{_progress(item['queue'])}  ·  model {_model(item)}  ·  "
        f"confidence {item['confidence']:.3f}  ·  {ROUTE_TEXT.get(item['route'], item['route'])}  ·  "
        f"waiting {age(item['created_at'])}"
    )
    if item.get("deadline_at"):
        _deadline(q, item)
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
    calls = q.kind == QueueKind.TOOL_CALL
    out, inp = st.columns(2, gap="medium")
    with out:
        if calls:
            # Approve runs the call as shown; a correction edits the arguments (the tool's
            # schema is checked before saving); reject: it does not run (toolcalls.py).
            st.text(
                "Proposed tool call (A runs it · E edits the arguments · X: do not run it; "
                "your comment goes to the agent as its message)"
            )
        else:
            st.text("Model output" + label)
        if fields_form.applies(q, item):
            fields_form.render(
                item,
                unlocked=ss.get("rq_unlocked") == item["id"],
                schema=item.get("output_schema") or q.output_schema,
            )
            preview = ss.rq_preview
            if preview and preview[0] == item["id"] and preview[2]:
                st.text("Your changes, field by field (Ctrl+Enter again saves)")
                st.code(preview[2], language=None, wrap_lines=True)
        else:
            show(item["output"], height=_height(item["output"], MAX_OUTPUT_HEIGHT))
        if q.show_previous_reviews and item.get("reviews_done"):
            _previous_reviews(item)
        if ss.rq_editing:
            _editor(q, item)
        else:
            kept = ss.rq_drafts.get(item["id"], {})
            if kept.get("comment"):
                st.text(f"Your comment (kept; M to change): {kept['comment']}")
            if kept.get("edit") not in (None, as_text(item["output"])):
                st.text("Your correction is kept: E to go on with it, D to discard it.")
    with inp:
        st.text("Conversation so far" if calls else "Input")
        show(item["input"], height=_height(item["input"], MAX_INPUT_HEIGHT))
        if item["context"]:
            with st.expander(
                f"Retrieved sources ({len(item['context'])})", expanded=len(item["context"]) <= OPEN_SOURCES
            ):
                for n, source in enumerate(item["context"], 1):
                    st.text(f"[{n}] {plain(source.get('title')) or '(untitled)'}")
                    if source.get("url"):
                        st.code(plain(source["url"]), language=None)  # shown, never fetched
                    show(source.get("text", ""), height=_height(source.get("text", ""), 160))
                stored_files(item["id"], item["context"], downloads=False)
    st.caption(f"item {item['id']}")


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
    kept = ss.rq_drafts.get(item["id"], {})
    if not q.labels and not fields_form.applies(q, item):
        original = as_text(item["output"])
        draft = st.text_area(
            "Corrected output",
            kept.get("edit", original),
            height=min(MAX_OUTPUT_HEIGHT, max(120, _height(original, 10_000) or 120)),
            key=f"rq_edit_{item['id']}",
        )
        preview = ss.rq_preview
        shown = preview[1] if preview and preview[0] == item["id"] else draft
        st.text("Your change (- removed, + added; Ctrl+Enter again saves)")
        # The reviewer's text is shown as the model's is: a pasted U+202E must not make
        # the diff read "Refund approved!".
        st.code(diff_lines(original, as_text(shown)) or "(no change yet)", language="diff", wrap_lines=True)
        hidden = invisible.found(shown)
        if hidden:
            st.warning(
                "Your correction contains invisible or direction-changing characters ("
                + ", ".join(sorted(hidden))
                + "), shown above as ⟨U+…⟩ markers. Remove them unless you mean them."
            )
    st.text_input(
        "Comment (optional; Enter does not submit)",
        kept.get("comment", ""),
        max_chars=COMMENT_LIMIT,
        key=f"rq_comment_{item['id']}",
    )


def _buttons(q, item: dict) -> None:
    """The action bar: one row, one shortcut hint on each button (Streamlit draws it)."""
    ss = _state()
    bar = st.container(horizontal=True, gap="small")
    on = functools.partial(_on, item["id"])
    if ss.rq_rejecting:
        st.warning("Reject: which reason? Press its number (Esc to go back).")
        _numbered(q.reject_reasons, "reason", ss.rq_pick.get("reason"), on)
        bar.form_submit_button("Back", shortcut="Escape", **on("back"))
        return
    bar.form_submit_button("Approve", type="primary", shortcut="A", **on("approve"))
    structured_form = fields_form.applies(q, item)
    submit = ss.rq_editing or q.labels or structured_form
    bar.form_submit_button(
        "Submit correction" if submit else "Correct",
        shortcut="Ctrl+Enter" if submit else "E",
        **(on("correct") if submit else on("edit", name="open")),
    )
    bar.form_submit_button("Reject", shortcut="X", **on("reject"))
    bar.form_submit_button("Skip", shortcut="S", **on("skip"))
    if structured_form and ss.get("rq_unlocked") != item["id"]:
        bar.form_submit_button("Unlock all fields", shortcut="L", **on("unlock"))
    if ss.rq_editing:
        bar.form_submit_button("Close (keeps your text)", shortcut="Escape", **on("edit", name="close"))
    else:
        bar.form_submit_button("Comment", shortcut="M", **on("edit", name="comment"))
    if ss.rq_drafts.get(item["id"]) or ss.rq_editing:
        bar.form_submit_button("Discard my text", shortcut="D", **on("discard"))
    last = ss.rq_last_review
    if (
        last
        and last.get("queue") == item["queue"]
        and time.monotonic() - last["at"] <= store.settings_of(engine()).undo_seconds
    ):
        bar.form_submit_button(f"Undo {last['verdict']}", shortcut="U", on_click=_undo)
    if q.labels:
        st.text("Label: press its number, then Ctrl+Enter")
        _numbered(q.labels, "label", ss.rq_pick.get("label") or item["predicted_label"], on)


def _on(item_id: str, action: str, value: str | None = None, *, name: str = "") -> dict:
    """A decision button's callback and key, bound to the item on screen.

    A key press can reach the page drawn for an item after that item was decided (typed
    ahead, or replayed by ui/keys.py while the next item is being drawn). Its trigger then
    names the old item's button (the key holds the item id): Streamlit either drops it or
    calls that button's callback with the old item's id, which _act ignores. Either way a
    key never decides an item the reviewer has not seen.
    """
    return {
        "on_click": _act,
        "args": (item_id, action, value),
        "key": f"rq_btn_{name or action}_{item_id}",
    }


def _numbered(choices: list[str], action: str, picked: str | None, on) -> None:
    """One button per choice, the first nine on the number keys, in one wrapping row."""
    row = st.container(horizontal=True, gap="small")
    for n, choice in enumerate(choices, 1):
        row.form_submit_button(
            _md(choice),
            shortcut=str(n) if n <= 9 else None,
            type="primary" if choice == picked else "secondary",
            **on(action, choice, name=f"{action}_{n}"),
        )


#: While the item on screen has a deadline: how often its time left is redrawn and the
#: item looked at (one read by key), so a reviewer is told as soon as the fallback decided it.
DEADLINE_TICK_SECONDS = 2
#: Without warn_seconds, the time left turns red this long before the deadline.
DEADLINE_RED_SECONDS = 60


def _fallback_took(item: dict, action: str | None) -> bool:
    """The item's deadline fallback decided it: say so and move on; but a reviewer in the
    middle of a correction keeps the item and their text (the editor's text reaches the
    server only with a decision): what they decide now is kept as a review made after
    the deadline. Whether the page must be drawn again."""
    ss = _state()
    if ss.get("rq_late_item") == item["id"]:
        return False  # told already
    what = {
        "accept": "accepted the model's output",
        "reject": "rejected it",
        "escalate": "moved it to another queue",
    }.get(action or "", "took it")
    if ss.get("rq_editing") and action != "escalate":
        ss.rq_late_item = item["id"]
        _notice(
            "warning",
            f"The deadline passed and the queue's fallback {what}. Finish your correction: it is kept as a "
            "review made after the deadline (the app is told). Or Skip it (Esc, then S) for the next item.",
        )
        return True
    _notice("warning", f"The deadline passed and the queue's fallback {what}; here is the next item.")
    _hold(None)
    return True


@st.fragment(run_every=DEADLINE_TICK_SECONDS)
def _deadline(q, item: dict) -> None:
    """The time left, red under the queue's warn_seconds; and, once the deadline's
    fallback took the item, a notice and the next item."""
    ss = _state()
    now = clock.now()
    left = (item["deadline_at"] - now).total_seconds()
    if left <= 0 or ss.get("rq_deadline_checked", 0) < time.monotonic() - DEADLINE_TICK_SECONDS / 2:
        ss.rq_deadline_checked = time.monotonic()
        state = items.holder_of(item["id"], engine=engine())
        if state is not None and (
            state.status not in WAITING
            or state.queue != item["queue"]
            or state.lease_holder != session.name()
        ):
            if (
                ss.get("rq_item")
                and ss.rq_item["id"] == item["id"]
                and _fallback_took(item, state.deadline_action)
            ):
                st.rerun(scope="app")
            return
    warn = q.warn_seconds or DEADLINE_RED_SECONDS
    text = f"Due in {clock.duration(left)}" if left > 0 else f"Deadline passed {clock.duration(-left)} ago"
    if left <= warn:
        st.markdown(f":red[**{text}**] (then: {q.on_deadline})")  # our own words only
    else:
        st.text(f"{text} (then: {q.on_deadline})")


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
    except DeadlinePassed as exc:
        if _fallback_took(item, exc.action):
            st.rerun()
    except (LeaseLost, Conflict) as exc:
        draft = ss.rq_drafts.get(item["id"], {}).get("edit")
        ss.rq_lost_draft = draft if draft not in (None, as_text(item["output"])) else None
        _notice("warning", f"{exc}. Your text is kept below until you leave this page.")
        _hold(None)
        st.rerun()
