"""Line numbers in SQL: the fast reads get rows, not lines; these number each row by its line
in the file, stepping over the lines that gave no row (unreadable, malformed, blank), and
read back the raw text of the few rows that are quarantined."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from webhook_core.load import linereader

__all__ = ["MOST_SKIPPED_LINES_IN_SQL", "SKIPPED_LINES", "blank_lines", "counting_lines", "fill_raw_text",
           "skipped_lines_before", "with_lines_skipped_before"]

#: Up to this many lines a fast read stepped over, the rows are numbered past them by a binary search
#: written as SQL (``skipped_lines_before``: no join); past it, by an ASOF join with a table of them
#: (``SKIPPED_LINES``), about 1 s more on 10M rows but the same for any number of lines.
MOST_SKIPPED_LINES_IN_SQL = 4096
SKIPPED_LINES = "wa_skipped_lines"


@contextlib.contextmanager
def counting_lines(path: Path, *, find: bytes = b"") -> Iterator[concurrent.futures.Future[tuple[int, bool]]]:
    """``path``'s line count and whether it holds the byte ``find``, found in a thread while the
    caller has DuckDB read the file: both are needed only after that, and DuckDB releases the GIL
    while it works."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-audit-count") as pool:
        yield pool.submit(linereader.count_lines_finding, path, find)


def blank_lines(path: Path, lines: int, accounted: int) -> list[int] | None:
    """The blank lines that explain why a DuckDB reader accounted for fewer than all ``lines``
    (rows, plus a header), or None when blank lines do not explain it.

    A few blank lines (one at the end is common) are found and stepped over; with many,
    or with whitespace only DuckDB calls blank, rows and lines cannot be lined up.
    """
    if accounted == lines:
        return []
    blanks = linereader.blank_line_numbers(path)
    return blanks if blanks is not None and accounted == lines - len(blanks) else None


def skipped_lines_before(row: str, skipped: list[int]) -> str:
    """SQL: how many of the ascending line numbers ``skipped`` (lines that gave no row: unreadable,
    malformed, blank) come before the row whose place among the rows read (from 0) is ``row``.

    The k-th skipped line (from 1) has ``skipped[k-1] - k`` rows before it, so it comes before row r
    exactly when that number is at most r. The count is found by a binary search written as nested
    ``CASE``s: a few comparisons a row, the SQL growing with the lines.
    """
    rows_before = [line - k for k, line in enumerate(skipped, 1)]

    def count_in(low: int, high: int) -> str:  # the count is known to be within [low, high]
        if low == high:
            return str(low)
        middle = (low + high + 1) // 2
        return (f"CASE WHEN {row} >= {rows_before[middle - 1]} THEN {count_in(middle, high)} "
                f"ELSE {count_in(low, middle - 1)} END")

    return f"({count_in(0, len(rows_before))})"


def with_lines_skipped_before(con: duckdb.DuckDBPyConnection, skipped: list[int], rows: str) -> str:
    """SQL: ``rows`` (a relation whose ``rid`` is a row's place among the rows read, from 0) with
    ``skipped_before``, how many of ``skipped`` come before the row (as :func:`skipped_lines_before`
    counts them); the row's line is ``rid + 1 + skipped_before``.

    Past ``MOST_SKIPPED_LINES_IN_SQL`` lines an ASOF join finds, for every row at once, the last
    skipped line with at most ``rid`` rows before it, in ``SKIPPED_LINES``, which the caller drops
    once the statement has run.
    """
    if len(skipped) <= MOST_SKIPPED_LINES_IN_SQL:
        return f"(SELECT *, {skipped_lines_before('rid', skipped)} AS skipped_before FROM {rows})"
    con.register("wa_skipped_line_numbers", pa.table({"line": pa.array(skipped, pa.int64())}))
    # Consecutive skipped lines have as many rows before them: the last of them counts them all.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {SKIPPED_LINES} AS
        SELECT line - k AS rows_before, max(k) AS skipped
        FROM (SELECT line, row_number() OVER (ORDER BY line) AS k FROM wa_skipped_line_numbers)
        GROUP BY line - k
    """)
    con.unregister("wa_skipped_line_numbers")
    return (f"(SELECT r.*, coalesce(s.skipped, 0) AS skipped_before FROM {rows} r "
            f"ASOF LEFT JOIN {SKIPPED_LINES} s ON r.rid >= s.rows_before)")


def fill_raw_text(con: duckdb.DuckDBPyConnection, table: str, path: Path, rows: str = "true") -> None:
    """Give quarantined rows staged without their raw text (the fast CSV path) their line as written;
    ``rows`` (SQL) picks the rows of ``table`` that are ``path``'s."""
    numbers = [line for (line,) in con.execute(
        f"SELECT line FROM {table} WHERE final_reason IS NOT NULL AND raw IS NULL AND ({rows})").fetchall()]
    if not numbers:
        return
    con.register("picked", linereader.pick_lines(path, numbers))
    con.execute(f"""
        UPDATE {table} SET raw = regexp_replace(picked.raw, '\\r$', '')
        FROM picked WHERE picked.line = {table}.line AND ({rows})
    """)
    con.unregister("picked")
