"""Ingest of structured outputs (JSON Schema validation, field confidences, per-field
routing) against plain items of the same size, in one run.

    python bench/bench_structured.py [--items 20000] [--rounds 3] [--postgres URL]

Each round, alternately: ``ingest.submit_many`` of N 20-field invoices into a queue
with an ``output_schema`` and ``field_confidence`` on every item, and of N items with
the same JSON output and a plain confidence into a queue without a schema; a fresh
database for each. Printed: items/s of both and their ratio (the aim: at least half
the plain rate).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_core import reset  # noqa: E402

from reviewqueue import ingest, queues, store  # noqa: E402

SCHEMA = {
    "type": "object",
    "required": ["invoice_number", "vendor", "total", "line_items"],
    "properties": {
        **{f"field_{k}": {"type": "string"} for k in range(12)},
        "invoice_number": {"type": "string"},
        "vendor": {"type": "string"},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "total": {"type": "number"},
        "paid": {"type": "boolean"},
        "line_items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["description", "amount"],
                "properties": {"description": {"type": "string"}, "amount": {"type": "number"}},
            },
        },
    },
}


def invoices(n: int, queue: str, structured: bool) -> list[dict]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        output = {
            **{f"field_{k}": f"value {k} of {i}" for k in range(12)},
            "invoice_number": f"INV-{i}",
            "vendor": "ACME GmbH",
            "currency": "EUR",
            "total": 119.0,
            "paid": False,
            "line_items": [{"description": "anvil", "amount": 100.0}, {"description": "VAT", "amount": 19.0}],
        }
        item = {"queue": queue, "external_id": f"inv-{i}", "input": f"scan {i}", "output": output}
        if structured:
            paths = [
                *(f"field_{k}" for k in range(12)),
                "invoice_number",
                "vendor",
                "currency",
                "total",
                "paid",
            ]
            fields = {p: 0.85 + 0.15 * rng.random() for p in paths}
            fields["line_items[0].amount"] = 0.5 + 0.5 * rng.random()
            item["field_confidence"] = fields
        else:
            item["confidence"] = 0.5 + 0.5 * rng.random()
        out.append(item)
    return out


def one(url: str, n: int, structured: bool) -> float:
    engine = reset(url)
    settings = {"threshold": 0.8, "audit_rate": 0.02}
    if structured:
        settings["output_schema"] = SCHEMA
    queues.create("bench", settings, engine=engine)
    batch = invoices(n, "bench", structured)
    t = time.perf_counter()
    for start in range(0, n, 5000):
        ingest.submit_many(batch[start : start + 5000], engine=engine)
    rate = n / (time.perf_counter() - t)
    store.dispose(engine)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-structured-")
    os.environ.setdefault("REVIEWQUEUE_SECRET_KEY_FILE", f"{tmp}/secret.key")
    print(f"# bench_structured: {args.items} items a run, load average {os.getloadavg()[0]:.2f}")
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        rates = {}
        for structured in order:
            url = args.postgres or f"sqlite:///{tmp}/bench-{r}-{int(structured)}.db"
            rates[structured] = one(url, args.items, structured)
        print(
            f"round {r + 1}: structured {rates[True]:8.0f} items/s   plain {rates[False]:8.0f} items/s   "
            f"ratio {rates[True] / rates[False]:.2f}   (load {os.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
