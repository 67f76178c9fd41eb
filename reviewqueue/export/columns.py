"""What an export file holds: its columns, in order, and their types."""

from __future__ import annotations

#: 2: ``reviews`` and ``agreement`` added at the end (several reviewers per item); every
#: other column kept its meaning, the reference being the final decision.
#: 3: ``after_deadline`` added at the end: the reference is a reviewer's decision made after
#: the queue's deadline fallback had answered the app (deadlines.py); and, for structured
#: outputs (structured.py), ``field_confidence``, ``flagged_fields``, ``changed_fields``.
SCHEMA_VERSION = 3
FORMATS = {
    "jsonl": "jsonl",
    "csv": "csv",
    "parquet": "parquet",
    "chat-jsonl": "chat.jsonl",
    # One line per item and flagged or changed field of a structured output.
    "fields-jsonl": "fields.jsonl",
    # One line per decided tool call (toolcall_lines.py).
    "tool-calls-jsonl": "tool-calls.jsonl",
}
COLUMNS = [
    "item_id",
    "queue",
    "external_id",
    "model",
    "model_version",
    "input",
    "context",
    "output",
    "confidence",
    "predicted_label",
    "route",
    "verdict",
    "reference_output",
    "reference_label",
    "reason",
    "comment",
    "reviewer",
    "created_at",
    "decided_at",
    "edit_distance",
    "metadata",
    "reviews",
    "agreement",
    "after_deadline",
    "field_confidence",
    "flagged_fields",
    "changed_fields",
]
#: JSON-valued columns: JSON in JSONL; in CSV and Parquet, a JSON-encoded string (text
#: inputs and outputs stay plain text, objects are encoded).
JSON_COLUMNS = (
    "input",
    "context",
    "output",
    "reference_output",
    "metadata",
    "reviews",
    "field_confidence",
    "flagged_fields",
    "changed_fields",
)
#: Low-cardinality columns, dictionary-encoded in Parquet.
DICTIONARY_COLUMNS = [
    "queue",
    "model",
    "model_version",
    "predicted_label",
    "route",
    "verdict",
    "reference_label",
    "reason",
    "reviewer",
]


def parquet_schema():
    import pyarrow as pa

    types = {
        "confidence": pa.float64(),
        "edit_distance": pa.int64(),
        "agreement": pa.float64(),
        "after_deadline": pa.bool_(),
    }
    return pa.schema([pa.field(c, types.get(c, pa.string())) for c in COLUMNS])


#: Per format, whether JSON values that are strings are written as their text (CSV and
#: chat records) or as JSON (JSONL; Parquet turns them into text column-wise itself).
JSON_AS_TEXT = {
    "jsonl": False,
    "parquet": False,
    "csv": True,
    "chat-jsonl": True,
    "fields-jsonl": False,
    "tool-calls-jsonl": False,
}
