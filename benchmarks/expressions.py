"""What each column of the JSONL load and of the replay's keys costs, and what the loaded tables weigh.

``python -m benchmarks.expressions DATASET [--repeat 2]``

For the statement that reads and judges ``callbacks.jsonl`` (the loader's parallel path) and for
the keys (``webhook_core.rules.keys``, over the loaded ``callback_rows``), times ``count(column)`` of each
output column alone: DuckDB computes only what that column needs, so the figure is the cost of the
column and what it depends on (the CSV read and the JSON parse for every JSONL column). Then loads
the dataset with ``keep_requests`` true and false and prints DuckDB's in-memory table bytes.
No memory limit: this is CPU per expression, not spilling.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb

from webhook_core import load_dataset
from webhook_core.load.dataset import _BLANK_LINE, _CALLBACK_FIELDS, _CALLBACK_PARTS, _json_line_text, connect
from webhook_core.quoting import quote_literal
from webhook_core.rules.keys import KEY_COLUMNS, keys_sql

JUDGED_COLUMNS = ("seq", "raw", "reason", "request_id", "received_at", "method", "url", "headers", "body",
                  "recorded_status", "recorded_body", "capture_notes")


def best_seconds(con: duckdb.DuckDBPyConnection, sql: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the fastest is shown")
    args = parser.parse_args()
    path = args.dataset / "callbacks.jsonl"

    con = connect()
    lines = (f"read_csv({quote_literal(str(path))}, columns = {{'raw': 'VARCHAR'}}, delim = chr(1), quote = '', "
             "escape = '', header = false, auto_detect = false)")
    blank = "regexp_full_match(coalesce(raw, ''), '[ \t]*')"
    reader = (f"(SELECT NULL::BIGINT AS line, raw, CASE WHEN {blank} THEN {_BLANK_LINE} END AS parse_error, "
              f"{_json_line_text('false')} AS doc FROM {lines})")
    judged = f"SELECT {_CALLBACK_FIELDS} FROM ({_CALLBACK_PARTS.format(source=reader)})"
    print(f"{path}: seconds for count(column) alone, fastest of {args.repeat}")
    figures = {"CSV read of the lines": f"SELECT count(raw) FROM {lines}",
               "+ each line's document text": f"SELECT count(doc) FROM {reader}",
               **{column: f"SELECT count({column}) FROM ({judged})" for column in JUDGED_COLUMNS}}
    for label, sql in figures.items():
        print(f"  {label:<28} {best_seconds(con, sql, args.repeat):6.2f}")
    every = ", ".join(f"count({c})" for c in JUDGED_COLUMNS)
    print(f"  {'every column':<28} {best_seconds(con, f'SELECT {every} FROM ({judged})', args.repeat):6.2f}")

    loaded = load_dataset(con, args.dataset)
    keys = keys_sql(loaded.webhooks, "callback_rows")
    print("keys from the loaded callback_rows: seconds for count(column) alone")
    for column in KEY_COLUMNS:
        print(f"  {column:<28} {best_seconds(con, f'SELECT count({column}) FROM ({keys})', args.repeat):6.2f}")
    every = ", ".join(f"count({c})" for c in KEY_COLUMNS)
    print(f"  {'every column':<28} {best_seconds(con, f'SELECT {every} FROM ({keys})', args.repeat):6.2f}")
    con.close()

    for keep_requests in (True, False):
        con = connect()
        load_dataset(con, args.dataset, keep_requests=keep_requests)
        (table_bytes,) = con.execute(
            "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'").fetchone() or (0,)
        print(f"in-memory tables after load_dataset(keep_requests={keep_requests}): {table_bytes / 2**20:,.0f} MiB")
        con.close()


if __name__ == "__main__":
    main()
