"""Property-based: no body, however malformed, makes the API answer 5xx."""

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import item

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
fields = st.sampled_from(
    [
        "queue",
        "input",
        "output",
        "confidence",
        "external_id",
        "model",
        "model_version",
        "predicted_label",
        "context",
        "metadata",
        "priority",
        "verdict",
        "final_output",
        "final_label",
        "reason",
        "comment",
        "items",
        "threshold",
        "labels",
    ]
)
item_like = st.dictionaries(fields, json_values, max_size=8) | st.builds(
    lambda over: {**item(1), **over}, st.dictionaries(fields, json_values, max_size=3)
)
raw_bodies = st.one_of(
    item_like.map(json.dumps), st.binary(max_size=200), st.text(max_size=200), json_values.map(json.dumps)
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def test_fuzz_post_endpoints(api, queue, make_token):
    headers = {**make_token("admin", user="rita"), "Content-Type": "application/json"}
    item_id = api.post("/v1/items", json=item(0), headers=headers).json()["id"]
    api.post("/v1/queues/support/claim", headers=headers)
    paths = [
        "/v1/items",
        "/v1/items/batch",
        f"/v1/items/{item_id}/decision",
        "/v1/queues/support",
        f"/v1/items/{item_id}/release",
    ]

    @SETTINGS
    @given(path=st.sampled_from(paths), body=raw_bodies, wrap=st.booleans())
    def check(path, body, wrap):
        if wrap and path.endswith("batch"):
            body = json.dumps({"items": [json.loads(body)]}) if _is_json(body) else body
        method = "PUT" if path == "/v1/queues/support" else "POST"
        r = api.request(method, path, content=body, headers=headers)
        assert r.status_code < 500, (path, body, r.status_code, r.text)
        assert "detail" in r.json() or r.status_code < 300

    check()


def test_fuzz_query_parameters(api, queue, make_token):
    headers = make_token("read")

    @SETTINGS
    @given(
        params=st.dictionaries(
            st.sampled_from(["queue", "status", "updated_since", "limit", "cursor"]),
            st.text(max_size=30),
            max_size=5,
        ),
        item_id=st.text(min_size=1, max_size=40),
    )
    def check(params, item_id):
        r = api.get("/v1/items", params=params, headers=headers)
        assert r.status_code < 500, (params, r.text)
        r = api.get(f"/v1/items/{quote(item_id, safe='')}", headers=headers)
        assert r.status_code < 500, (item_id, r.text)

    check()


def _is_json(body) -> bool:
    try:
        json.loads(body)
        return True
    except (ValueError, TypeError):
        return False
