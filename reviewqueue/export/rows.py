"""Export rows, shaped by the database.

The database shapes every row: JSON comes back as text (raw JSON for JSONL, plain
text for CSV and Parquet), timestamps as ISO 8601 text, the reference columns per
verdict, and the edit distance as stored with the decision. Rows arrive as plain
tuples in COLUMNS order, so the writers never touch a value one at a time in Python
(Parquet) or only to encode a line (JSONL): that is what makes exports fast.
"""

from __future__ import annotations

import queue as queue_lib
import threading
from collections.abc import Iterator

from sqlalchemy import Text, and_, bindparam, case, cast, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from .. import store
from ..models import Item, Review
from ..vocab import Verdict
from .periods import Period

CHUNK = 10_000


def _ts(column, dialect: str):
    """A timestamp column as ISO 8601 UTC text, formatted by the database."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC.
    return func.replace(cast(column, Text), " ", "T").op("||")("Z")


def _json(column, dialect: str, as_text: bool, default: str | None = None):
    """A JSON column as JSON text (JSONL), or as plain text when it holds a string and
    as JSON text otherwise (CSV, Parquet). JSON null is a missing value."""
    if not as_text:
        value = func.nullif(cast(column, Text), "null")
    elif dialect == "postgresql":
        value = case(
            (func.jsonb_typeof(column) == "string", column.op("#>>")(literal_column("'{}'"))),
            (func.jsonb_typeof(column) == "null", None),
            else_=cast(column, Text),
        )
    else:
        value = case(
            (func.json_type(column) == "text", func.json_extract(column, "$")),
            (func.json_type(column) == "null", None),
            else_=cast(column, Text),
        )
    return func.coalesce(value, default) if default is not None else value


def _decision_fields(review, dialect: str) -> list:
    """One decision as the key/value arguments of a JSON object, in the order the
    ``reviews`` column lists them."""
    output = review.final_output if dialect == "postgresql" else func.json(review.final_output)
    adjudication = (
        review.adjudication
        if dialect == "postgresql"
        else func.json(case((review.adjudication, "true"), else_="false"))
    )
    return [
        literal_column("'reviewer'"), review.reviewer,
        literal_column("'verdict'"), review.verdict,
        literal_column("'final_output'"), output,
        literal_column("'final_label'"), review.final_label,
        literal_column("'reason'"), review.reason,
        literal_column("'comment'"), review.comment,
        literal_column("'decided_at'"), _ts(review.created_at, dialect),
        literal_column("'adjudication'"), adjudication,
    ]  # fmt: skip


def _reviews(dialect: str):
    """Every decision on the row's item (not undone), oldest first, as a JSON array.

    An item one reviewer decided (most of them) holds just its final decision, built
    from the row at hand; only items with several decisions read them again."""
    obj = func.jsonb_build_object if dialect == "postgresql" else func.json_object
    array = func.jsonb_build_array if dialect == "postgresql" else func.json_array
    single = array(obj(*_decision_fields(Review, dialect)))
    other = aliased(Review)
    mine = (other.item_id == Item.id, other.undone_at.is_(None))
    if dialect == "postgresql":
        many = select(
            func.jsonb_agg(aggregate_order_by(obj(*_decision_fields(other, dialect)), other.id))
        ).where(*mine)
    else:
        # SQLite 3.40 has no ORDER BY inside an aggregate: it aggregates in the order a
        # subquery gives its rows. The subquery must be correlated to the row's item
        # explicitly: left to itself, SQLAlchemy listed `items` in the subquery's own
        # FROM, and every row got the decisions of every item of the period.
        inner = select(other).where(*mine).order_by(other.id).correlate(Item).subquery()
        row = aliased(Review, inner)
        many = select(func.json_group_array(obj(*_decision_fields(row, dialect)))).select_from(inner)
    lone = and_(Item.reviews_done <= 1, Review.adjudication.is_(False))
    return case((lone, single), else_=many.scalar_subquery())


def _select(dialect: str, json_as_text: bool, verdicts: list[str] | None):
    j = lambda col, default=None: _json(col, dialect, json_as_text, default)  # noqa: E731
    kept = Review.verdict != Verdict.REJECT
    stmt = (
        select(
            Item.id,
            Item.queue,
            Item.external_id,
            Item.model,
            Item.model_version,
            j(Item.input),
            j(Item.context, "[]"),
            j(Item.output),
            Item.confidence,
            Item.predicted_label,
            Item.route,
            Review.verdict,
            case((kept, j(Review.final_output))),
            case((kept, Review.final_label)),
            Review.reason,
            Review.comment,
            Review.reviewer,
            _ts(Item.created_at, dialect),
            _ts(Item.decided_at, dialect),
            Review.edit_distance,
            j(Item.__table__.c.metadata, "{}"),
            j(_reviews(dialect)),
            func.coalesce(Item.agreement, 1.0),
            # SQLite keeps booleans as 0/1: the writers get True/False either way.
            Review.after_deadline if dialect == "postgresql" else Review.after_deadline.is_(True),
            j(Item.field_confidence),
            j(Item.flagged_fields),
            j(Review.changed_fields),
        )
        # The final decision only: the agreed one, or the lead's adjudication.
        .join(Review, Review.id == Item.final_review_id)
        .where(
            # By when the item became final, not when its final review was written: with
            # several reviewers the agreed decision can be the first of them, written
            # minutes before the item became final (and before a feed's last run).
            Item.queue == bindparam("queue"),
            Item.decided_at >= bindparam("since"),
            Item.decided_at < bindparam("until"),
        )
        .order_by(Item.decided_at, Item.id)
    )
    # One bind per verdict (store.stream_tuples takes no expanding IN).
    return (
        stmt.where(or_(*(Review.verdict == bindparam(f"verdict_{v}", v) for v in verdicts)))
        if verdicts
        else stmt
    )


def read_rows(
    engine,
    queue: str,
    period: Period,
    verdicts: list[str] | None,
    *,
    json_as_text: bool,
    chunk: int = CHUNK,
    ahead: int = 2,
):
    """Chunks of row tuples in COLUMNS order, read up to ``ahead`` chunks ahead on a
    second thread so the database works while this one writes."""
    stmt = _select(engine.dialect.name, json_as_text, verdicts)
    params = {"queue": queue, "since": period.since, "until": period.until}
    return read_ahead(store.stream_tuples(engine, stmt, params, size=chunk), depth=ahead)


_DONE = object()


def read_ahead(chunks: Iterator[list[tuple]], depth: int = 2) -> Iterator[list[tuple]]:
    """Iterate ``chunks`` on a worker thread, up to ``depth`` chunks ahead. SQLite and
    psycopg release the GIL while they fetch, so reading and writing overlap on two
    cores. An error on either side stops both."""
    ahead: queue_lib.Queue = queue_lib.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue_lib.Full:
                continue
        return False

    def work() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    break
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            chunks.close()

    worker = threading.Thread(target=work, name="export-reader", daemon=True)
    worker.start()
    try:
        while (item := ahead.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
