"""The keyboard path, in the browser: what Streamlit's shortcuts alone do not do.

- ``E`` and ``M`` open the correction and the comment box (Streamlit's shortcuts); this
  puts the caret at the end of the box as soon as it appears, and what the reviewer
  types in between (before the box is there) goes into the box, never to the shortcuts:
  a reviewer who types straight after ``E`` must not approve with the ``A`` of "Actually".
- ``Esc`` in a text box leaves the box and keeps its text (a second ``Esc`` closes it,
  still keeping it: review_page keeps drafts per item).
- A clicked button never keeps the focus, so a later Enter cannot press it again.

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
      want = null; typed = "";
    }, 120);
  }
  window.addEventListener("keydown", (ev) => {
    const k = ev.key;
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
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest && ev.target.closest("button");
    if (b) setTimeout(() => b.blur(), 0);
  }, true);
})();
</script>
"""


def install() -> None:
    st.html(SCRIPT, unsafe_allow_javascript=True)
