from reviewqueue import ingest, queues, routing


def test_below_default_threshold_goes_to_review(engine, queue):
    r = ingest.submit({"queue": "support", "input": "q", "output": "a", "confidence": 0.79}, engine=engine)
    assert (r.status, r.route) == ("pending", "below_threshold")


def test_threshold_boundary_is_not_below(engine, queue):
    r = ingest.submit({"queue": "support", "input": "q", "output": "a", "confidence": 0.8}, engine=engine)
    assert (r.status, r.route) == ("auto_accepted", "auto_accepted")


def test_per_label_threshold_overrides_default(engine, label_queue):
    base = {"queue": "tickets", "input": "my card was charged twice", "output": "billing"}
    billing = ingest.submit({**base, "confidence": 0.85, "predicted_label": "billing"}, engine=engine)
    bug = ingest.submit(
        {**base, "confidence": 0.85, "predicted_label": "bug", "external_id": "b"}, engine=engine
    )
    billing_hi = ingest.submit(
        {**base, "confidence": 0.9, "predicted_label": "billing", "external_id": "c"}, engine=engine
    )
    bug_lo = ingest.submit(
        {**base, "confidence": 0.69, "predicted_label": "bug", "external_id": "d"}, engine=engine
    )
    assert (billing.status, billing.route) == ("pending", "label_threshold")
    assert bug.route == "auto_accepted"
    assert billing_hi.route == "auto_accepted"
    assert bug_lo.route == "below_threshold"


def test_audit_sample_rate_and_determinism(engine):
    queues.create("audited", {"threshold": 0.5, "audit_rate": 0.1}, engine=engine)
    items = [
        {"queue": "audited", "input": f"q{i}", "output": f"a{i}", "confidence": 0.95, "external_id": f"e{i}"}
        for i in range(10_000)
    ]
    results = ingest.submit_many(items, engine=engine)
    sampled = sum(r.route == "audit_sample" for r in results)
    # Binomial(10000, 0.1): sd = 30, so +-150 is five standard deviations.
    assert 850 <= sampled <= 1150
    assert all(r.status == "pending" for r in results if r.route == "audit_sample")
    assert all(r.status == "auto_accepted" for r in results if r.route == "auto_accepted")
    # The draw depends only on (queue, key): the same outputs route the same way again.
    expected = [routing.audit_draw("audited", f"e{i}") < 0.1 for i in range(10_000)]
    assert [r.route == "audit_sample" for r in results] == expected


def test_audit_without_external_id_uses_content(engine):
    queues.create("audited", {"threshold": 0.5, "audit_rate": 0.5}, engine=engine)
    routes = set()
    for _ in range(3):
        r = ingest.submit(
            {"queue": "audited", "input": "same", "output": "same", "confidence": 0.99}, engine=engine
        )
        routes.add(r.route)
    assert len(routes) == 1


def test_pure_route_function():
    args = dict(queue="q", threshold=0.8, label_thresholds={"x": 0.3}, audit_rate=0.0, key="k")
    assert routing.route(confidence=0.5, predicted_label="x", **args) == ("auto_accepted", "auto_accepted")
    assert routing.route(confidence=0.2, predicted_label="x", **args) == ("pending", "label_threshold")
    assert routing.route(confidence=0.5, predicted_label="y", **args) == ("pending", "below_threshold")
    assert routing.route(confidence=0.0, predicted_label=None, **args)[1] == "below_threshold"
    assert (
        routing.route(**{**args, "audit_rate": 1.0}, confidence=1.0, predicted_label=None)[1]
        == "audit_sample"
    )


def test_ids_are_unique_sorted_uuid7():
    import uuid

    from reviewqueue.ids import uuid7, uuid7_many

    ids = uuid7_many(5000) + [uuid7()] + uuid7_many(3) + [uuid7() for _ in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
