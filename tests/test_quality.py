"""The quality report against known ground truth (simulations in tests/quality_sim.py):
what it tells, what it refuses to tell, drift, filters, per-label advice and applying a
recommendation. Interval coverage over many seeds: tests/test_quality_coverage.py."""

from __future__ import annotations

import random

import pytest

from reviewqueue import audit, claims, decisions, events, ingest, quality, queues
from reviewqueue.errors import QueueNotFound, ValidationFailed

from .quality_sim import auto_accepted_truth, routes, simulate, true_error


def test_a_report_tells_what_a_team_needs(engine):
    truth = simulate(engine, "sim", 7, n=1500, kind="over", low=0.5, audit_rate=0.1)
    rep = quality.report("sim", target_error=0.45, engine=engine)
    assert rep.items == 1500 and sum(rep.by_route.values()) == 1500
    assert rep.decided == rep.by_route["below_threshold"] + rep.by_route["audit_sample"]
    # The whole traffic's accuracy is weighted: it is near the truth, not the share of
    # reviewed items that were right (which over-weights the low-confidence items).
    true_accuracy = 1 - true_error(truth)
    assert rep.accuracy.low <= true_accuracy <= rep.accuracy.high
    naive = sum(r for c, r, _ in truth.values() if c < 0.8) / sum(1 for c, _, _ in truth.values() if c < 0.8)
    assert abs(rep.accuracy.estimate - true_accuracy) < abs(naive - true_accuracy)
    # Reliability: 10 bins; bins below 0.5 are empty; an over-confident model's
    # accuracy lies below the diagonal, and the ECE says so.
    assert len(rep.reliability) == 10
    assert all(b.items == 0 and b.accuracy is None for b in rep.reliability[:5])
    top = rep.reliability[9]
    assert top.accuracy < top.mean_confidence and rep.ece > 0.1
    # Thresholds 0.50..0.99, review load rising with the threshold.
    assert [r.threshold for r in rep.thresholds][:2] == [0.5, 0.51] and rep.thresholds[-1].threshold == 0.99
    loads = [r.review_rate for r in rep.thresholds]
    assert loads == sorted(loads) and loads[0] == pytest.approx(0.1)
    assert rep.recommendation is not None and rep.recommendation.error_upper <= 0.45
    assert rep.by_model_version[0].model_version == "v1"
    reviewed_wrong = sum(
        1 for key, route in routes(engine, "sim").items() if route != "auto_accepted" and not truth[key][1]
    )
    assert rep.reject_reasons["total"] == {"incorrect": reviewed_wrong}
    assert rep.reject_reasons["by_model_version"] == {"v1": {"incorrect": reviewed_wrong}}


def test_too_few_audits_means_no_recommendation_and_says_why(engine):
    simulate(engine, "thin", 3, n=400, kind="calibrated", low=0.5, audit_rate=0.01)
    rep = quality.report("thin", target_error=0.02, engine=engine)
    assert rep.recommendation is None
    assert "audited" in rep.recommendation_reason and "audit_rate" in rep.recommendation_reason
    assert rep.auto_accepted_error.estimate is None and rep.auto_accepted_error.reason


def test_no_audits_at_all_is_said_plainly(engine):
    simulate(engine, "blind", 4, n=300, kind="calibrated", low=0.5, audit_rate=0.0)
    err = quality.report("blind", engine=engine).auto_accepted_error
    assert err.estimate is None and "audit_rate is 0" in err.reason and err.audited == 0


def test_weights_follow_each_items_own_route_and_rate(engine, fake_clock):
    """Threshold and audit rate changed halfway: the estimate stays honest (the second
    half is audited six times as often; an unweighted pool would lean on it)."""
    truth = simulate(engine, "moving", 11, n=800, kind="over", threshold=0.8, audit_rate=0.05, low=0.6)
    fake_clock.advance(3600)
    queues.update("moving", {"threshold": 0.7, "audit_rate": 0.3}, engine=engine)
    truth |= simulate(engine, "moving", 12, n=800, kind="over", low=0.6, version="v2", create=False)
    rep = quality.report("moving", engine=engine)
    true = auto_accepted_truth(engine, "moving", truth)
    assert rep.auto_accepted_error.low <= true <= rep.auto_accepted_error.high
    assert rep.accuracy.low <= 1 - true_error(truth) <= rep.accuracy.high


def test_a_worse_model_version_is_flagged(engine, fake_clock):
    simulate(engine, "drift", 21, n=800, kind="under", low=0.5, audit_rate=0.3, version="v1")
    fake_clock.advance(86_400)
    simulate(engine, "drift", 22, n=800, kind="over", low=0.5, version="v2", create=False)
    versions = quality.report("drift", engine=engine).by_model_version
    assert [v.model_version for v in versions] == ["v1", "v2"]
    assert not versions[0].drift and versions[1].drift
    assert versions[1].error.low > versions[0].error.high


def test_both_databases_give_the_same_report(engine, db_url, sqlite_template, tmp_path):
    """The same simulations through PostgreSQL's (or SQLite's) ingest, claims and
    aggregates give the very report a fresh SQLite database gives: the coverage measured
    on SQLite (tests/test_quality_coverage.py) holds for both."""
    import shutil

    from reviewqueue import store

    path = tmp_path / "twin.db"
    shutil.copy(sqlite_template, path)
    twin = store.make_engine(f"sqlite:///{path}")

    def numbers(rep):
        """The report's figures, floats to nine places (sums may be added in another order)."""
        skip = {"generated_at", "days", "items_per_day", "first_seen", "last_seen"}
        skip |= {"review_items_per_day", "reviewer_hours_per_day", "median_seconds"}

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items() if k not in skip}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return round(value, 9) if isinstance(value, float) else value

        return clean(rep.model_dump(exclude={"recommendation_reason"}))

    for seed, kind in ((31, "over"), (32, "calibrated"), (33, "under")):
        for eng in (engine, twin):
            simulate(eng, f"twin{seed}", seed, n=400, kind=kind, low=0.6, audit_rate=0.2)
        mine = quality.report(f"twin{seed}", target_error=0.2, engine=engine)
        theirs = quality.report(f"twin{seed}", target_error=0.2, engine=twin)
        assert numbers(mine) == numbers(theirs)
    store.dispose(twin)


def test_filters_and_bad_parameters(engine):
    simulate(engine, "f", 5, n=200, kind="calibrated", audit_rate=0.2)
    assert quality.report("f", model_version="v1", engine=engine).items == 200
    assert quality.report("f", model_version="nope", engine=engine).items == 0
    with pytest.raises(QueueNotFound):
        quality.report("missing", engine=engine)
    for bad in (
        {"target_error": 0},
        {"target_error": 1.5},
        {"confidence_level": 1},
        {"target_error": float("nan")},
    ):
        with pytest.raises(ValidationFailed):
            quality.report("f", engine=engine, **bad)
    with pytest.raises(ValidationFailed):
        quality.report("f", since="2026-12-02", until="2026-12-01", engine=engine)


def test_classification_queues_get_a_threshold_per_label(engine):
    queues.create("cls", {"threshold": 0.8, "audit_rate": 0.3, "labels": ["billing", "bug"]}, engine=engine)
    rng = random.Random(9)
    truth, batch = {}, []
    for i in range(1200):
        label = rng.choice(["billing", "bug"])
        c = rng.uniform(0.5, 1.0)
        # billing is well calibrated; bug is always right above 0.6
        right = rng.random() < (c if label == "billing" else (1.0 if c > 0.6 else c))
        truth[f"k{i}"] = (c, right, "v1")
        batch.append(
            {
                "queue": "cls",
                "external_id": f"k{i}",
                "input": "t",
                "output": label,
                "predicted_label": label,
                "confidence": c,
            }
        )
    ingest.submit_many(batch, engine=engine)
    while (held := claims.claim_next("cls", "sim", engine=engine)) is not None:
        decision = (
            {"verdict": "approve"}
            if truth[held.external_id][1]
            else {"verdict": "reject", "reason": "incorrect"}
        )
        decisions.decide(held.id, "sim", decision, engine=engine)
    rep = quality.report("cls", target_error=0.1, engine=engine)
    advice = {a.label: a for a in rep.label_thresholds}
    assert set(advice) == {"billing", "bug"}
    assert advice["bug"].recommendation is not None
    if advice["billing"].recommendation is not None:
        assert advice["bug"].recommendation.threshold < advice["billing"].recommendation.threshold


def test_applying_the_recommendation_records_its_evidence(engine):
    simulate(engine, "apply", 8, n=1000, kind="under", low=0.5, audit_rate=0.3)
    rep = quality.report("apply", target_error=0.05, engine=engine)
    assert rep.recommendation is not None
    queue = quality.apply_recommendation("apply", 0.05, actor="adam", engine=engine)
    assert queue.threshold == rep.recommendation.threshold
    [event] = audit.events(audit.EventFilter(queue="apply", kind="queue.updated"), engine=engine)
    why = event.after["why"]
    assert why["source"] == "quality advisor" and why["target_error"] == 0.05
    assert why["error_upper"] == pytest.approx(rep.recommendation.error_upper)
    assert why["decided"] == rep.decided
    assert "from the quality advisor" in events.describe(event)
    with pytest.raises(ValidationFailed):  # nothing meets an impossible target
        quality.apply_recommendation("apply", 0.0001, actor="adam", engine=engine)


# --- the shells ------------------------------------------------------------------------


def test_quality_over_http(api, engine, make_token):
    simulate(engine, "web", 6, n=600, kind="under", low=0.5, audit_rate=0.3)
    read = make_token("read")
    r = api.get("/v1/queues/web/quality", params={"target_error": 0.05}, headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"] == 600 and len(body["thresholds"]) == 50
    assert (
        body["recommendation"]["threshold"]
        == quality.report("web", target_error=0.05, engine=engine).recommendation.threshold
    )
    assert set(body["auto_accepted_error"]) >= {"estimate", "low", "high", "audited"}
    assert (
        api.get("/v1/queues/web/quality", params={"model_version": "v1"}, headers=read).json()["items"] == 600
    )
    for bad in (
        {"target_error": "x"},
        {"target_error": 0},
        {"target_error": "nan"},
        {"confidence_level": 1},
        {"since": "yesterday"},
        {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
    ):
        r = api.get("/v1/queues/web/quality", params=bad, headers=read)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]
    assert api.get("/v1/queues/nope/quality", headers=read).status_code == 404
    assert api.get("/v1/queues/web/quality").status_code == 401
    queues.create("other", {}, engine=engine)
    mine = make_token("read", queues=["other"])
    assert api.get("/v1/queues/web/quality", headers=mine).status_code == 403


def test_prometheus_reports_the_auto_accepted_error(api, engine):
    simulate(engine, "prom", 6, n=400, kind="over", low=0.7, audit_rate=0.3)
    err = quality.report("prom", engine=engine).auto_accepted_error
    text = api.get("/metrics").text
    assert (
        f'reviewqueue_auto_accepted_error{{bound="estimate",queue="prom",scope="cluster"}} {err.estimate}'
        in text
    )
    assert f'reviewqueue_auto_accepted_error{{bound="upper",queue="prom",scope="cluster"}} {err.high}' in text


def test_quality_from_the_command_line(engine, db_url):
    import json

    from typer.testing import CliRunner

    from reviewqueue import cli

    simulate(engine, "cli", 6, n=600, kind="under", low=0.5, audit_rate=0.3)
    runner = CliRunner()
    r = runner.invoke(cli.app, ["quality", "cli", "--target-error", "0.05"])
    assert r.exit_code == 0, r.output
    assert "went out unreviewed" in r.output and "Recommended threshold" in r.output
    assert "Calibration" in r.output and "reviewer-hours/day" in r.output
    r = runner.invoke(cli.app, ["quality", "cli", "--json"])
    assert json.loads(r.output)["items"] == 600
    assert isinstance(runner.invoke(cli.app, ["quality", "nope"]).exception, QueueNotFound)
    assert isinstance(runner.invoke(cli.app, ["quality", "cli", "--apply"]).exception, ValidationFailed)
    r = runner.invoke(cli.app, ["quality", "cli", "--target-error", "0.05", "--apply"])
    assert r.exit_code == 0 and "Applied: cli threshold is now" in r.output
    assert queues.get("cli", engine=engine).threshold == quality.report("cli", engine=engine).threshold
