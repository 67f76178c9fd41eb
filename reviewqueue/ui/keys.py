"""The keyboard path, in the browser: what Streamlit's shortcuts alone do not do.

- ``E`` and ``M`` open the correction and the comment box (Streamlit's shortcuts); this
  puts the caret at the end of the box as soon as it appears, and what the reviewer
  types in between (before the box is there) goes into the box, never to the shortcuts:
  a reviewer who types straight after ``E`` must not approve with the ``A`` of "Actually".
- ``Esc`` in a text box leaves the box and keeps its text (a second ``Esc`` closes it,
  still keeping it: review_page keeps drafts per item).
- A clicked button never keeps the focus, so a later Enter cannot press it again.
- On a structured output (ui/fields_form.py), Tab and Shift+Tab go round the fields
  that take input, starting from the first flagged one wherever the focus was.
- Keys typed while the page is being replaced wait for the new page. Streamlit rebinds a
  button's shortcut when it draws it, and a key pressed during a run (or in the few
  milliseconds after it) reached the old page or nothing: "Q" then "1" at speed lost the
  "1", "2" then "Ctrl+Enter" lost the Enter. Held keys are replayed, in order, once the
  run is over and the page has settled; but held keys never act on an item the reviewer
  has not seen: when the page shows another item than the one on screen at the key
  press (``data-rq-item``, drawn by the review page), the keys are dropped.

The script is ours, fixed, with no data in it; it is installed once per page.
"""

from __future__ import annotations

import streamlit as st

SCRIPT = """
<script>
(() => {
  if (document.documentElement.dataset.rqKeys) return;
  document.documentElement.dataset.rqKeys = "on";  // also what tests wait for
  const BOXES = { e: 'textarea[aria-label="Corrected output"]', m: 'input[aria-label^="Comment"]' };
  let want = null, typed = "", until = 0;
  const isBox = (el) => !!el && (el.tagName === "TEXTAREA" ||
    (el.tagName === "INPUT" && !["button", "checkbox", "radio", "submit"].includes(el.type)));
  const plainKey = (ev) => !ev.ctrlKey && !ev.metaKey && !ev.altKey;
  function setValue(el, value) {
    const proto = el.tagName === "TEXTAREA" ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
    Object.getOwnPropertyDescriptor(proto, "value").set.call(el, value);
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }
  // Type-ahead across a page replacement (see the module's docstring).
  const SETTLE_MS = 150, RUN_WAIT_MS = 5000;
  const held = [], ours = new WeakSet();
  // awaitRun: a shortcut fired and its run has not started yet (a loaded server took over a
  // second to start one); a key replayed before then reached the old page. RUN_WAIT_MS
  // only bounds the wait should no run come.
  let busyUntil = 0, awaitRun = 0, runningNow = false, replayTimer = null;
  const app = () => document.querySelector('[data-testid="stApp"]');
  // The item last seen on screen: st.html redraws the marker on every run, and a key
  // pressed while it was briefly gone must not count as meant for "no item".
  let lastItem = "";
  const shownItem = () => {
    const m = document.querySelector("[data-rq-item]");
    if (m) lastItem = m.dataset.rqItem;
    return lastItem;
  };
  const busy = () => runningNow || Date.now() < busyUntil || Date.now() < awaitRun;
  // Once a key is held, the ones after it are too (typing after E keeps its order).
  const holdable = (ev) => (ev.key.length === 1 && !ev.altKey) || ev.key === "Escape" ||
    (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey || held.length > 0)) || (ev.key === "Backspace" && held.length > 0);
  let lastBox = null;  // the box land() gave the caret to
  function insert(el, text) {
    const a = el.selectionStart ?? el.value.length, b = el.selectionEnd ?? a;
    setValue(el, el.value.slice(0, a) + text + el.value.slice(b));
    try { el.setSelectionRange(a + text.length, a + text.length); } catch (_) { /* not a text box */ }
  }
  function backspace(el) {
    const a = el.selectionStart ?? el.value.length, b = el.selectionEnd ?? a;
    const from = a === b ? Math.max(0, a - 1) : a;
    setValue(el, el.value.slice(0, from) + el.value.slice(b));
    try { el.setSelectionRange(from, from); } catch (_) { /* not a text box */ }
  }
  const DECIDES = (k) => /^[axsud1-9]$/i.test(k.key) || (k.key === "Enter" && (k.ctrlKey || k.metaKey));
  function scheduleReplay(ms) {
    if (replayTimer) clearTimeout(replayTimer);
    replayTimer = setTimeout(replay, ms);
  }
  function replay() {
    replayTimer = null;
    if (!held.length) return;
    if (busy() && !want) { scheduleReplay(Math.max(20, busyUntil - Date.now())); return; }
    const k = held[0];
    const now = shownItem();
    const box = isBox(document.activeElement) ? document.activeElement : null;
    // Never decide an unseen item: a deciding key meant for another item than the one on
    // screen is dropped with the keys after it. Keys that only open a box (E, M) or go
    // into one are kept: the marker can lag the text it marks by a frame, and a comment
    // typed on seeing the new item must not be lost.
    const typing = want || (box && !k.ctrlKey && !k.metaKey);
    if (!typing && DECIDES(k) && now && k.item !== now) { held.length = 0; return; }
    if (box && !k.ctrlKey && !k.metaKey) {
      // Typed after E or M, before the box took the caret: into the box, in order.
      if (busy() && !want && box !== lastBox) { scheduleReplay(Math.max(20, busyUntil - Date.now())); return; }
      held.shift();
      if (k.key.length === 1) insert(box, k.key);
      else if (k.key === "Enter" && box.tagName === "TEXTAREA") insert(box, "\\n");
      else if (k.key === "Backspace") backspace(box);
      else if (k.key === "Escape") box.blur();
      if (held.length) scheduleReplay(0);
      return;
    }
    held.shift();
    const target = document.activeElement;
    if (k.key === " " && target && target.type === "checkbox") {  // a synthetic Space toggles nothing
      target.click();
      if (held.length) scheduleReplay(20);
      return;
    }
    const ev = new KeyboardEvent("keydown", { key: k.key, code: k.code, ctrlKey: k.ctrlKey, shiftKey: k.shiftKey,
      altKey: k.altKey, metaKey: k.metaKey, bubbles: true, cancelable: true });
    for (const p of ["keyCode", "which"]) Object.defineProperty(ev, p, { get: () => k.keyCode });
    ours.add(ev);
    (document.activeElement || document.body).dispatchEvent(ev);
    const up = new KeyboardEvent("keyup", { key: k.key, code: k.code, bubbles: true });
    Object.defineProperty(up, "keyCode", { get: () => k.keyCode });
    (document.activeElement || document.body).dispatchEvent(up);
    if (held.length) scheduleReplay(20);
  }
  const watch = () => {
    const el = app();
    if (!el) { setTimeout(watch, 50); return; }
    const seen = () => {
      const state = el.dataset.testScriptState;
      const was = runningNow;
      runningNow = state === "running" || state === "rerunRequested";
      if (runningNow) awaitRun = 0;
      if (was && !runningNow) { busyUntil = Date.now() + SETTLE_MS; scheduleReplay(SETTLE_MS); }
    };
    seen();
    new MutationObserver(seen).observe(el, { attributes: true, attributeFilter: ["data-test-script-state"] });
  };
  watch();
  // A structured output's fields (ui/fields_form.py): Tab and Shift+Tab go round the
  // boxes that take input (the flagged fields, or all once unlocked), from anywhere on
  // the page, selecting the text so typing replaces it.
  const FIELDS = 'input[aria-label^="Flagged field "]:not([disabled]), input[aria-label^="Field "]:not([disabled])';
  // The field last in focus (picking an option of a select box moves the focus away):
  // Tab goes on from there.
  let lastField = "", lastFieldItem = "";
  document.addEventListener("focusin", (ev) => {
    const el = ev.target;
    if (el && el.matches && el.matches(FIELDS)) { lastField = el.getAttribute("aria-label"); lastFieldItem = shownItem(); }
  }, true);
  function fieldTab(ev) {
    const boxes = Array.from(document.querySelectorAll(FIELDS));
    if (!boxes.length) return false;
    let at = boxes.indexOf(ev.target);
    if (at < 0 && isBox(ev.target)) return false;  // the comment box: Tab as usual
    if (at < 0 && lastField && lastFieldItem === shownItem()) {
      at = boxes.findIndex((b) => b.getAttribute("aria-label") === lastField);
    }
    const next = at < 0 ? (ev.shiftKey ? boxes.length - 1 : 0)
      : (at + (ev.shiftKey ? -1 : 1) + boxes.length) % boxes.length;
    ev.preventDefault(); ev.stopImmediatePropagation();
    boxes[next].focus();
    boxes[next].select();
    return true;
  }
  let landing = false;
  function land() {
    if (!want || landing) return;
    if (Date.now() > until) { want = null; typed = ""; return; }
    const el = document.querySelector(BOXES[want]);
    if (!el) return;
    // The box is drawn before its text is filled in: let the page settle first.
    landing = true;
    setTimeout(() => {
      landing = false;
      if (!want) return;
      el.focus();
      if (typed) setValue(el, el.value + typed);
      const end = el.value.length;
      try { el.setSelectionRange(end, end); } catch (_) { /* not a text box */ }
      want = null; typed = ""; lastBox = el;
      if (held.length) scheduleReplay(0);
    }, 120);
  }
  window.addEventListener("keydown", (ev) => {
    const k = ev.key;
    if (!ours.has(ev) && (!isBox(ev.target) || held.length) && !want && holdable(ev) && (held.length || busy())) {
      held.push({ key: k, code: ev.code, keyCode: ev.keyCode, ctrlKey: ev.ctrlKey, shiftKey: ev.shiftKey,
        altKey: ev.altKey, metaKey: ev.metaKey, item: shownItem() });
      ev.preventDefault(); ev.stopImmediatePropagation();
      scheduleReplay(busy() ? Math.max(20, busyUntil - Date.now()) : 20);
      return;
    }
    if (k === "Tab" && !ev.ctrlKey && !ev.metaKey && !ev.altKey && fieldTab(ev)) return;
    if (isBox(ev.target)) {
      if (k === "Escape") { ev.target.blur(); ev.preventDefault(); ev.stopImmediatePropagation(); }
      return;
    }
    if (want) {
      if (k.length === 1 && plainKey(ev)) { typed += k; ev.preventDefault(); ev.stopImmediatePropagation(); return; }
      if (k === "Backspace") { typed = typed.slice(0, -1); ev.preventDefault(); ev.stopImmediatePropagation(); return; }
      if (k === "Escape") { want = null; typed = ""; }
      if (k === "Enter") { ev.preventDefault(); ev.stopImmediatePropagation(); return; }
    }
    if (plainKey(ev) && "eEmM".includes(k) && k.length === 1) {
      want = k.toLowerCase(); typed = ""; until = Date.now() + 5000;
      setTimeout(land, 0);
    }
  }, true);
  new MutationObserver(land).observe(document.body, { childList: true, subtree: true });

  // A shortcut took the key (it prevents the default): its run starts soon; until then
  // the next keys are held too.
  // (In a text box or a select box only a Ctrl/Alt shortcut does; a plain key there that
  // the box took, Enter picking an option, starts nothing.)
  window.addEventListener("keydown", (ev) => {
    if (!ev.defaultPrevented || runningNow) return;
    if (isBox(ev.target) && !(ev.ctrlKey || ev.metaKey || ev.altKey)) return;
    awaitRun = Date.now() + RUN_WAIT_MS;
  });
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest && ev.target.closest("button");
    if (b) setTimeout(() => b.blur(), 0);
  }, true);
})();
</script>
"""


def install() -> None:
    st.html(SCRIPT, unsafe_allow_javascript=True)
