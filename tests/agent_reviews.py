"""What the agent-framework tests share: the refunds tool-call queue and fifty reviewers'
decisions (60% approve, 25% edit, 15% reject) made over the API."""

from __future__ import annotations

from reviewqueue import queues


def refunds_queue(engine):
    return queues.create(
        "refunds",
        {"kind": "tool_call", "threshold": 0.9, "audit_rate": 0.0, "reject_reasons": ["unsafe", "wrong"]},
        engine=engine,
    )


def decide_fifty(reviewer, number_of) -> dict[int, tuple[str, dict | None]]:
    """Claim and decide every call of the refunds queue: calls 0-29 approved, 30-41 edited
    (half the amount), 42-49 rejected with a message. ``number_of(item)`` is the call's
    number; returns {number: (action, edited arguments)}."""
    plan = {}
    while (item := reviewer.claim("refunds")) is not None:
        n = number_of(item)
        if n < 30:
            reviewer.decide(item.id, "approve")
            plan[n] = ("approve", None)
        elif n < 42:
            edited = {"order_id": f"o-{n}", "amount": (10 + n) / 2}
            reviewer.decide(item.id, "correct", final_output={"tool": "refund", "arguments": edited})
            plan[n] = ("edit", edited)
        else:
            reviewer.decide(
                item.id, "reject", reason="unsafe", comment=f"No refund for o-{n}: ask for a photo."
            )
            plan[n] = ("reject", None)
    return plan


def expected_runs() -> list[tuple[str, float]]:
    """The tool runs fifty decided calls must cause, each once."""
    return sorted(
        [(f"o-{n}", 10.0 + n) for n in range(30)] + [(f"o-{n}", (10 + n) / 2) for n in range(30, 42)]
    )
