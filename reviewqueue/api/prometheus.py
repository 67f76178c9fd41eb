"""``/metrics`` in Prometheus text format.

Every series says whose figure it is in its ``scope`` label:

- ``scope="cluster"``: read from the shared database at scrape time (queue counts,
  backlog, disputes, quality), so every process of a deployment reports the same
  value. Take one (``max by (queue)``), never a sum: summed over N nodes they count N
  times.
- ``scope="process"``: this process's own (request latency, webhook deliveries it
  sent). Sum them over the processes (``sum by (route)``).
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import agreement, metrics, quality, webhooks

REGISTRY = CollectorRegistry()
LATENCY = Histogram(
    "reviewqueue_http_request_duration_seconds",
    "HTTP request latency (this process)",
    ["method", "route", "status", "scope"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    LATENCY.labels(method, route, str(status), "process").observe(seconds)


class Timing:
    """Pure ASGI middleware timing each request by its route template (Starlette's
    decorator middleware costs about a millisecond a request here)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def capture(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            observe(
                scope["method"], getattr(route, "path", "unmatched"), status[0], time.perf_counter() - start
            )


class _QueueCollector:
    def __init__(self):
        self.engine = None

    def collect(self):
        if self.engine is None:
            return
        c = "cluster"
        ingested = CounterMetricFamily(
            "reviewqueue_items_ingested",
            "Items ingested (cluster: the same on every node)",
            labels=["queue", "route", "scope"],
        )
        for (queue, route), n in metrics.ingested_by_route(engine=self.engine).items():
            ingested.add_metric([queue, route, c], n)
        yield ingested
        decided = CounterMetricFamily(
            "reviewqueue_decisions", "Decisions, not undone (cluster)", labels=["queue", "verdict", "scope"]
        )
        for (queue, verdict), n in metrics.decisions_by_verdict(engine=self.engine).items():
            decided.add_metric([queue, verdict, c], n)
        yield decided
        backlog = metrics.backlog(engine=self.engine)
        waiting = GaugeMetricFamily(
            "reviewqueue_backlog_items",
            "Items waiting for review, pending or in review (cluster)",
            labels=["queue", "scope"],
        )
        oldest = GaugeMetricFamily(
            "reviewqueue_oldest_pending_age_seconds",
            "Age of the oldest waiting item (cluster)",
            labels=["queue", "scope"],
        )
        for queue, b in backlog.items():
            waiting.add_metric([queue, c], b["waiting"])
            oldest.add_metric([queue, c], b["oldest_age_seconds"])
        yield waiting
        yield oldest
        disputes = GaugeMetricFamily(
            "reviewqueue_disputes_open",
            "Items whose reviewers disagree, waiting for a lead (cluster)",
            labels=["queue", "scope"],
        )
        for queue, n in agreement.disputes_open(engine=self.engine).items():
            disputes.add_metric([queue, c], n)
        yield disputes
        error = GaugeMetricFamily(
            "reviewqueue_auto_accepted_error",
            "Estimated error rate of the outputs that went out unreviewed (from the audit sample), "
            "and the upper bound of its 95% interval (cluster)",
            labels=["queue", "bound", "scope"],
        )
        for queue, (estimate, upper) in quality.auto_accepted_error_gauge(engine=self.engine).items():
            error.add_metric([queue, "estimate", c], estimate)
            error.add_metric([queue, "upper", c], upper)
        yield error
        fallbacks = CounterMetricFamily(
            "reviewqueue_deadline_fallbacks",
            "Deadlines that passed with no human answer, by the queue the item was in and what the "
            "queue did: accept, reject, escalate or keep (cluster)",
            labels=["queue", "action", "scope"],
        )
        for (queue, action), n in metrics.deadline_fallbacks(engine=self.engine).items():
            fallbacks.add_metric([queue, action, c], n)
        yield fallbacks
        due = GaugeMetricFamily(
            "reviewqueue_items_due_soon",
            "Waiting items due within the queue's warn_seconds (300 s if unset) (cluster)",
            labels=["queue", "scope"],
        )
        for queue, n in metrics.due_soon(engine=self.engine).items():
            due.add_metric([queue, c], n)
        yield due
        sent = CounterMetricFamily(
            "reviewqueue_webhook_deliveries",
            "Webhook POSTs this process made, by outcome (process)",
            labels=["outcome", "scope"],
        )
        for outcome, n in webhooks.SENT.items():
            sent.add_metric([outcome, "process"], n)
        yield sent


_collector = _QueueCollector()
REGISTRY.register(_collector)


def render(engine) -> tuple[bytes, str]:
    _collector.engine = engine
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
