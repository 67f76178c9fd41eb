"""The shipped Prometheus alert rules (docs/alerts.yml): valid (`promtool check rules`),
firing as their unit tests say (`promtool test rules tests/data/alerts_test.yml`), and
naming only series the API's /metrics really serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reviewqueue import deadlines, ingest, queues

from .conftest import item

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")


@needs_promtool
def test_rules_are_valid():
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_rules_fire_as_their_unit_tests_say():
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=ROOT / "tests" / "data",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_name_only_series_the_api_serves(api, engine, make_token):
    queues.create(
        "refunds",
        {"audit_rate": 0.1, "deadline_seconds": 1, "on_deadline": "accept", "warn_seconds": 60},
        engine=engine,
    )
    ingest.submit_many([item(i, queue="refunds", confidence=0.3 + i / 100) for i in range(20)], engine=engine)
    ingest.submit(item(99, queue="refunds", deadline="2020-01-01T00:00:00Z"), engine=engine)
    deadlines.run_round(engine)
    served = api.get("/metrics", headers=make_token("admin")).text
    # A series, or a family with no samples yet (its TYPE line).
    names = set(re.findall(r"^(?:# TYPE )?(reviewqueue_[a-z_]+)", served, re.M))
    names |= {f"{n}_total" for n in re.findall(r"^# TYPE (reviewqueue_[a-z_]+) counter", served, re.M)}
    wanted = set(re.findall(r"\b(reviewqueue_[a-z_]+)\{", RULES.read_text()))
    assert wanted and wanted <= names, wanted - names
    assert (
        'reviewqueue_deadline_fallbacks_total{action="accept",queue="refunds",scope="cluster"} 1.0' in served
    )
    assert re.search(r'reviewqueue_items_due_soon\{queue="refunds",scope="cluster"\} 20\.0', served)
