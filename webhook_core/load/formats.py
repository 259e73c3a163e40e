"""SQL both readers share about the input formats: a JSONL line as the JSON text DuckDB
parses, and a Parquet file's columns and types."""

from __future__ import annotations

from pathlib import Path

import duckdb

from webhook_core.exceptions import DatasetError
from webhook_core.quoting import quote_literal

__all__ = ["JSON_LINE", "json_line", "json_line_text", "parquet_columns", "parquet_types"]

def json_line_text(first_line: str) -> str:
    """SQL: a JSONL line (``raw``) as the text DuckDB's JSON reader parses (Q7): surrounding
    ASCII whitespace and a byte-order mark opening the file are not part of the document.

    ``first_line`` is SQL saying whether this is the file's first line, the one line whose
    byte-order mark is dropped (elsewhere a mark makes the line invalid JSON: NULL here). ``trim``
    with a set of characters costs ten times the parse, so a line that opens with ``{`` and
    closes with ``}``, nearly every line, has nothing to trim and skips it.
    """
    spaces = "' ' || chr(9) || chr(13) || chr(11) || chr(12)"
    return (f"CASE WHEN starts_with(raw, '{{') AND ends_with(raw, '}}') THEN raw "
            f"WHEN starts_with(raw, chr(65279)) THEN CASE WHEN {first_line} THEN trim(raw[2:], {spaces}) END "
            f"ELSE trim(raw, {spaces}) END")


def json_line(first_line: str) -> str:
    """SQL: :func:`json_line_text` parsed as JSON, NULL when it is not valid JSON."""
    return f"try_cast({json_line_text(first_line)} AS JSON)"


#: For readers that number their lines (``line``).
JSON_LINE = json_line("line = 1")


def parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))})").fetchall()
    except duckdb.Error as exc:
        raise DatasetError(f"not a readable Parquet file: {str(exc).splitlines()[0]}", path=str(path)) from exc
    return [row[0] for row in rows]


def parquet_types(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))})").fetchall()
    return [row[1] for row in rows]
