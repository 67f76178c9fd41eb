"""Agreement between reviewers: Krippendorff's alpha against published figures, the
per-queue and per-reviewer report, and its API, CLI and Prometheus faces."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reviewqueue import agreement, cli, ingest, items, queues, review, users

from .conftest import item

APPROVE = {"verdict": "approve"}
REJECT = {"verdict": "reject", "reason": "incorrect"}

# Krippendorff, K. (2011). "Computing Krippendorff's Alpha-Reliability", Annenberg School
# for Communication, University of Pennsylvania, section C ("Nominal data, any number of
# observers, missing data"): 4 observers, 12 units, "." is a missing value. The paper
# works it through to alpha = 0.743.
KRIPPENDORFF_2011 = [
    "1 2 3 3 2 1 4 1 2 . . .",
    "1 2 3 3 2 2 4 1 2 5 . 3",
    ". 3 3 3 2 3 4 2 2 5 1 .",
    "1 2 3 3 2 4 4 1 2 5 1 .",
]


def _units(observers: list[str]) -> list[list[str]]:
    rows = [o.split() for o in observers]
    return [[r[u] for r in rows if r[u] != "."] for u in range(len(rows[0]))]


def test_alpha_reproduces_krippendorffs_worked_example():
    assert agreement.alpha(_units(KRIPPENDORFF_2011)) == pytest.approx(0.743, abs=0.0005)


def test_alpha_is_one_for_perfect_agreement_and_none_without_pairs():
    assert agreement.alpha([["a", "a"], ["b", "b", "b"], ["a", "a"]]) == 1.0
    assert agreement.alpha([["a"], ["b"]]) is None  # nothing pairable
    assert agreement.alpha([["a", "b"], ["b", "a"]]) < 0  # systematic disagreement


def test_bootstrap_interval_holds_the_estimate_and_is_reproducible():
    units = _units(KRIPPENDORFF_2011)
    a, p = agreement.intervals(units)
    assert a.low < a.estimate < a.high and p.low <= p.estimate <= p.high
    assert (a, p) == agreement.intervals(units)  # a fixed seed: the same report twice
    # Percent agreement: share of agreeing pairs per unit, averaged (unit 1: 3 of 3 pairs agree).
    assert agreement.intervals([["x", "x", "x"], ["x", "y"]])[1].estimate == pytest.approx(0.5)


@pytest.fixture
def pair(engine):
    """A queue that needs two decisions per item, two reviewers and a lead."""
    queues.create(
        "pair",
        {"threshold": 0.8, "audit_rate": 0.0, "reviews_required": 2, "reject_reasons": ["incorrect"]},
        engine=engine,
    )
    for name, role in (("ann", "reviewer"), ("bob", "reviewer"), ("lena", "lead")):
        users.add(name, role=role, password=f"{name}-password", engine=engine)
    return "pair"


def _decide_all(engine, queue: str, plan: list[tuple[dict, dict]]) -> list[str]:
    ids = [r.id for r in ingest.submit_many([item(i, queue=queue) for i in range(len(plan))], engine=engine)]
    for who, column in (("ann", 0), ("bob", 1)):
        for _ in plan:
            held = review.claim_next(queue, who, engine=engine)
            review.decide(held.id, who, plan[ids.index(held.id)][column], engine=engine)
    return ids


def test_the_report_counts_agreement_and_each_reviewer(engine, pair):
    plan = [(APPROVE, APPROVE)] * 6 + [(REJECT, REJECT)] * 2 + [(APPROVE, REJECT)] * 2
    ids = _decide_all(engine, pair, plan)
    disputed = [i for i in ids if items.get(i, engine=engine).status == "disputed"]
    assert len(disputed) == 2
    # The lead sides with ann on one, with bob on the other.
    for item_id, side in zip(disputed, ("ann", "bob"), strict=True):
        got = items.get(item_id, engine=engine)
        review.adjudicate(
            item_id, "lena", pick=next(r.id for r in got.reviews if r.reviewer == side), engine=engine
        )
    rep = agreement.report(pair, engine=engine)
    assert (rep.units, rep.decisions, rep.disputes_open, rep.adjudicated) == (10, 20, 0, 2)
    assert rep.percent_agreement.estimate == pytest.approx(0.8)
    assert rep.alpha.estimate == pytest.approx(agreement.alpha([[str(a), str(b)] for a, b in plan]), abs=1e-4)
    ann, bob = (next(r for r in rep.reviewers if r.reviewer == n) for n in ("ann", "bob"))
    assert (ann.decisions, ann.compared, ann.overturned, ann.today, ann.this_week) == (10, 10, 1, 10, 10)
    assert ann.agreement_with_final == pytest.approx(0.9) and bob.agreement_with_final == pytest.approx(0.9)
    assert "lena" not in {r.reviewer for r in rep.reviewers}  # adjudications are not votes


def test_agreement_and_disputes_over_http_cli_and_metrics(engine, db_url, pair, api, make_token):
    ids = _decide_all(engine, pair, [(APPROVE, APPROVE), (APPROVE, REJECT)])
    [disputed] = [i for i in ids if items.get(i, engine=engine).status == "disputed"]
    read = make_token("read")
    r = api.get(f"/v1/queues/{pair}/disputes", headers=read)
    assert r.status_code == 200 and [d["id"] for d in r.json()] == [disputed]
    assert {rv["reviewer"] for rv in r.json()[0]["reviews"]} == {"ann", "bob"}
    assert 'reviewqueue_disputes_open{queue="pair",scope="cluster"} 1.0' in api.get("/metrics").text

    # Adjudication: review scope, and a lead or admin behind the token.
    body = {"decision": {"verdict": "reject", "reason": "incorrect", "comment": "settled"}}
    as_ann = make_token("review", user="ann")
    r = api.post(f"/v1/items/{disputed}/adjudication", json=body, headers=as_ann)
    assert r.status_code == 403 and "lead" in r.json()["detail"]
    as_lena = make_token("review", user="lena")
    for bad in ({}, {"pick": 1, "decision": body["decision"]}, {"decision": {"verdict": "maybe"}}):
        assert api.post(f"/v1/items/{disputed}/adjudication", json=bad, headers=as_lena).status_code == 422
    r = api.post(f"/v1/items/{disputed}/adjudication", json=body, headers=as_lena)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["decision"]["reviewer"] == "lena"
    assert r.json()["agreement"] == 0.5
    again = api.post(f"/v1/items/{disputed}/adjudication", json=body, headers=as_lena)
    assert again.status_code == 409
    assert api.get(f"/v1/queues/{pair}/disputes", headers=read).json() == []

    r = api.get(f"/v1/queues/{pair}/agreement", headers=read)
    assert r.status_code == 200 and r.json()["units"] == 2 and r.json()["adjudicated"] == 1
    assert api.get("/v1/queues/nope/agreement", headers=read).status_code == 404
    assert (
        api.get(f"/v1/queues/{pair}/agreement", params={"since": "yesterday"}, headers=read).status_code
        == 422
    )

    out = CliRunner().invoke(cli.app, ["agreement", pair])
    assert out.exit_code == 0, out.output
    assert "Percent agreement: 50.0%" in out.output and "ann" in out.output
    as_json = json.loads(CliRunner().invoke(cli.app, ["agreement", pair, "--json"]).output)
    assert as_json["units"] == 2 and {r["reviewer"] for r in as_json["reviewers"]} == {"ann", "bob"}


def test_queue_settings_for_several_reviewers_from_the_cli(engine, db_url, tmp_path):
    for name in ("ann", "bob"):
        users.add(name, role="reviewer", engine=engine)
    runner = CliRunner()
    guide = tmp_path / "guide.md"
    guide.write_text("# Refunds\nApprove only what the **policy** says.", encoding="utf-8")
    r = runner.invoke(
        cli.app,
        [
            "queue",
            "create",
            "panel",
            "--reviews-required",
            "3",
            "--consensus",
            "unanimous",
            "--reviewer",
            "ann",
            "--reviewer",
            "bob",
            "--guidelines-file",
            str(guide),
            "--show-previous-reviews",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "3 reviews per item (unanimous)" in r.output and "reviewers ann, bob" in r.output
    q = queues.get("panel", engine=engine)
    assert (q.reviews_required, q.consensus, q.reviewers, q.show_previous_reviews) == (
        3,
        "unanimous",
        ["ann", "bob"],
        True,
    )
    assert q.guidelines.startswith("# Refunds")
    r = runner.invoke(cli.app, ["queue", "update", "panel", "--any-reviewer", "--blind"])
    assert r.exit_code == 0, r.output
    q = queues.get("panel", engine=engine)
    assert (q.reviewers, q.show_previous_reviews) == ([], False)
    bad = runner.invoke(cli.app, ["queue", "update", "panel", "--reviews-required", "9"])
    assert bad.exit_code != 0
    bad = runner.invoke(cli.app, ["queue", "update", "panel", "--consensus", "loudest"])
    assert bad.exit_code != 0


def test_a_skipped_item_is_passed_over_over_http(engine, pair, api, make_token):
    first, second = (r.id for r in ingest.submit_many([item(i, queue=pair) for i in range(2)], engine=engine))
    as_ann = make_token("review", user="ann")
    held = api.post(f"/v1/queues/{pair}/claim", headers=as_ann).json()["id"]
    assert api.post(f"/v1/items/{held}/release", headers=as_ann).status_code == 200
    again = api.post(f"/v1/queues/{pair}/claim", params={"skip": [held]}, headers=as_ann)
    assert again.status_code == 200 and again.json()["id"] == ({first, second} - {held}).pop()
    api.post(f"/v1/items/{again.json()['id']}/release", headers=as_ann)
    everything = {"skip": [first, second]}
    assert api.post(f"/v1/queues/{pair}/claim", params=everything, headers=as_ann).status_code == 204
    bad = api.post(f"/v1/queues/{pair}/claim", params={"skip": ["no spaces allowed"]}, headers=as_ann)
    assert bad.status_code == 422
