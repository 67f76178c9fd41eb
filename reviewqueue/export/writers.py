"""Writing export files: JSONL, CSV, Parquet and chat-style JSONL."""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from .columns import COLUMNS, DICTIONARY_COLUMNS, JSON_COLUMNS, parquet_schema
from .toolcall_lines import call_of, chat_tool_call_line, tool_call_lines

_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_JSON_AT = frozenset(COLUMNS.index(c) for c in JSON_COLUMNS)
_KEYS = [f'"{c}": ' for c in COLUMNS]
#: Boolean columns: SQLite gives 0 or 1, PostgreSQL a bool; written as true or false.
_BOOL_AT = COLUMNS.index("after_deadline")


def _jsonl_line(row: tuple) -> str:
    return (
        "{"
        + ", ".join(
            k
            + (
                "null"
                if v is None
                else v
                if i in _JSON_AT
                else ("true" if v else "false")
                if i == _BOOL_AT
                else _ENCODE(v)
            )
            for i, (k, v) in enumerate(zip(_KEYS, row, strict=True))
        )
        + "}\n"
    )


def _csv_row(row: tuple) -> tuple:
    return row[:_BOOL_AT] + ("true" if row[_BOOL_AT] else "false",) + row[_BOOL_AT + 1 :]


# --- writers ----------------------------------------------------------------------

_AT = {c: i for i, c in enumerate(COLUMNS)}


def private_file(path) -> None:
    """Create ``path`` readable by this account and its group only (0640), before any
    library opens it: exports hold reviewers' corrections and the apps' texts."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640))


class Writer:
    """Writes one data file; or, with ``part=True``, one slice of it for the process
    that assembles the file (Arrow IPC for Parquet, the file's own lines otherwise)."""

    def __init__(self, path: Path, fmt: str, *, part: bool = False):
        self.path, self.fmt = path, fmt
        private_file(path)
        self.rows = 0
        self.closed = False
        self.verdicts: Counter = Counter()
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = parquet_schema()
            if part:
                self._sink = pa.ipc.new_file(str(path), self._schema)
            else:
                # Dictionary encoding only where values repeat: trying it on every text
                # column (and giving up on inputs and outputs) was a fifth of the write time.
                self._sink = pq.ParquetWriter(
                    str(path), self._schema, compression="zstd", use_dictionary=DICTIONARY_COLUMNS
                )
        else:
            self._fh = open(path, "w", encoding="utf-8", newline="")
            if fmt == "csv":
                self._csv = csv.writer(self._fh, lineterminator="\n")
                if not part:
                    self._csv.writerow(COLUMNS)

    def write(self, rows: list[tuple]) -> None:
        self.verdicts.update(r[_AT["verdict"]] for r in rows)
        if self.fmt in ("fields-jsonl", "tool-calls-jsonl"):
            many = _field_lines if self.fmt == "fields-jsonl" else tool_call_lines
            lines = [line for r in rows for line in many(r)]
            self.rows += len(lines)
            self._fh.write("".join(lines))
            return
        self.rows += len(rows)
        if self.fmt == "parquet":
            import pyarrow as pa

            arrays = [
                pa.array([bool(r[i]) for r in rows] if i == _BOOL_AT else [r[i] for r in rows], type=f.type)
                for i, f in enumerate(self._schema)
            ]
            for i in _JSON_AT:
                arrays[i] = arrow_text(arrays[i])
            self._sink.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        elif self.fmt == "jsonl":
            self._fh.write("".join(map(_jsonl_line, rows)))
        elif self.fmt == "csv":
            self._csv.writerows(map(_csv_row, rows))
        else:
            self._fh.write("".join(_chat_line(r) for r in rows))

    def append(self, part: Path, rows: int, verdicts: dict[str, int]) -> None:
        """Add a slice another process wrote with ``part=True``."""
        self.rows += rows
        self.verdicts.update(verdicts)
        if self.fmt == "parquet":
            import pyarrow as pa

            with pa.memory_map(str(part)) as source:
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    self._sink.write_batch(reader.get_batch(i))
        else:
            self._fh.flush()
            with open(part, "rb") as f:
                shutil.copyfileobj(f, self._fh.buffer, 1 << 20)

    def close(self, *, sync: bool = True) -> None:
        """Finish the file (and sync it to disk); closing again does nothing."""
        if self.closed:
            return
        self.closed = True
        if self.fmt == "parquet":
            self._sink.close()
            if sync:
                with open(self.path, "rb+") as f:
                    os.fsync(f.fileno())
        else:
            self._fh.flush()
            if sync:
                os.fsync(self._fh.fileno())
            self._fh.close()


#: JSON's two-character escapes and what they stand for. Without an escaped backslash
#: among them, each can be replaced on its own, in any order.
_SIMPLE_ESCAPES = [
    ('\\"', '"'),
    ("\\n", "\n"),
    ("\\t", "\t"),
    ("\\r", "\r"),
    ("\\/", "/"),
    ("\\b", "\b"),
    ("\\f", "\f"),
]


def arrow_text(raw):
    """JSON text to the CSV/Parquet form, column-wise: a JSON string becomes its text,
    anything else stays JSON text. Strings are unquoted and their common escapes
    (quotes, line breaks, tabs) replaced in Arrow; only strings with an escaped
    backslash or a \\u escape are decoded one by one by json."""
    import pyarrow as pa
    import pyarrow.compute as pc

    quoted = pc.starts_with(raw, '"')
    text = pc.if_else(quoted, pc.utf8_slice_codeunits(raw, 1, -1), raw)
    escaped = pc.and_(quoted, pc.match_substring(raw, "\\"))
    if not pc.any(escaped).as_py():
        return text
    hard = pc.and_(escaped, pc.match_substring_regex(raw, r"\\[\\u]"))
    simple = pc.and_(escaped, pc.invert(hard))
    if pc.any(simple).as_py():
        part = pc.filter(text, simple)
        for escape, char in _SIMPLE_ESCAPES:
            part = pc.replace_substring(part, escape, char)
        text = pc.replace_with_mask(text, simple, part)
    if pc.any(hard).as_py():
        decoded = pa.array([json.loads(v) for v in pc.filter(raw, hard).to_pylist()], type=pa.string())
        text = pc.replace_with_mask(text, hard, decoded)
    return text


def _field_lines(r: tuple) -> list[str]:
    """A structured output's flagged and changed fields, a line each: what the model said,
    what the reviewer kept or made of it, and how sure the model was."""
    from ..structured import lookup, parse_path

    load = lambda name: json.loads(r[_AT[name]]) if r[_AT[name]] is not None else None  # noqa: E731
    confidence, flagged, changed = (
        load("field_confidence") or {},
        load("flagged_fields") or [],
        load("changed_fields") or [],
    )
    if not flagged and not changed:
        return []
    output, reference = load("output"), load("reference_output")
    verdict = r[_AT["verdict"]]
    lines = []
    for path in dict.fromkeys([*flagged, *changed]):
        try:
            tokens = parse_path(path)
        except ValueError:
            continue
        original = lookup(output, tokens)[1]
        corrected = None if verdict == "reject" else lookup(reference, tokens)[1]
        lines.append(
            json.dumps(
                {
                    "item_id": r[_AT["item_id"]],
                    "queue": r[_AT["queue"]],
                    "model_version": r[_AT["model_version"]],
                    "path": path,
                    "original": original,
                    "corrected": corrected,
                    "confidence": confidence.get(path),
                    "flagged": path in flagged,
                    "changed": path in changed,
                    "verdict": verdict,
                    "reviewer": r[_AT["reviewer"]],
                    "decided_at": r[_AT["decided_at"]],
                },
                ensure_ascii=False,
            )
            + "\n"
        )
    return lines


def _chat_line(r: tuple) -> str:
    call = call_of(r)
    if call is not None:
        return chat_tool_call_line(r, call)
    return (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": r[_AT["input"]] or ""},
                    {"role": "assistant", "content": r[_AT["reference_output"]] or ""},
                ],
                "metadata": {
                    k: r[_AT[k]]
                    for k in ("item_id", "queue", "verdict", "reference_label", "model", "model_version")
                },
            },
            ensure_ascii=False,
        )
        + "\n"
    )
