"""Realistic demo data: a support-reply queue (free text with retrieved sources) and a
ticket-triage queue (classification), a few hundred items, two demo accounts and a
demo API token.

The demo is always an explicit choice (``reviewqueue demo``, ``reviewqueue up --demo``).
Its passwords and its token are generated when the demo is created and shown that one
time, so no deployment ends up with well-known credentials."""

from __future__ import annotations

import random
import secrets

from sqlalchemy import select

from . import ingest, queues, store, tokens, users
from .models import ApiToken, Event, Queue
from .vocab import EventKind, Role, Scope, Status

ADMIN = "admin"  # the demo's admin account
DEMO_USERS = [(ADMIN, Role.ADMIN), ("reviewer", Role.REVIEWER)]
TOKEN = "demo"  # the demo's admin API token

_PRODUCTS = ["Starter plan", "Pro plan", "Team plan", "mobile app", "desktop app", "API"]
_QUESTIONS = [
    ("How do I reset my password on the {p}?", "password"),
    ("Can I get a refund for the {p}? I was charged twice this month.", "refund"),
    ("Why is the {p} so slow since yesterday's update?", "performance"),
    ("How do I export my data from the {p} to CSV?", "export"),
    ("Is there a discount for nonprofits on the {p}?", "pricing"),
    ("My invoice for the {p} shows the wrong VAT number. How do I fix it?", "invoice"),
    ("Does the {p} support single sign-on with Okta?", "sso"),
    ("How do I cancel the {p} before the renewal date?", "cancel"),
]
_SOURCES = {
    "password": (
        "Resetting your password",
        "Go to Settings > Security and choose 'Reset password'. A link valid for 30 minutes is e-mailed to you.",
    ),
    "refund": (
        "Refund policy",
        "Duplicate charges are refunded in full within 5-7 business days. Annual plans are refundable within 14 days.",
    ),
    "performance": (
        "Known issues",
        "Version 4.2 introduced a sync slowdown for workspaces over 10 GB; a fix ships in 4.2.1.",
    ),
    "export": (
        "Exporting data",
        "Admins can export any workspace from Settings > Data > Export. CSV and JSON are supported.",
    ),
    "pricing": (
        "Pricing FAQ",
        "Registered nonprofits get 50% off the Pro and Team plans. Apply from the billing page.",
    ),
    "invoice": (
        "Invoices and tax",
        "Update your tax ID under Billing > Company details; new invoices use it, past ones can be reissued on request.",
    ),
    "sso": (
        "Single sign-on",
        "SAML and OIDC single sign-on (Okta, Azure AD, Google) are available on the Team plan.",
    ),
    "cancel": (
        "Cancelling a subscription",
        "Cancel any time from Billing > Plan. You keep access until the end of the paid period.",
    ),
}
_GOOD = {
    "password": "You can reset it under Settings > Security > Reset password. We'll e-mail you a link that works for 30 minutes.",
    "refund": "Sorry about the double charge! Duplicate charges are refunded in full; you'll see the money back within 5-7 business days.",
    "performance": "Thanks for flagging this. Version 4.2 slowed syncing for large workspaces; version 4.2.1 fixes it and is rolling out now.",
    "export": "An admin can export the workspace from Settings > Data > Export and pick CSV.",
    "pricing": "Yes: registered nonprofits get 50% off Pro and Team. You can apply from the billing page.",
    "invoice": "Update the tax ID under Billing > Company details. New invoices will use it, and we can reissue past ones on request.",
    "sso": "Yes, Okta works through SAML or OIDC single sign-on, which is included in the Team plan.",
    "cancel": "You can cancel from Billing > Plan at any time and keep access until the end of the period you paid for.",
}
_BAD = {
    "password": "Passwords cannot be reset; please create a new account.",
    "refund": "Refunds are not possible under any circumstances.",
    "performance": "The app is not slow; please check your internet connection.",
    "export": "Data export is only available through our enterprise API for an extra fee.",
    "pricing": "We do not offer discounts. **Contact sales** for pricing ![badge](http://127.0.0.1:9/pixel.png)",
    "invoice": "VAT numbers cannot be changed after purchase. <b>Sorry!</b>",
    "sso": "SSO is available on all plans including Starter.",
    "cancel": "You need to call our support line to cancel.",
}
_TICKETS = [
    ("I was billed $49 but my plan is $29. Please fix.", "billing"),
    ("Refund request for order #{n}, charged twice.", "billing"),
    ("The export button does nothing in Firefox.", "bug"),
    ("App crashes when I open a board with 500+ cards.", "bug"),
    ("Login loop after enabling 2FA, can't get in.", "account"),
    ("Please change the owner of our workspace to maria@example.com", "account"),
    ("Would love a dark mode for the desktop app!", "feature_request"),
    ("Can you add Gantt charts?", "feature_request"),
    ("Do you have an office in Berlin?", "other"),
    ("Where can I find your security whitepaper?", "other"),
]
TICKET_LABELS = ["billing", "bug", "account", "feature_request", "other"]


def seed(*, n_support: int = 240, n_tickets: int = 260, engine=None, seed_value: int = 7) -> dict:
    """Create the demo queues, users, token and items. Idempotent: re-running adds
    nothing. Returns counts, and the ``logins`` ([(name, role, password)]) and ``token``
    created by this call: the only time they can be shown."""
    rng = random.Random(seed_value)
    existing = set(queues.names(engine=engine))
    if "support-replies" not in existing:
        queues.create(
            "support-replies",
            {
                "description": "Drafted replies to customer questions, grounded in help-centre articles",
                "threshold": 0.75,
                "audit_rate": 0.05,
                "lease_seconds": 600,
                "reject_reasons": ["incorrect", "unsupported_by_sources", "tone", "harmful", "off_topic"],
            },
            actor="demo",
            engine=engine,
        )
    if "ticket-triage" not in existing:
        queues.create(
            "ticket-triage",
            {
                "description": "Routing incoming tickets to the right team",
                "threshold": 0.7,
                "audit_rate": 0.03,
                "labels": TICKET_LABELS,
                "label_thresholds": {"billing": 0.85},
                "reject_reasons": ["ambiguous", "spam", "not_a_ticket"],
                # Two reviewers per ticket: the Adjudicate and Reviewers pages have
                # something to show (see _second_opinions).
                "reviews_required": 2,
                "guidelines": TRIAGE_GUIDELINES,
            },
            actor="demo",
            engine=engine,
        )

    items = []
    for i in range(n_support):
        template, topic = rng.choice(_QUESTIONS)
        product = rng.choice(_PRODUCTS)
        good = rng.random() < 0.7
        confidence = round(min(0.99, max(0.02, rng.gauss(0.78 if good else 0.45, 0.15))), 3)
        title, text = _SOURCES[topic]
        items.append(
            {
                "queue": "support-replies",
                "external_id": f"demo-reply-{i:04d}",
                "input": template.format(p=product),
                "output": _GOOD[topic] if good else _BAD[topic],
                "confidence": confidence,
                "model": "reply-drafter",
                "model_version": rng.choice(["2026-10-01", "2026-11-15"]),
                "context": [
                    {"title": title, "text": text, "url": f"https://help.example.com/articles/{topic}"}
                ],
                "metadata": {
                    "channel": rng.choice(["email", "chat", "web"]),
                    "customer_tier": rng.choice(["free", "paid"]),
                },
                "priority": 1 if rng.random() < 0.1 else 0,
            }
        )
    tickets_truth = {}
    for i in range(n_tickets):
        text, label = rng.choice(_TICKETS)
        tickets_truth[f"demo-ticket-{i:04d}"] = label
        right = rng.random() < 0.8
        predicted = label if right else rng.choice([x for x in TICKET_LABELS if x != label])
        confidence = round(min(0.99, max(0.05, rng.gauss(0.8 if right else 0.5, 0.14))), 3)
        items.append(
            {
                "queue": "ticket-triage",
                "external_id": f"demo-ticket-{i:04d}",
                "input": text.format(n=10000 + i),
                "output": predicted,
                "predicted_label": predicted,
                "confidence": confidence,
                "model": "triage-classifier",
                "model_version": "v3",
                "metadata": {"source": rng.choice(["email", "widget"])},
            }
        )
    if "support-replies" not in existing:  # history first: today's items stay for you
        _history(random.Random(seed_value + 1), engine)
    results = ingest.submit_many(items, actor="demo", engine=engine)
    if "ticket-triage" not in existing:
        _second_opinions(random.Random(seed_value + 2), tickets_truth, engine)
    logins = []
    for name, role in DEMO_USERS:
        if users.get(name, engine=engine) is None:
            password = secrets.token_urlsafe(12)
            users.add(name, role=role, password=password, actor="demo", engine=engine)
            logins.append((name, role, password))
    token = None
    if not any(t.name == TOKEN for t in tokens.all_tokens(engine=engine)):
        _, token = tokens.create(TOKEN, Scope.ADMIN, user=ADMIN, actor="demo", engine=engine)
    return {
        "items": sum(not r.duplicate for r in results),
        "pending": sum(r.status == Status.PENDING for r in results),
        "logins": logins,
        "token": token,
    }


#: Weeks of reviewed history the demo writes before today's items, so the Quality page
#: has audits to learn from (a curve, a recommendation, a version that got worse).
HISTORY_WEEKS = 4
HISTORY_PER_DAY = 60
#: The audit rate in force during the history: generous, as a team finding its threshold
#: would set it for a few weeks (the queue's own rate stays as configured).
HISTORY_AUDIT_RATE = 0.25


def _history(rng: random.Random, engine) -> None:
    """Four weeks of support replies arriving, routed and decided by two demo reviewers
    (correct answers approved, wrong ones rejected or corrected), the model upgraded
    halfway to a version that is wrong more often."""
    from datetime import timedelta

    from . import claims, clock, decisions

    start = clock.now() - timedelta(weeks=HISTORY_WEEKS)
    now = [start]
    rate = queues.get("support-replies", engine=engine).audit_rate
    truth: dict[str, tuple[bool, str]] = {}
    with clock.travelling(lambda: now[0]):
        queues.update("support-replies", {"audit_rate": HISTORY_AUDIT_RATE}, actor="demo", engine=engine)
        for day in range(HISTORY_WEEKS * 7):
            now[0] = start + timedelta(days=day, hours=9)
            version = "2026-10-01" if day < HISTORY_WEEKS * 7 // 2 else "2026-11-15"
            batch = []
            for i in range(HISTORY_PER_DAY):
                template, topic = rng.choice(_QUESTIONS)
                good = rng.random() < (0.78 if version == "2026-10-01" else 0.68)
                confidence = round(min(0.99, max(0.02, rng.gauss(0.8 if good else 0.55, 0.13))), 3)
                key = f"demo-history-{day:02d}-{i:03d}"
                truth[key] = (good, topic)
                title, text = _SOURCES[topic]
                batch.append(
                    {
                        "queue": "support-replies",
                        "external_id": key,
                        "input": template.format(p=rng.choice(_PRODUCTS)),
                        "output": _GOOD[topic] if good else _BAD[topic],
                        "confidence": confidence,
                        "model": "reply-drafter",
                        "model_version": version,
                        "context": [{"title": title, "text": text}],
                    }
                )
            ingest.submit_many(batch, actor="demo", engine=engine)
            # The same day, the reviewers clear what was queued.
            for n in range(10_000):
                now[0] = start + timedelta(days=day, hours=10, seconds=40 * n)
                who = ("maria", "omar")[n % 2]
                held = claims.claim_next("support-replies", who, engine=engine)
                if held is None:
                    break
                good, topic = truth[held.external_id]
                seconds = round(rng.uniform(15, 70), 1)
                if good:
                    decision = {"verdict": "approve", "seconds_spent": seconds}
                elif rng.random() < 0.6:
                    decision = {"verdict": "correct", "final_output": _GOOD[topic], "seconds_spent": seconds}
                else:
                    reason = rng.choice(["incorrect", "unsupported_by_sources", "tone"])
                    decision = {"verdict": "reject", "reason": reason, "seconds_spent": seconds}
                decisions.decide(held.id, who, decision, engine=engine)
        now[0] = clock.real_now()
        queues.update("support-replies", {"audit_rate": rate}, actor="demo", engine=engine)


TRIAGE_GUIDELINES = """\
**Pick the team that acts first.**

- *billing*: charges, refunds, invoices, plans
- *bug*: something that used to work and does not
- *account*: sign-in, passwords, users and roles
- *feature_request*: something the product does not do yet
- *other*: everything else; reject spam with *spam*
"""

#: Tickets the two demo reviewers triage twice each; some second opinions differ.
SECOND_OPINIONS = 40


def _second_opinions(rng: random.Random, truth: dict[str, str], engine) -> None:
    """maria and omar each decide the most urgent tickets (two reviews per item): most
    agree and become final, a few disagree and wait on the Adjudicate page."""
    from . import claims, decisions

    for _ in range(SECOND_OPINIONS):
        for who in ("maria", "omar"):
            held = claims.claim_next("ticket-triage", who, engine=engine)
            if held is None:
                return
            right = truth[held.external_id]
            if who == "omar" and rng.random() < 0.12:  # a second opinion that differs
                right = rng.choice([x for x in TICKET_LABELS if x != right])
            if right == held.predicted_label:
                decision = {"verdict": "approve"}
            else:
                decision = {"verdict": "correct", "final_label": right}
            decision["seconds_spent"] = round(rng.uniform(5, 25), 1)
            decisions.decide(held.id, who, decision, engine=engine)


def leftovers(*, engine=None) -> list[tuple[str, str]]:
    """The demo's accounts and token that still work, as ``(kind, name)``: a production
    database should have none."""
    found = []
    with store.read(engine) as tx:
        made = set(
            tx.session.scalars(
                select(Event.after["name"].as_string()).where(
                    Event.kind == EventKind.USER_CREATED, Event.actor == "demo"
                )
            )
        )
        token = tx.session.scalars(select(ApiToken).where(ApiToken.name == TOKEN)).first()
    for name, _ in DEMO_USERS:
        user = users.get(name, engine=engine)
        if name in made and user is not None and user.active:
            found.append(("user", name))
    if token is not None and token.revoked_at is None:
        found.append(("token", TOKEN))
    return found


def remove(*, actor: str, engine=None) -> list[tuple[str, str]]:
    """Deactivate the demo's accounts and revoke its token; the demo data stays."""
    gone = leftovers(engine=engine)
    for kind, name in gone:
        if kind == "user":
            users.update(name, active=False, actor=actor, engine=engine)
        else:
            tokens.revoke(name, actor=actor, engine=engine)
    return gone


def is_empty(*, engine=None) -> bool:
    """No queue exists yet: a fresh database."""
    with store.read(engine) as tx:
        return tx.session.scalars(select(Queue.name).limit(1)).first() is None
