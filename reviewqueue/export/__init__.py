"""Correction datasets: decided items as JSONL, CSV, Parquet or chat-style JSONL.

One row per decided item in the period (by ``decided_at``, the time of the current,
not-undone decision), sorted by ``decided_at`` then ``item_id``. Every file of a format
has the same columns and types, empty files included, so a folder of weekly files loads
as one dataset.

- ``columns.py``: the columns and their types;
- ``periods.py``: ISO weeks, ranges, and the settled moment an incremental run ends at;
- ``rows.py``: the rows, shaped by the database and streamed as tuples;
- ``writers.py``: the file formats;
- ``slices.py``: large exports converted in parallel worker processes;
- ``run.py``: the layout, the feeds and their watermarks, and how a file and its
  record move together (see its docstring).
"""

from .columns import COLUMNS, FORMATS, JSON_COLUMNS, SCHEMA_VERSION, parquet_schema
from .periods import Period, settled_until, span, week
from .run import (
    INCREMENTAL,
    MANIFEST,
    ExportResult,
    clean_partials,
    default_feed,
    export,
    recover,
    run_by_id,
    runs,
    sha256_of,
    watermark,
)
from .slices import worker_main

__all__ = [
    "COLUMNS",
    "FORMATS",
    "INCREMENTAL",
    "JSON_COLUMNS",
    "MANIFEST",
    "SCHEMA_VERSION",
    "ExportResult",
    "Period",
    "clean_partials",
    "default_feed",
    "export",
    "parquet_schema",
    "recover",
    "run_by_id",
    "runs",
    "settled_until",
    "sha256_of",
    "span",
    "watermark",
    "week",
    "worker_main",
]
