"""Loading a dataset folder: ``webhook_core.load_dataset`` and the tables it writes.

Rules are named as in docs/semantics.md: I (inputs), Q (quarantine). Every test
builds its dataset under ``tmp_path`` and re-reads the results from DuckDB.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from webhook_core import ConfigError, DatasetError, MissingFileError, WebhookAuditError, connect, load_dataset, replay
from webhook_core.load import callbacks as callback_loading
from webhook_core.load import linereader, numbering, progress

HAR_DIR = Path(__file__).parent / "data" / "har"
DISPATCH_COLUMNS = ("lead_id", "conversion_id", "advertiser_id", "external_id", "webhook_id", "created_at")
DISPATCH_HEADER = ",".join(DISPATCH_COLUMNS)
NOT_FOUND = '{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'

WEBHOOKS: list[dict[str, Any]] = [
    {"webhook_id": "wh-a", "advertiser_id": "A", "wait": True, "timeout_s": 30},
    {"webhook_id": "wh-json", "advertiser_id": "J"},
    {"webhook_id": "wh-acme", "advertiser_id": "ACME"},
    # Deleted at the start of 2026: no version is live for leads created later.
    {"webhook_id": "wh-old", "advertiser_id": "O", "active_to": "2026-01-01T00:00:00Z"},
]

T0 = "2026-11-20T10:00:00Z"
DROP = object()  # a field value meaning "leave the key out"


# --------------------------------------------------------------------------- helpers


def compact(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def drow(n: int, **fields: Any) -> dict[str, Any]:
    """A valid dispatch row ``L{n}``/``C{n}``; keyword arguments replace fields, ``DROP`` removes one."""
    row: dict[str, Any] = {"lead_id": f"L{n}", "conversion_id": f"C{n}", "advertiser_id": "A",
                           "external_id": f"E{n}", "webhook_id": "wh-a", "created_at": T0}
    row.update(fields)
    return {k: v for k, v in row.items() if v is not DROP}


def crow(n: int, **fields: Any) -> dict[str, Any]:
    """A valid callback row for conversion ``C{n}``, received ``n`` seconds after T0."""
    row: dict[str, Any] = {"received_at": f"2026-11-20T10:00:{n:02d}Z", "url": f"/webhooks/wh-a?pcid=C{n}"}
    row.update(fields)
    return {k: v for k, v in row.items() if v is not DROP}


def jsonl(*rows: dict[str, Any] | str | bytes, newline: bytes = b"\n") -> bytes:
    """One line per row (dicts as compact JSON, text and bytes as written), each ending in ``newline``."""
    out = b""
    for row in rows:
        if isinstance(row, dict):
            row = compact(row)
        out += (row.encode() if isinstance(row, str) else row) + newline
    return out


def csv_line(row: dict[str, Any]) -> str:
    return ",".join(str(row.get(c, "")) for c in DISPATCH_COLUMNS)


def csv_file(*rows: dict[str, Any] | str, newline: str = "\n") -> bytes:
    lines = [DISPATCH_HEADER, *(csv_line(r) if isinstance(r, dict) else r for r in rows)]
    return "".join(line + newline for line in lines).encode()


def make_dataset(folder: Path, *, dispatches: bytes | None = None, callbacks: bytes | None = None,
                 dispatch_name: str = "dispatches.jsonl", callback_name: str = "callbacks.jsonl",
                 webhooks: list[dict[str, Any]] | None = None) -> Path:
    """A dataset folder; dispatches default to one good row, callbacks to an empty file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "webhooks.json").write_text(json.dumps(WEBHOOKS if webhooks is None else webhooks), encoding="utf-8")
    (folder / dispatch_name).write_bytes(jsonl(drow(1)) if dispatches is None else dispatches)
    (folder / callback_name).write_bytes(b"" if callbacks is None else callbacks)
    return folder


def write_parquet(path: Path, select_sql: str) -> None:
    """Write ``select_sql`` (DuckDB SQL) to ``path`` as Parquet with DuckDB's COPY."""
    writer = duckdb.connect()
    try:
        writer.execute("SET TimeZone = 'UTC'")
        writer.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    finally:
        writer.close()


def quarantine(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, str, str]]:
    return con.execute("SELECT source_file, line, raw, reason FROM quarantine ORDER BY source_file, line").fetchall()


def reasons(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    return con.execute("SELECT line, reason FROM quarantine ORDER BY source_file, line").fetchall()


def report(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, int, int, int]]:
    rows = con.execute("SELECT table_name, source_file, read, loaded, quarantined FROM load_report").fetchall()
    return {table: (source, read, loaded, quarantined) for table, source, read, loaded, quarantined in rows}


def column(con: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    return [row[0] for row in con.execute(sql).fetchall()]


def assert_reconciles(con: duckdb.DuckDBPyConnection) -> None:
    """Q4: for every file, read = loaded + quarantined, and the counts are the tables' rows."""
    rows = con.execute("SELECT source_file, table_name, read, loaded, quarantined FROM load_report").fetchall()
    assert {table for _, table, *_ in rows} == {"dispatches", "callbacks"}
    for source, table, read, loaded, quarantined in rows:
        assert read == loaded + quarantined, source
        assert [loaded] == column(con, f"SELECT count(*) FROM {table}"), source
        assert [quarantined] == column(con, f"SELECT count(*) FROM quarantine WHERE source_file = '{source}'"), source
    # Nothing in quarantine belongs to a file the report does not know.
    assert set(column(con, "SELECT DISTINCT source_file FROM quarantine")) <= {r[0] for r in rows}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --------------------------------------------------------------------------- Q2: callbacks


CALLBACK_BAD_LINES = [
    pytest.param('{"received_at":"2026-11-20T10:00:02Z","url":', "not valid JSON", id="truncated-json"),
    pytest.param("{'received_at': '2026-11-20T10:00:02Z'}", "not valid JSON", id="single-quotes"),
    pytest.param("hello", "not valid JSON", id="plain-text"),
    pytest.param('["2026-11-20T10:00:02Z","/webhooks/wh-a"]', "not a JSON object", id="array"),
    pytest.param('"/webhooks/wh-a"', "not a JSON object", id="string"),
    pytest.param("42", "not a JSON object", id="number"),
    pytest.param("null", "not a JSON object", id="null"),
    pytest.param('{"url":"/webhooks/wh-a?pcid=C2"}', "missing received_at", id="received_at-absent"),
    pytest.param('{"received_at":null,"url":"/webhooks/wh-a?pcid=C2"}', "missing received_at",
                 id="received_at-null"),
    pytest.param('{"received_at":"yesterday","url":"/webhooks/wh-a?pcid=C2"}',
                 "bad received_at: not an ISO 8601 timestamp", id="received_at-text"),
    pytest.param('{"received_at":"2026-13-45T10:00:00Z","url":"/webhooks/wh-a?pcid=C2"}',
                 "bad received_at: not an ISO 8601 timestamp", id="received_at-impossible-date"),
    pytest.param('{"received_at":1763632800,"url":"/webhooks/wh-a?pcid=C2"}',
                 "bad received_at: not an ISO 8601 timestamp", id="received_at-number"),
    pytest.param('{"received_at":"2026-11-20T10:00:02Z"}', "missing url", id="url-absent"),
    pytest.param('{"received_at":"2026-11-20T10:00:02Z","url":null}', "missing url", id="url-null"),
    pytest.param('{"received_at":"2026-11-20T10:00:02Z","url":""}', "missing url", id="url-empty"),
    pytest.param('{"received_at":"2026-11-20T10:00:02Z","url":123}', "bad url: not a string", id="url-number"),
    pytest.param('{"received_at":"2026-11-20T10:00:02Z","url":["/webhooks/wh-a"]}', "bad url: not a string",
                 id="url-array"),
    pytest.param('{"received_at":"2026-11-20T10:00:02Z","url":{"path":"/webhooks/wh-a"}}',
                 "bad url: not a string", id="url-object"),
]


@pytest.mark.parametrize(("bad_line", "reason"), CALLBACK_BAD_LINES)
def test_callback_quarantine_reason(con: duckdb.DuckDBPyConnection, tmp_path: Path, bad_line: str,
                                    reason: str) -> None:
    """Q1/Q2: the bad line goes to quarantine with file, line, raw text and reason; the others load."""
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1), bad_line, crow(3)))
    load_dataset(con, folder)
    assert quarantine(con) == [("callbacks.jsonl", 2, bad_line, reason)]
    assert column(con, "SELECT seq FROM callbacks ORDER BY seq") == [1, 3]
    assert report(con)["callbacks"] == ("callbacks.jsonl", 3, 2, 1)


def test_callback_reason_order_first_problem_wins(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """A row with several problems gets one reason: received_at is judged before url."""
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl('{"received_at":"nope"}', '{"method":"GET"}'))
    load_dataset(con, folder)
    assert reasons(con) == [(1, "bad received_at: not an ISO 8601 timestamp"), (2, "missing received_at")]


# --------------------------------------------------------------------------- Q3: dispatches

DISPATCH_BAD_ROWS = [
    pytest.param(drow(2, lead_id=DROP), "missing lead_id", id="lead_id-absent"),
    pytest.param(drow(2, lead_id=None), "missing lead_id", id="lead_id-null"),
    pytest.param(drow(2, lead_id=""), "missing lead_id", id="lead_id-empty"),
    pytest.param(drow(2, conversion_id=DROP), "missing conversion_id", id="conversion_id-absent"),
    pytest.param(drow(2, conversion_id=""), "missing conversion_id", id="conversion_id-empty"),
    pytest.param(drow(2, advertiser_id=DROP), "missing advertiser_id", id="advertiser_id-absent"),
    pytest.param(drow(2, webhook_id=DROP), "missing webhook_id", id="webhook_id-absent"),
    pytest.param(drow(2, created_at=DROP), "missing created_at", id="created_at-absent"),
    pytest.param(drow(2, created_at=None), "missing created_at", id="created_at-null"),
    pytest.param(drow(2, created_at=""), "missing created_at", id="created_at-empty"),
    pytest.param(drow(2, created_at="soon"), "bad created_at: not an ISO 8601 timestamp", id="created_at-text"),
    pytest.param(drow(2, created_at=1763632800), "bad created_at: not an ISO 8601 timestamp",
                 id="created_at-number"),
    pytest.param(drow(2, webhook_id="wh-nope"), "unknown webhook_id (not in webhooks.json)", id="unknown-webhook"),
    pytest.param(drow(2, webhook_id="wh-old"), "webhook has no version live at created_at", id="no-live-version"),
    pytest.param(drow(2, conversion_id="C1"), "duplicate conversion_id (first on line 1)", id="duplicate-conversion"),
]


@pytest.mark.parametrize(("bad_row", "reason"), DISPATCH_BAD_ROWS)
def test_dispatch_quarantine_reason_jsonl(con: duckdb.DuckDBPyConnection, tmp_path: Path, bad_row: dict[str, Any],
                                          reason: str) -> None:
    """Q1/Q3 for a JSONL dispatches file: exact reason, line and raw line; line 1 and 3 load, each
    keeping its position in the input as its ``row`` (Q8: the tie-break between leads, M3)."""
    raw = compact(bad_row)
    folder = make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1), raw, drow(3)))
    load_dataset(con, folder)
    assert quarantine(con) == [("dispatches.jsonl", 2, raw, reason)]
    assert con.execute('SELECT "row", lead_id, source_line FROM dispatches ORDER BY "row"').fetchall() == [
        (1, "L1", 1), (3, "L3", 3)]
    assert report(con)["dispatches"] == ("dispatches.jsonl", 3, 2, 1)


@pytest.mark.parametrize(("bad_line", "reason"), [
    pytest.param("not json", "not valid JSON", id="not-json"),
    pytest.param('{"lead_id":"L2",', "not valid JSON", id="truncated"),
    pytest.param('["L2","C2"]', "not a JSON object", id="array"),
    pytest.param('"L2"', "not a JSON object", id="string"),
])
def test_dispatch_jsonl_unparseable_line(con: duckdb.DuckDBPyConnection, tmp_path: Path, bad_line: str,
                                         reason: str) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1), bad_line, drow(3)))
    load_dataset(con, folder)
    assert quarantine(con) == [("dispatches.jsonl", 2, bad_line, reason)]
    assert column(con, 'SELECT lead_id FROM dispatches ORDER BY "row"') == ["L1", "L3"]


def test_duplicate_conversion_id_keeps_first_and_names_its_line(con: duckdb.DuckDBPyConnection,
                                                                tmp_path: Path) -> None:
    """Q3: the first occurrence is kept; every later one names the first one's line."""
    rows = jsonl(drow(1), drow(2), "", drow(3, conversion_id="C2"), drow(4), drow(5, conversion_id="C2"))
    folder = make_dataset(tmp_path / "ds", dispatches=rows)
    load_dataset(con, folder)
    assert reasons(con) == [(4, "duplicate conversion_id (first on line 2)"),
                            (6, "duplicate conversion_id (first on line 2)")]
    assert con.execute('SELECT lead_id, conversion_id FROM dispatches ORDER BY "row"').fetchall() == [
        ("L1", "C1"), ("L2", "C2"), ("L4", "C4")]


@pytest.mark.parametrize(("bad_row", "reason"), [
    pytest.param(drow(3, lead_id=""), "missing lead_id", id="lead_id"),
    pytest.param(drow(3, conversion_id=""), "missing conversion_id", id="conversion_id"),
    pytest.param(drow(3, advertiser_id=""), "missing advertiser_id", id="advertiser_id"),
    pytest.param(drow(3, webhook_id=""), "missing webhook_id", id="webhook_id"),
    pytest.param(drow(3, created_at=""), "missing created_at", id="created_at"),
    pytest.param(drow(3, created_at="20 Nov 2026"), "bad created_at: not an ISO 8601 timestamp", id="bad-created_at"),
    pytest.param(drow(3, webhook_id="wh-nope"), "unknown webhook_id (not in webhooks.json)", id="unknown-webhook"),
    pytest.param(drow(3, webhook_id="wh-old"), "webhook has no version live at created_at", id="no-live-version"),
    pytest.param(drow(3, conversion_id="C2"), "duplicate conversion_id (first on line 2)", id="duplicate"),
])
def test_dispatch_quarantine_reason_csv(con: duckdb.DuckDBPyConnection, tmp_path: Path, bad_row: dict[str, Any],
                                        reason: str) -> None:
    """Q3/Q5 for CSV: line numbers count from the header (line 1); raw is the line as written."""
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(2), bad_row, drow(4)),
                          dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert quarantine(con) == [("dispatches.csv", 3, csv_line(bad_row), reason)]
    assert con.execute('SELECT lead_id, source_line FROM dispatches ORDER BY "row"').fetchall() == [
        ("L2", 2), ("L4", 4)]
    assert report(con)["dispatches"] == ("dispatches.csv", 3, 2, 1)


def test_malformed_csv_row_carries_duckdb_line_and_message(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Q3/Q5: a row with too many columns is `malformed CSV row: …` at DuckDB's exact line."""
    extra = csv_line(drow(3)) + ",surplus"
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(2), extra), dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert quarantine(con) == [(
        "dispatches.csv", 3, extra,
        "malformed CSV row: too many columns (Expected Number of Columns: 6 Found: 7)")]
    assert column(con, "SELECT lead_id FROM dispatches") == ["L2"]
    assert report(con)["dispatches"] == ("dispatches.csv", 2, 1, 1)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_malformed_csv_row_text_is_its_own_line(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                newline: str) -> None:
    """Q5: a malformed row's raw text is its line as written, without the blank lines before it (or, in a
    CRLF file, the LF that DuckDB's text of it opens with)."""
    extra = csv_line(drow(3)) + ",surplus"
    dispatches = "".join(line + newline for line in [DISPATCH_HEADER, csv_line(drow(2)), "", "", extra, "L4,C4"])
    folder = make_dataset(tmp_path / "ds", dispatches=dispatches.encode(), dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert [(line, raw) for _, line, raw, _ in quarantine(con)] == [(5, extra), (6, "L4,C4")]


def test_csv_lines_after_a_malformed_row_stay_exact(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Q5: without quoted newlines or blank lines, CSV line numbers are the file's line numbers."""
    rows = csv_file(drow(2), csv_line(drow(3)) + ",surplus", drow(4), drow(5, conversion_id="C4"))
    folder = make_dataset(tmp_path / "ds", dispatches=rows, dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert con.execute('SELECT lead_id, source_line FROM dispatches ORDER BY "row"').fetchall() == [
        ("L2", 2), ("L4", 4)]
    assert reasons(con) == [
        (3, "malformed CSV row: too many columns (Expected Number of Columns: 6 Found: 7)"),
        (5, "duplicate conversion_id (first on line 4)"),
    ]


def test_csv_row_with_missing_columns_is_one_quarantined_record(con: duckdb.DuckDBPyConnection,
                                                                tmp_path: Path) -> None:
    rows = csv_file(drow(2), "L3,C3,A", drow(4))
    folder = make_dataset(tmp_path / "ds", dispatches=rows, dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert reasons(con) == [(3, "malformed CSV row: missing columns (Expected Number of Columns: 6 Found: 3)")]
    assert report(con)["dispatches"] == ("dispatches.csv", 3, 2, 1)


def test_csv_quarantine_raw_is_the_line_as_written(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Q1: raw text of the row, as in the file."""
    line = '"L3","","A, Inc","E3","wh-a","2026-11-20T10:00:00Z"'
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(2), line), dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert quarantine(con) == [("dispatches.csv", 3, line, "missing conversion_id")]


def test_csv_blank_line_before_header(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=b"\n" + csv_file(drow(2)), dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert column(con, "SELECT lead_id FROM dispatches") == ["L2"]


def test_csv_header_in_any_order_with_extra_columns(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = ("note,created_at,webhook_id,external_id,advertiser_id,conversion_id,lead_id\n"
            "hello,2026-11-20T10:00:00Z,wh-a,E9,A9,C9,L9\n")
    folder = make_dataset(tmp_path / "ds", dispatches=text.encode(), dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert con.execute(
        "SELECT lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at FROM dispatches"
    ).fetchall() == [("L9", "C9", "A9", "E9", "wh-a", utc("2026-11-20T10:00:00+00:00"))]


def test_csv_byte_order_mark_before_header(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=b"\xef\xbb\xbf" + csv_file(drow(2)),
                          dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert column(con, "SELECT lead_id FROM dispatches") == ["L2"]


# --------------------------------------------------------------------------- Q4: reconciliation and blank lines


def _messy_jsonl(folder: Path) -> tuple[int, int]:
    dispatches = jsonl(drow(1), "", drow(2, lead_id=DROP), b'{"lead_id":"L\xff3"}', "  ", drow(4, conversion_id="C1"),
                       "[]", drow(5, webhook_id="wh-nope"), drow(6), newline=b"\r\n")
    callbacks = jsonl(crow(1), "{oops", "", '{"url":"/x"}', b'{"received_at":"2026-11-20T10:00:01Z","url":"/\xfe"}',
                      crow(2, url=5), "\t", crow(3, received_at="later"), crow(4)) + b'{"received_at":"2026'
    make_dataset(folder, dispatches=dispatches, callbacks=callbacks)
    return 7, 8


def _messy_csv_and_lossy_har(folder: Path) -> tuple[int, int]:
    dispatches = csv_file(drow(1), drow(2, conversion_id=""), csv_line(drow(3)) + ",x", drow(4, created_at="x"),
                          drow(5, conversion_id="C1"), drow(6, webhook_id="wh-old"), drow(7), newline="\r\n")
    make_dataset(folder, dispatches=dispatches, dispatch_name="dispatches.csv",
                 callbacks=(HAR_DIR / "lossy.har").read_bytes(), callback_name="callbacks.har")
    return 7, 6


def _mitmproxy_har(folder: Path) -> tuple[int, int]:
    make_dataset(folder, callbacks=(HAR_DIR / "mitmproxy.har").read_bytes(), callback_name="callbacks.har")
    return 1, 12


def _parquet_both(folder: Path) -> tuple[int, int]:
    make_dataset(folder)
    (folder / "dispatches.jsonl").unlink()
    (folder / "callbacks.jsonl").unlink()
    write_parquet(folder / "dispatches.parquet", """
        SELECT * FROM (VALUES
            ('L1', 'C1', 'A', 'E1', 'wh-a', TIMESTAMPTZ '2026-11-20 10:00:00+00'),
            ('L2', NULL, 'A', NULL, 'wh-a', TIMESTAMPTZ '2026-11-20 10:00:00+00'),
            ('L3', 'C1', 'A', NULL, 'wh-a', TIMESTAMPTZ '2026-11-20 10:00:00+00'),
            ('L4', 'C4', 'A', NULL, 'wh-a', NULL)
        ) t(lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at)""")
    write_parquet(folder / "callbacks.parquet", """
        SELECT * FROM (VALUES
            (TIMESTAMPTZ '2026-11-20 10:00:01+00', '/webhooks/wh-a?pcid=C1'),
            (NULL, '/webhooks/wh-a?pcid=C1'),
            (TIMESTAMPTZ '2026-11-20 10:00:03+00', NULL)
        ) t(received_at, url)""")
    return 4, 3


@pytest.mark.parametrize("build", [
    pytest.param(_messy_jsonl, id="jsonl-crlf-blank-utf8-truncated"),
    pytest.param(_messy_csv_and_lossy_har, id="csv-malformed+lossy-har"),
    pytest.param(_mitmproxy_har, id="mitmproxy-har"),
    pytest.param(_parquet_both, id="parquet-nulls"),
])
def test_every_file_reconciles(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                               build: Callable[[Path], tuple[int, int]]) -> None:
    """Q4: read = loaded + quarantined for every file, and read counts records (not blank lines)."""
    dispatches_read, callbacks_read = build(tmp_path / "ds")
    dataset = load_dataset(con, tmp_path / "ds")
    assert_reconciles(con)
    got = report(con)
    assert (got["dispatches"][1], got["callbacks"][1]) == (dispatches_read, callbacks_read)
    # The returned Dataset says the same as the load_report table.
    assert sorted((f.table, f.path, f.read, f.loaded, f.quarantined) for f in dataset.files) == sorted(
        (table, *values) for table, values in got.items())


def test_messy_jsonl_quarantine_in_detail(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """The messy JSONL pair above, line by line: CRLF stripped from raw, blank lines count as lines."""
    _messy_jsonl(tmp_path / "ds")
    load_dataset(con, tmp_path / "ds")
    assert quarantine(con) == [
        ("callbacks.jsonl", 2, "{oops", "not valid JSON"),
        ("callbacks.jsonl", 4, '{"url":"/x"}', "missing received_at"),
        ("callbacks.jsonl", 5, '{"received_at":"2026-11-20T10:00:01Z","url":"/\\xfe"}', "not valid UTF-8"),
        ("callbacks.jsonl", 6, compact(crow(2, url=5)), "bad url: not a string"),
        ("callbacks.jsonl", 8, compact(crow(3, received_at="later")), "bad received_at: not an ISO 8601 timestamp"),
        ("callbacks.jsonl", 10, '{"received_at":"2026', "not valid JSON"),
        ("dispatches.jsonl", 3, compact(drow(2, lead_id=DROP)), "missing lead_id"),
        ("dispatches.jsonl", 4, '{"lead_id":"L\\xff3"}', "not valid UTF-8"),
        ("dispatches.jsonl", 6, compact(drow(4, conversion_id="C1")), "duplicate conversion_id (first on line 1)"),
        ("dispatches.jsonl", 7, "[]", "not a JSON object"),
        ("dispatches.jsonl", 8, compact(drow(5, webhook_id="wh-nope")), "unknown webhook_id (not in webhooks.json)"),
    ]
    assert column(con, "SELECT seq FROM callbacks ORDER BY seq") == [1, 9]
    assert con.execute('SELECT lead_id, source_line FROM dispatches ORDER BY "row"').fetchall() == [
        ("L1", 1), ("L6", 9)]


def test_blank_lines_are_not_records(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Q4: empty, whitespace-only and CR-only lines are skipped but still count for line numbers."""
    callbacks = b"\n" + jsonl(crow(1)) + b"   \n\t\n\r\n" + jsonl(crow(2)) + b"\n\n"
    dispatches = b"\n \n" + jsonl(drow(1)) + b"\n" + jsonl(drow(2))
    folder = make_dataset(tmp_path / "ds", dispatches=dispatches, callbacks=callbacks)
    load_dataset(con, folder)
    assert quarantine(con) == []
    assert con.execute("SELECT seq, request_id FROM callbacks ORDER BY seq").fetchall() == [(2, "2"), (6, "6")]
    assert con.execute('SELECT lead_id, source_line FROM dispatches ORDER BY "row"').fetchall() == [
        ("L1", 3), ("L2", 5)]
    assert report(con) == {"dispatches": ("dispatches.jsonl", 2, 2, 0), "callbacks": ("callbacks.jsonl", 2, 2, 0)}


def test_empty_files_load_nothing(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=b"", callbacks=b"\n\n")
    load_dataset(con, folder)
    assert report(con) == {"dispatches": ("dispatches.jsonl", 0, 0, 0), "callbacks": ("callbacks.jsonl", 0, 0, 0)}


def test_last_line_without_newline_is_read(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1)) + compact(crow(2)).encode())
    load_dataset(con, folder)
    assert column(con, "SELECT request_id FROM callbacks ORDER BY seq") == ["1", "2"]


# --------------------------------------------------------------------------- CRLF and encodings


def test_crlf_line_endings(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Windows line endings: rows load, quarantined raw text has no trailing CR."""
    folder = make_dataset(
        tmp_path / "ds",
        dispatches=jsonl(drow(1), drow(2, created_at="never"), newline=b"\r\n"),
        callbacks=jsonl(crow(1, body="pcid=C1"), '{"url":"/x"}', newline=b"\r\n"),
    )
    load_dataset(con, folder)
    assert quarantine(con) == [
        ("callbacks.jsonl", 2, '{"url":"/x"}', "missing received_at"),
        ("dispatches.jsonl", 2, compact(drow(2, created_at="never")), "bad created_at: not an ISO 8601 timestamp"),
    ]
    assert con.execute("SELECT url, body FROM callbacks").fetchall() == [("/webhooks/wh-a?pcid=C1", "pcid=C1")]
    assert column(con, "SELECT created_at FROM dispatches") == [utc("2026-11-20T10:00:00+00:00")]


def test_crlf_csv(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(1), drow(2, advertiser_id=""), newline="\r\n"),
                          dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert quarantine(con) == [("dispatches.csv", 3, csv_line(drow(2, advertiser_id="")), "missing advertiser_id")]
    assert con.execute("SELECT lead_id, created_at FROM dispatches").fetchall() == [
        ("L1", utc("2026-11-20T10:00:00+00:00"))]


def test_invalid_utf8_line_is_quarantined_with_escaped_raw(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """A line that is not UTF-8 is quarantined alone; its raw text shows the bad bytes as \\xNN."""
    bad = b'{"received_at":"2026-11-20T10:00:02Z","url":"/webhooks/wh-a?pcid=C\xe92\xff"}'
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1, body="é=ü"), bad, crow(3)))
    load_dataset(con, folder)
    assert quarantine(con) == [(
        "callbacks.jsonl", 2, '{"received_at":"2026-11-20T10:00:02Z","url":"/webhooks/wh-a?pcid=C\\xe92\\xff"}',
        "not valid UTF-8")]
    assert con.execute("SELECT seq, body FROM callbacks ORDER BY seq").fetchall() == [(1, "é=ü"), (3, None)]


def test_invalid_utf8_dispatch_line(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    bad = b'{"lead_id":"L\xc3","conversion_id":"C2"}'
    folder = make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1), bad, drow(3)))
    load_dataset(con, folder)
    assert quarantine(con) == [("dispatches.jsonl", 2, '{"lead_id":"L\\xc3","conversion_id":"C2"}',
                                "not valid UTF-8")]
    assert column(con, 'SELECT lead_id FROM dispatches ORDER BY "row"') == ["L1", "L3"]


# --------------------------------------------------------------------------- I1: IDs are text


def test_csv_ids_keep_leading_zeros(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    text = DISPATCH_HEADER + "\n00123,000456,0007,0008,wh-a,2026-11-20T10:00:00Z\n"
    folder = make_dataset(tmp_path / "ds", dispatches=text.encode(), dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert con.execute("SELECT lead_id, conversion_id, advertiser_id, external_id FROM dispatches").fetchall() == [
        ("00123", "000456", "0007", "0008")]


def test_id_columns_are_text(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load_dataset(con, make_dataset(tmp_path / "ds"))
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE dispatches)").fetchall())
    assert {name: types[name] for name in DISPATCH_COLUMNS} == {
        "lead_id": "VARCHAR", "conversion_id": "VARCHAR", "advertiser_id": "VARCHAR", "external_id": "VARCHAR",
        "webhook_id": "VARCHAR", "created_at": "TIMESTAMP WITH TIME ZONE"}


@pytest.mark.parametrize(("number", "text"), [
    pytest.param("12345", "12345", id="integer"),
    pytest.param("-0", "0", id="minus-zero"),
    pytest.param("12345.0", "12345", id="whole-fraction"),
    pytest.param("1e3", "1000", id="exponent"),
    pytest.param("123456789012345678901234567890", "123456789012345678901234567890", id="beyond-64-bit"),
])
def test_json_number_ids_become_text(con: duckdb.DuckDBPyConnection, tmp_path: Path, number: str,
                                     text: str) -> None:
    """I1 + L6: a JSON number conversion_id/lead_id becomes its plain decimal digits."""
    line = ('{"lead_id":' + number + ',"conversion_id":' + number
            + ',"advertiser_id":7,"external_id":8,"webhook_id":"wh-a","created_at":"2026-11-20T10:00:00Z"}')
    load_dataset(con, make_dataset(tmp_path / "ds", dispatches=jsonl(line)))
    assert con.execute("SELECT lead_id, conversion_id, advertiser_id, external_id FROM dispatches").fetchall() == [
        (text, text, "7", "8")]


def test_json_fraction_id_is_absent(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """L6: a number with a fractional value gives nothing, so the row lacks its conversion_id."""
    load_dataset(con, make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1, conversion_id=12.5))))
    assert reasons(con) == [(1, "missing conversion_id")]


@pytest.mark.parametrize("external_id", [pytest.param("", id="empty"), pytest.param(None, id="null"),
                                         pytest.param(DROP, id="absent")])
def test_empty_external_id_is_absent_jsonl(con: duckdb.DuckDBPyConnection, tmp_path: Path, external_id: Any) -> None:
    load_dataset(con, make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1, external_id=external_id))))
    assert con.execute("SELECT lead_id, external_id FROM dispatches").fetchall() == [("L1", None)]


def test_empty_external_id_is_absent_csv(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(1, external_id="")),
                          dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert con.execute("SELECT lead_id, external_id FROM dispatches").fetchall() == [("L1", None)]


def test_callback_request_id_is_text(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1, request_id="00123"), crow(2, request_id=77),
                                                           crow(3, request_id=""), crow(4)))
    load_dataset(con, folder)
    assert column(con, "SELECT request_id FROM callbacks ORDER BY seq") == ["00123", "77", "3", "4"]


# --------------------------------------------------------------------------- I2: timestamps

TIMESTAMPS = [
    pytest.param("2026-11-20T10:00:00Z", "2026-11-20T10:00:00+00:00", id="zulu"),
    pytest.param("2026-11-20T12:00:00+02:00", "2026-11-20T10:00:00+00:00", id="plus-offset"),
    pytest.param("2026-11-20T05:00:00-05:00", "2026-11-20T10:00:00+00:00", id="minus-offset"),
    pytest.param("2026-11-20T15:30:00+05:30", "2026-11-20T10:00:00+00:00", id="half-hour-offset"),
    pytest.param("2026-11-21T01:00:00+15:00", "2026-11-20T10:00:00+00:00", id="offset-crosses-date"),
    pytest.param("2026-11-20T10:00:00", "2026-11-20T10:00:00+00:00", id="naive-is-utc"),
    pytest.param("2026-11-20 10:00:00", "2026-11-20T10:00:00+00:00", id="naive-space-separator"),
    pytest.param("2026-11-20T10:00:00.123456Z", "2026-11-20T10:00:00.123456+00:00", id="microseconds"),
    pytest.param("2026-11-20T10:00:00.5+01:00", "2026-11-20T09:00:00.500000+00:00", id="fraction-with-offset"),
    pytest.param("2026-11-20", "2026-11-20T00:00:00+00:00", id="date-only-is-midnight-utc"),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS)
def test_timestamp_parsing(con: duckdb.DuckDBPyConnection, tmp_path: Path, text: str, expected: str) -> None:
    """I2 for received_at and created_at, whatever zone the connection had before loading."""
    con.execute("SET TimeZone = 'America/New_York'")
    folder = make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1, created_at=text)),
                          callbacks=jsonl(crow(1, received_at=text)))
    load_dataset(con, folder)
    moment = utc(expected)
    assert con.execute("SELECT received_at, epoch_us(received_at) FROM callbacks").fetchall() == [
        (moment, (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))]
    assert column(con, "SELECT created_at FROM dispatches") == [moment]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS[:7:3])
def test_created_at_parsing_csv(con: duckdb.DuckDBPyConnection, tmp_path: Path, text: str, expected: str) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(1, created_at=text)),
                          dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    assert column(con, "SELECT created_at FROM dispatches") == [utc(expected)]


@pytest.mark.parametrize("word", ["infinity", "-infinity", "epoch"])
def test_special_timestamp_words_are_not_iso_8601(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                  word: str) -> None:
    folder = make_dataset(tmp_path / "ds", dispatches=jsonl(drow(1), drow(2, created_at=word)),
                          callbacks=jsonl(crow(1), crow(2, received_at=word)))
    load_dataset(con, folder)
    assert reasons(con) == [(2, "bad received_at: not an ISO 8601 timestamp"),
                            (2, "bad created_at: not an ISO 8601 timestamp")]


# --------------------------------------------------------------------------- I3: callback JSONL fields


@pytest.mark.parametrize("headers", [
    pytest.param({"Content-Type": "application/json", "X-Lead-Id": "C1"}, id="object"),
    pytest.param([["Content-Type", "application/json"], ["X-Lead-Id", "C1"]], id="list-of-pairs"),
    pytest.param([{"name": "Content-Type", "value": "application/json"}, {"name": "X-Lead-Id", "value": "C1"}],
                 id="list-of-name-value"),
])
def test_header_shapes(con: duckdb.DuckDBPyConnection, tmp_path: Path, headers: Any) -> None:
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1, headers=headers))))
    assert con.execute("SELECT headers, capture_notes FROM callbacks").fetchall() == [(
        [{"name": "Content-Type", "value": "application/json"}, {"name": "X-Lead-Id", "value": "C1"}],
        ["body_absent"])]


@pytest.mark.parametrize("headers", [
    pytest.param([["X-Lead-Id", "C1"], ["x-lead-id", "C2"], ["X-Other", ""]], id="list-of-pairs"),
    pytest.param([{"name": "X-Lead-Id", "value": "C1"}, {"name": "x-lead-id", "value": "C2"},
                  {"name": "X-Other", "value": ""}], id="list-of-name-value"),
])
def test_repeated_headers_are_kept_in_order(con: duckdb.DuckDBPyConnection, tmp_path: Path, headers: Any) -> None:
    """L4: repeated headers stay, in order, with their own casing."""
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1, headers=headers, body=""))))
    assert con.execute("SELECT headers, capture_notes FROM callbacks").fetchall() == [(
        [{"name": "X-Lead-Id", "value": "C1"}, {"name": "x-lead-id", "value": "C2"},
         {"name": "X-Other", "value": ""}], [])]


@pytest.mark.parametrize("body", [
    pytest.param({"pcid": "C1", "data": {"ref": "E1"}, "amount": 12.5}, id="object"),
    pytest.param([{"pcid": "C1"}, 2], id="array"),
])
def test_body_given_as_json_is_kept_as_json_text(con: duckdb.DuckDBPyConnection, tmp_path: Path, body: Any) -> None:
    """I3: a JSON object or array body is kept as its JSON text and noted body_not_text."""
    line = json.dumps(crow(1, body=body))  # with spaces, as a logger might write it
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=jsonl(line)))
    ((text, notes),) = con.execute("SELECT body, capture_notes FROM callbacks").fetchall()
    assert isinstance(text, str)
    assert json.loads(text) == body
    if isinstance(body, dict):
        assert list(json.loads(text)) == list(body)  # key order kept
    assert notes == ["body_not_text"]


@pytest.mark.parametrize(("fields", "body", "notes"), [
    pytest.param({}, None, ["body_absent"], id="absent"),
    pytest.param({"body": None}, None, ["body_absent"], id="null"),
    pytest.param({"body": ""}, "", [], id="empty-string-is-a-body"),
    pytest.param({"body": "pcid=C1&status=sold"}, "pcid=C1&status=sold", [], id="text"),
    pytest.param({"body": '{"pcid": "C1",'}, '{"pcid": "C1",', [], id="invalid-json-text-kept-verbatim"),
])
def test_body_absent_and_text(con: duckdb.DuckDBPyConnection, tmp_path: Path, fields: dict[str, Any],
                              body: str | None, notes: list[str]) -> None:
    """I3/I6: a row without a body is loaded and noted body_absent."""
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1, **fields))))
    assert con.execute("SELECT body, capture_notes FROM callbacks").fetchall() == [(body, notes)]


def test_callback_defaults_and_recorded_answer(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """I3: method defaults to POST, request_id to the line number; the recorded answer is kept."""
    rows = jsonl(
        "",
        crow(1),
        crow(2, method="GET", request_id="req-2", response_status=404, response_body=NOT_FOUND),
        crow(3, method="PUT", response_status=200, response_body='{"status":"ok"}'),
        crow(4, response_status=0),
    )
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=rows))
    assert con.execute(
        "SELECT seq, request_id, method, url, recorded_status, recorded_body FROM callbacks ORDER BY seq"
    ).fetchall() == [
        (2, "2", "POST", "/webhooks/wh-a?pcid=C1", None, None),
        (3, "req-2", "GET", "/webhooks/wh-a?pcid=C2", 404, NOT_FOUND),
        (4, "4", "PUT", "/webhooks/wh-a?pcid=C3", 200, '{"status":"ok"}'),
        (5, "5", "POST", "/webhooks/wh-a?pcid=C4", None, None),
    ]


def test_callback_url_is_kept_as_written(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    url = "https://cb.example.com/webhooks/wh-a?external_id=A%20B%2B1&x=%FF#frag"
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1, url=url))))
    assert column(con, "SELECT url FROM callbacks") == [url]


# --------------------------------------------------------------------------- I4: HAR


def _har_entries(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((HAR_DIR / name).read_text(encoding="utf-8"))["log"]["entries"]
    return entries


@pytest.fixture
def mitmproxy_loaded(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    folder = make_dataset(tmp_path / "ds", callbacks=b"", callback_name="callbacks.har")
    shutil.copyfile(HAR_DIR / "mitmproxy.har", folder / "callbacks.har")
    load_dataset(con, folder)
    return con


def test_mitmproxy_har_loads_every_entry(mitmproxy_loaded: duckdb.DuckDBPyConnection) -> None:
    con = mitmproxy_loaded
    assert quarantine(con) == []
    assert report(con)["callbacks"] == ("callbacks.har", 12, 12, 0)
    # request_id is the 1-based position in log.entries (mitmproxy writes no _request_id).
    assert con.execute("SELECT seq, request_id FROM callbacks ORDER BY seq").fetchall() == [
        (n, str(n)) for n in range(1, 13)]


def test_mitmproxy_har_requests(mitmproxy_loaded: duckdb.DuckDBPyConnection) -> None:
    """I4: method, url (path and query as written) and body of each entry, as the README lists them."""
    rows = mitmproxy_loaded.execute("SELECT method, url, body, capture_notes FROM callbacks ORDER BY seq").fetchall()
    assert all(url.startswith("http://127.0.0.1:") for _, url, _, _ in rows)
    assert [(method, "/" + url.split("/", 3)[3], body, notes) for method, url, body, notes in rows] == [
        ("POST", "/webhooks/wh-acme?pcid=PC-1001&status=approved", "", []),
        ("POST", "/webhooks/wh-acme", "pcid=PC-1002&status=sold", []),
        ("POST", "/webhooks/wh-json", '{"data":{"ref":"EXT-77"},"status":"approved","amount":12.5}', []),
        ("POST", "/webhooks/wh-json", '{"pcid":12345}', []),
        ("POST", "/webhooks/wh-json", '{"pcid": "PC-1003",', []),
        ("GET", "/webhooks/wh-acme?pcid=PC-1004", None, ["body_absent"]),  # mitmproxy writes no postData for GET
        ("POST", "/webhooks/wh-acme", "", []),
        ("POST", "/webhooks/wh-acme", "", []),
        ("POST", "/webhooks/wh-acme?external_id=A%20B%2B1", "", []),
        ("POST", "/webhooks/wh-unknown?pcid=PC-1", "", []),
        ("POST", "/webhooks/wh-acme?pcid=missing&status=approved", "", []),
        ("PUT", "/webhooks/wh-acme", '{"pcid":"PC-1008","status":"updated"}', []),
    ]


def test_mitmproxy_har_received_at_is_started_date_time(mitmproxy_loaded: duckdb.DuckDBPyConnection) -> None:
    expected = [datetime.fromisoformat(e["startedDateTime"]) for e in _har_entries("mitmproxy.har")]
    assert column(mitmproxy_loaded, "SELECT received_at FROM callbacks ORDER BY seq") == expected


def test_mitmproxy_har_headers(mitmproxy_loaded: duckdb.DuckDBPyConnection) -> None:
    """Repeated X-Lead-Id headers are both kept, in wire order, with the sender's casing."""
    headers = column(mitmproxy_loaded, "SELECT headers FROM callbacks ORDER BY seq")
    lead_headers = [[h["value"] for h in entry if h["name"] == "X-Lead-Id"] for entry in headers]
    assert lead_headers == [[], [], [], [], [], [], ["PC-1005"], ["PC-1006", "PC-1007"], [], [], [], []]
    assert headers[7][:2] == [{"name": "Host", "value": headers[7][0]["value"]},
                              {"name": "User-Agent", "value": "webhook-fixture/1.0"}]
    assert [h["name"] for h in headers[7]] == ["Host", "User-Agent", "X-Lead-Id", "X-Lead-Id", "Content-Length"]


def test_mitmproxy_har_recorded_answers(mitmproxy_loaded: duckdb.DuckDBPyConnection) -> None:
    rows = mitmproxy_loaded.execute("SELECT recorded_status, recorded_body FROM callbacks ORDER BY seq").fetchall()
    ok = (200, '{"status":"ok"}')
    assert rows == [ok] * 9 + [(404, NOT_FOUND), (404, NOT_FOUND), ok]


@pytest.fixture
def lossy_loaded(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    folder = make_dataset(tmp_path / "ds", callbacks=(HAR_DIR / "lossy.har").read_bytes(),
                          callback_name="callbacks.har")
    load_dataset(con, folder)
    return con


def test_lossy_har_keeps_four_and_quarantines_two(lossy_loaded: duckdb.DuckDBPyConnection) -> None:
    """README: entries 0, 1, 2, 5 kept; 3 (timestamp 'yesterday') and 4 (no url) quarantined.

    Quarantine lines are 1-based entry numbers (the README's # is 0-based); raw is the entry's JSON.
    """
    con = lossy_loaded
    entries = _har_entries("lossy.har")
    assert report(con)["callbacks"] == ("callbacks.har", 6, 4, 2)
    assert column(con, "SELECT seq FROM callbacks ORDER BY seq") == [1, 2, 3, 6]
    rows = quarantine(con)
    assert [(source, line, reason) for source, line, _, reason in rows] == [
        ("callbacks.har", 4, "bad received_at: not an ISO 8601 timestamp"),
        ("callbacks.har", 5, "missing url"),
    ]
    assert [json.loads(raw) for _, _, raw, _ in rows] == [entries[3], entries[4]]


def test_lossy_har_kept_entries(lossy_loaded: duckdb.DuckDBPyConnection) -> None:
    rows = lossy_loaded.execute("""
        SELECT request_id, received_at, method, url, headers, body, recorded_status, recorded_body, capture_notes
        FROM callbacks ORDER BY seq""").fetchall()
    base = "https://callbacks.example.com/webhooks/"
    assert rows == [
        # naive startedDateTime is read as UTC, and noted; header names keep their (lower) case
        ("1", utc("2026-11-20T10:00:05+00:00"), "POST", base + "wh-acme?pcid=PC-2001&status=approved",
         [{"name": "content-length", "value": "0"}, {"name": "x-lead-id", "value": "PC-2001"}],
         None, 200, '{"status":"ok"}', ["body_absent", "received_at_without_zone"]),
        # no response: status and body unknown, not 200 and not 404
        ("2", utc("2026-11-20T10:00:07+00:00"), "POST", base + "wh-acme?pcid=PC-2002&status=sold",
         [{"name": "content-length", "value": "0"}], None, None, None, ["body_absent", "received_at_without_zone"]),
        # no request.headers: empty list; form body from postData.text without params
        ("3", utc("2026-11-20T10:00:09+00:00"), "POST", base + "wh-acme", [],
         "pcid=PC-2003&status=approved", 404, NOT_FOUND, ["received_at_without_zone"]),
        # response content without text: status known, body unknown
        ("6", utc("2026-11-20T10:00:16+00:00"), "POST", base + "wh-json",
         [{"name": "content-type", "value": "application/json"}],
         '{"pcid":"PC-2006","status":"approved"}', 200, None, ["received_at_without_zone"]),
    ]


def _parquet_callbacks(folder: Path) -> None:
    (folder / "callbacks.jsonl").unlink()
    write_parquet(folder / "callbacks.parquet", """
        SELECT * FROM (VALUES
            (TIMESTAMPTZ '2026-11-20 10:00:01+00', '/webhooks/wh-a?pcid=C1', '{"X-Lead-Id": "C1"}', NULL),
            (TIMESTAMPTZ '2026-11-20 10:00:02+00', '/webhooks/wh-a', '{}', 'pcid=C1'),
            (TIMESTAMPTZ '2026-11-20 10:00:03+00', '/webhooks/wh-json', NULL, '{"pcid": 12}'),
            (NULL, '/webhooks/wh-a', NULL, NULL)
        ) t(received_at, url, headers, body)""")


@pytest.mark.parametrize("callbacks", ["mitmproxy.har", "lossy.har", "parquet", "jsonl-line-reader"])
def test_callbacks_loaded_as_keys_replay_like_the_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           callbacks: str) -> None:
    """keep_requests=False on the loaders other than the parallel JSONL one: the same outcomes,
    quarantine and counts as loading the whole requests."""
    if callbacks.endswith(".har"):
        folder = make_dataset(tmp_path / "ds", callbacks=(HAR_DIR / callbacks).read_bytes(),
                              callback_name="callbacks.har")
    elif callbacks == "parquet":
        folder = make_dataset(tmp_path / "ds")
        _parquet_callbacks(folder)
    else:
        monkeypatch.setattr(callback_loading, "_read_jsonl_in_parallel", lambda *args: False)
        folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1), "{oops", crow(3, url="/webhooks/wh-a")))
    judged = []
    for keep_requests in (True, False):
        con = connect()
        try:
            loaded = load_dataset(con, folder, keep_requests=keep_requests)
            result = replay(con, loaded.webhooks)
            judged.append((result.callbacks(), result.leads(), quarantine(con), report(con)))
        finally:
            con.close()
    (requests, keys) = judged
    assert len(requests[0]) > 0
    assert requests[0].equals(keys[0]) and requests[1].equals(keys[1]) and requests[2:] == keys[2:]


def test_har_request_id_status_zero_base64_and_bad_entries(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """I4 details: `_request_id` wins, status 0 is no answer, base64 content is decoded; an entry that
    is not an object is quarantined by entry number."""
    entries: list[Any] = [
        {"startedDateTime": "2026-11-20T10:00:00+05:30", "_request_id": "req-9",
         "request": {"method": "POST", "url": "/webhooks/wh-a", "headers": []},
         "response": {"status": 0, "content": {}, "_error": "connection reset"}},
        "not an entry",
        {"startedDateTime": "2026-11-20T10:00:01Z", "_request_id": 42,
         "request": {"method": "POST", "url": "/webhooks/wh-a?pcid=C1"},
         "response": {"status": 404, "content": {"encoding": "base64",
                                                 "text": base64.b64encode(NOT_FOUND.encode()).decode()}}},
        {"request": {"url": "/webhooks/wh-a"}},
    ]
    har = json.dumps({"log": {"version": "1.2", "entries": entries}}, indent=2).encode()
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=har, callback_name="callbacks.har"))
    assert con.execute(
        "SELECT seq, request_id, received_at, recorded_status, recorded_body FROM callbacks ORDER BY seq"
    ).fetchall() == [
        (1, "req-9", utc("2026-11-20T04:30:00+00:00"), None, None),
        (3, "42", utc("2026-11-20T10:00:01+00:00"), 404, NOT_FOUND),
    ]
    assert quarantine(con) == [
        ("callbacks.har", 2, '"not an entry"', "not a JSON object"),
        ("callbacks.har", 4, '{"request":{"url":"/webhooks/wh-a"}}', "missing received_at"),
    ]


# --------------------------------------------------------------------------- I5: Parquet


def test_parquet_callbacks_timestamptz_and_struct_headers(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "callbacks.jsonl").unlink()
    write_parquet(folder / "callbacks.parquet", """
        SELECT * FROM (VALUES
            (TIMESTAMPTZ '2026-11-20 11:00:01.25+01', '/webhooks/wh-a?pcid=C1', 'GET',
             [{'name': 'X-Lead-Id', 'value': 'C1'}, {'name': 'X-Lead-Id', 'value': 'C9'}],
             NULL, 'r-1', 200, '{"status":"ok"}'),
            (TIMESTAMPTZ '2026-11-20 10:00:02+00', '/webhooks/wh-a', NULL, [], 'pcid=C1', NULL, 404, NULL),
            (NULL, '/webhooks/wh-a', NULL, [], NULL, 'r-3', NULL, NULL),
            (TIMESTAMPTZ '2026-11-20 10:00:04+00', NULL, NULL, [], NULL, 'r-4', NULL, NULL)
        ) t(received_at, url, method, headers, body, request_id, response_status, response_body)""")
    assert column(con, f"SELECT column_type FROM (DESCRIBE SELECT * FROM '{folder / 'callbacks.parquet'}')")[0] \
        == "TIMESTAMP WITH TIME ZONE"
    load_dataset(con, folder)
    assert con.execute("""
        SELECT seq, request_id, received_at, method, url, headers, body, recorded_status, recorded_body,
               capture_notes
        FROM callbacks ORDER BY seq""").fetchall() == [
        (1, "r-1", utc("2026-11-20T10:00:01.250000+00:00"), "GET", "/webhooks/wh-a?pcid=C1",
         [{"name": "X-Lead-Id", "value": "C1"}, {"name": "X-Lead-Id", "value": "C9"}],
         None, 200, '{"status":"ok"}', ["body_absent"]),
        (2, "2", utc("2026-11-20T10:00:02+00:00"), "POST", "/webhooks/wh-a", [], "pcid=C1", 404, None, []),
    ]
    rows = quarantine(con)
    assert [(s, line, reason) for s, line, _, reason in rows] == [
        ("callbacks.parquet", 3, "missing received_at"), ("callbacks.parquet", 4, "missing url")]
    assert json.loads(rows[0][2])["request_id"] == "r-3"  # raw is the row as JSON
    assert report(con)["callbacks"] == ("callbacks.parquet", 4, 2, 2)


def test_parquet_callbacks_map_headers_and_naive_timestamp(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "callbacks.jsonl").unlink()
    write_parquet(folder / "callbacks.parquet", """
        SELECT * FROM (VALUES
            (TIMESTAMP '2026-11-20 10:00:01', '/webhooks/wh-a', MAP {'Content-Type': 'text/plain', 'X-Lead-Id': 'C1'}),
            (TIMESTAMP '2026-11-20 10:00:02', '/webhooks/wh-a', MAP {})
        ) t(received_at, url, headers)""")
    load_dataset(con, folder)
    # A Parquet TIMESTAMP has no zone: read as UTC, noted, and counted in the load report.
    naive = ["body_absent", "received_at_without_zone"]
    assert con.execute("SELECT received_at, headers, capture_notes FROM callbacks ORDER BY seq").fetchall() == [
        (utc("2026-11-20T10:00:01+00:00"),
         [{"name": "Content-Type", "value": "text/plain"}, {"name": "X-Lead-Id", "value": "C1"}], naive),
        (utc("2026-11-20T10:00:02+00:00"), [], naive),
    ]
    assert con.execute("SELECT zone_less FROM load_report WHERE table_name = 'callbacks'").fetchall() == [(2,)]


def test_parquet_callbacks_text_timestamps(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "callbacks.jsonl").unlink()
    write_parquet(folder / "callbacks.parquet", """
        SELECT * FROM (VALUES ('2026-11-20T12:00:01+02:00', '/webhooks/wh-a', 7),
                              ('garbage', '/webhooks/wh-a', 8)) t(received_at, url, request_id)""")
    load_dataset(con, folder)
    assert con.execute("SELECT request_id, received_at FROM callbacks").fetchall() == [
        ("7", utc("2026-11-20T10:00:01+00:00"))]
    assert reasons(con) == [(2, "bad received_at: not an ISO 8601 timestamp")]


def test_parquet_callbacks_json_text_headers(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "callbacks.jsonl").unlink()
    write_parquet(folder / "callbacks.parquet", """
        SELECT * FROM (VALUES
            (TIMESTAMPTZ '2026-11-20 10:00:01+00', '/webhooks/wh-a', '[["X-Lead-Id","C1"],["X-Lead-Id","C2"]]'),
            (TIMESTAMPTZ '2026-11-20 10:00:02+00', '/webhooks/wh-a', '{"X-Lead-Id":"C3"}')
        ) t(received_at, url, headers)""")
    load_dataset(con, folder)
    assert con.execute("SELECT headers, capture_notes FROM callbacks ORDER BY seq").fetchall() == [
        ([{"name": "X-Lead-Id", "value": "C1"}, {"name": "X-Lead-Id", "value": "C2"}], ["body_absent"]),
        ([{"name": "X-Lead-Id", "value": "C3"}], ["body_absent"]),
    ]


def test_parquet_dispatches(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "dispatches.jsonl").unlink()
    write_parquet(folder / "dispatches.parquet", """
        SELECT * FROM (VALUES
            ('L1', '00123', 'A', 'E1', 'wh-a', TIMESTAMPTZ '2026-11-20 12:00:00+02'),
            ('L2', 'C2', 'A', NULL, 'wh-a', TIMESTAMPTZ '2026-11-20 10:00:05+00'),
            ('L3', 'C3', 'A', NULL, 'wh-nope', TIMESTAMPTZ '2026-11-20 10:00:05+00'),
            ('L4', 'C4', 'A', NULL, 'wh-a', NULL),
            ('L5', '00123', 'A', NULL, 'wh-a', TIMESTAMPTZ '2026-11-20 10:00:05+00')
        ) t(lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at)""")
    load_dataset(con, folder)
    assert con.execute(
        'SELECT "row", lead_id, conversion_id, external_id, created_at, source_line FROM dispatches ORDER BY "row"'
    ).fetchall() == [
        (1, "L1", "00123", "E1", utc("2026-11-20T10:00:00+00:00"), 1),
        (2, "L2", "C2", None, utc("2026-11-20T10:00:05+00:00"), 2),
    ]
    rows = quarantine(con)
    assert [(s, line, reason) for s, line, _, reason in rows] == [
        ("dispatches.parquet", 3, "unknown webhook_id (not in webhooks.json)"),
        ("dispatches.parquet", 4, "missing created_at"),
        ("dispatches.parquet", 5, "duplicate conversion_id (first on line 1)"),
    ]
    assert json.loads(rows[1][2]) == {"lead_id": "L4", "conversion_id": "C4", "advertiser_id": "A",
                                      "external_id": None, "webhook_id": "wh-a", "created_at": None}


def test_parquet_dispatches_numeric_ids_and_naive_timestamp(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "dispatches.jsonl").unlink()
    write_parquet(folder / "dispatches.parquet", """
        SELECT 1::BIGINT AS lead_id, 12345::BIGINT AS conversion_id, 'A' AS advertiser_id,
               NULL::VARCHAR AS external_id, 'wh-a' AS webhook_id, TIMESTAMP '2026-11-20 10:00:00' AS created_at""")
    load_dataset(con, folder)
    assert con.execute("SELECT lead_id, conversion_id, created_at FROM dispatches").fetchall() == [
        ("1", "12345", utc("2026-11-20T10:00:00+00:00"))]


@pytest.mark.parametrize(("row_sql", "expected_reasons", "external_ids"), [
    pytest.param("('L1', 'C1', 'A', '', 'wh-a')", [], [None], id="empty-external_id-is-absent"),
    pytest.param("('', 'C1', 'A', 'E1', 'wh-a')", [(1, "missing lead_id")], [], id="empty-lead_id-is-missing"),
    pytest.param("('L1', '', 'A', 'E1', 'wh-a')", [(1, "missing conversion_id")], [],
                 id="empty-conversion_id-is-missing"),
])
def test_parquet_dispatches_empty_text_is_absent(con: duckdb.DuckDBPyConnection, tmp_path: Path, row_sql: str,
                                                 expected_reasons: list[tuple[int, str]],
                                                 external_ids: list[str | None]) -> None:
    folder = make_dataset(tmp_path / "ds")
    (folder / "dispatches.jsonl").unlink()
    write_parquet(folder / "dispatches.parquet", f"""
        SELECT *, TIMESTAMPTZ '2026-11-20 10:00:00+00' AS created_at
        FROM (VALUES {row_sql}) t(lead_id, conversion_id, advertiser_id, external_id, webhook_id)""")
    load_dataset(con, folder)
    assert reasons(con) == expected_reasons
    assert column(con, "SELECT external_id FROM dispatches") == external_ids


# --------------------------------------------------------------------------- Q6: unusable input


def _bare(folder: Path) -> Path:
    return make_dataset(folder)


def _missing_folder(folder: Path) -> tuple[Path, str]:
    return folder / "nope", (f"{folder / 'nope'}: not a folder; a dataset is a folder with webhooks.json, "
                             "dispatches.* and callbacks.*")


def _folder_is_a_file(folder: Path) -> tuple[Path, str]:
    folder.mkdir()
    (folder / "data.zip").write_bytes(b"PK")
    return folder / "data.zip", (f"{folder / 'data.zip'}: not a folder; a dataset is a folder with webhooks.json, "
                                 "dispatches.* and callbacks.*")


def _missing_webhooks(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "webhooks.json").unlink()
    return folder, f"{folder / 'webhooks.json'}: file not found; a dataset needs webhooks.json"


def _no_dispatches(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "dispatches.jsonl").unlink()
    return folder, (f"{folder}: no dispatches file; a dataset needs one of dispatches.csv, dispatches.jsonl, "
                    "dispatches.parquet or a folder dispatches/ of them")


def _no_callbacks(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    return folder, (f"{folder}: no callbacks file; a dataset needs one of callbacks.jsonl, callbacks.har, "
                    "callbacks.parquet or a folder callbacks/ of them")


def _two_dispatches(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "dispatches.csv").write_text(DISPATCH_HEADER + "\n")
    return folder, f"{folder}: several dispatches files (dispatches.csv, dispatches.jsonl); keep one"


def _two_callbacks(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.har").write_text('{"log": {"entries": []}}')
    return folder, f"{folder}: several callbacks files (callbacks.jsonl, callbacks.har); keep one"


def _webhooks_not_json(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "webhooks.json").write_text('[{"webhook_id": "wh-a",]')
    return folder, (f"{folder / 'webhooks.json'}: not valid JSON: Expecting property name enclosed in double "
                    "quotes at line 1 column 24")


def _webhooks_empty(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "webhooks.json").write_text("")
    return folder, f"{folder / 'webhooks.json'}: not valid JSON: Expecting value at line 1 column 1"


def _webhooks_break_s2(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "webhooks.json").write_text(json.dumps([{"webhook_id": "wh-acme", "advertiser_id": "A",
                                                              "timeout_s": 30}]))
    return folder, (f"{folder / 'webhooks.json'}: webhook 'wh-acme' (entry 1): field 'timeout_s': only allowed "
                    'when wait is true; set "wait": true or remove timeout_s')


def _csv_header_missing_column(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "dispatches.jsonl").unlink()
    (folder / "dispatches.csv").write_text("lead_id,conversion_id,advertiser_id,external_id,webhook_id,created\n")
    return folder, (f"{folder / 'dispatches.csv'}: field 'created_at': missing column; the header must name "
                    "lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at")


def _csv_empty(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "dispatches.jsonl").unlink()
    (folder / "dispatches.csv").write_text("")
    return folder, (f"{folder / 'dispatches.csv'}: empty file; the first line must be the header "
                    "lead_id,conversion_id,advertiser_id,external_id,webhook_id,created_at")


def _parquet_dispatches_missing_column(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "dispatches.jsonl").unlink()
    write_parquet(folder / "dispatches.parquet", "SELECT 'L1' AS lead_id, 'C1' AS conversion_id, 'A' AS "
                  "advertiser_id, 'wh-a' AS webhook_id, TIMESTAMPTZ '2026-11-20 10:00:00+00' AS created_at")
    return folder, (f"{folder / 'dispatches.parquet'}: field 'external_id': missing column; the file must have "
                    "columns lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at")


def _parquet_callbacks_missing_column(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    write_parquet(folder / "callbacks.parquet",
                  "SELECT TIMESTAMPTZ '2026-11-20 10:00:00+00' AS received_at, '/webhooks/wh-a' AS uri")
    return folder, (f"{folder / 'callbacks.parquet'}: field 'url': missing column; callbacks need at least "
                    "received_at and url")


def _parquet_not_parquet(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    (folder / "callbacks.parquet").write_bytes(b"garbage")
    path = folder / "callbacks.parquet"
    return folder, (f"{path}: not a readable Parquet file: Invalid Input Error: File '{path}' too small to be "
                    "a Parquet file")


def _har_not_json(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    (folder / "callbacks.har").write_text('{"log": {"entries": [')
    return folder, f"{folder / 'callbacks.har'}: not valid JSON; a HAR file is one JSON document"


def _har_jsonl(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    (folder / "callbacks.har").write_text('{"log": {"entries": []}}\n{"log": {"entries": []}}\n')
    return folder, f"{folder / 'callbacks.har'}: not valid JSON; a HAR file is one JSON document"


def _har_without_entries(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    (folder / "callbacks.har").write_text('{"log": {"version": "1.2", "pages": []}}')
    return folder, f"{folder / 'callbacks.har'}: field 'log.entries': not a HAR file: log.entries must be a list"


def _har_entries_not_a_list(folder: Path) -> tuple[Path, str]:
    (_bare(folder) / "callbacks.jsonl").unlink()
    (folder / "callbacks.har").write_text('{"log": {"entries": {"0": {}}}}')
    return folder, f"{folder / 'callbacks.har'}: field 'log.entries': not a HAR file: log.entries must be a list"


@pytest.mark.parametrize(("build", "error_type"), [
    pytest.param(_missing_folder, MissingFileError, id="missing-folder"),
    pytest.param(_folder_is_a_file, MissingFileError, id="folder-is-a-file"),
    pytest.param(_missing_webhooks, MissingFileError, id="missing-webhooks.json"),
    pytest.param(_no_dispatches, MissingFileError, id="no-dispatches-file"),
    pytest.param(_no_callbacks, MissingFileError, id="no-callbacks-file"),
    pytest.param(_two_dispatches, DatasetError, id="two-dispatches-files"),
    pytest.param(_two_callbacks, DatasetError, id="two-callbacks-files"),
    pytest.param(_webhooks_not_json, DatasetError, id="webhooks.json-invalid-json"),
    pytest.param(_webhooks_empty, DatasetError, id="webhooks.json-empty"),
    pytest.param(_webhooks_break_s2, ConfigError, id="webhooks.json-breaks-S2"),
    pytest.param(_csv_header_missing_column, DatasetError, id="csv-header-missing-column"),
    pytest.param(_csv_empty, DatasetError, id="csv-empty"),
    pytest.param(_parquet_dispatches_missing_column, DatasetError, id="parquet-dispatches-missing-column"),
    pytest.param(_parquet_callbacks_missing_column, DatasetError, id="parquet-callbacks-missing-column"),
    pytest.param(_parquet_not_parquet, DatasetError, id="parquet-not-parquet"),
    pytest.param(_har_not_json, DatasetError, id="har-not-json"),
    pytest.param(_har_jsonl, DatasetError, id="har-two-documents"),
    pytest.param(_har_without_entries, DatasetError, id="har-without-log.entries"),
    pytest.param(_har_entries_not_a_list, DatasetError, id="har-entries-not-a-list"),
])
def test_unusable_input_fails_with_one_exact_line(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                  build: Callable[[Path], tuple[Path, str]],
                                                  error_type: type[WebhookAuditError]) -> None:
    """Q6: one line naming the file (and field), as a WebhookAuditError the CLI prints."""
    folder, message = build(tmp_path / "ds")
    with pytest.raises(error_type) as caught:
        load_dataset(con, folder)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- line reader and chunking


def _chunks_of(data: bytes, chunk_bytes: int, tmp_path: Path) -> list[pa.Table]:
    path = tmp_path / "lines.bin"
    path.write_bytes(data)
    return list(linereader.iter_line_chunks(path, chunk_bytes=chunk_bytes))


READER_INPUT = (b"first\r\n\n" + b"x" * 50 + b"\n\xff\xfe bad\n" + "ünï\n".encode() + b"  \n" + b"last-no-newline")


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 16, 49, 1 << 20])
def test_line_reader_exact_lines_at_any_chunk_size(tmp_path: Path, chunk_bytes: int) -> None:
    chunks = _chunks_of(READER_INPUT, chunk_bytes, tmp_path)
    table = pa.concat_tables(chunks)
    assert table.column("line").to_pylist() == list(range(1, 8))
    assert table.column("raw").to_pylist() == [
        "first\r", "", "x" * 50, "\\xff\\xfe bad", "ünï", "  ", "last-no-newline"]
    assert table.column("utf8").to_pylist() == [True, True, True, False, True, True, True]
    if chunk_bytes < 8:
        assert len(chunks) > 3


@pytest.mark.parametrize(("data", "lines"), [
    pytest.param(b"", [], id="empty"),
    pytest.param(b"\n", [""], id="one-newline"),
    pytest.param(b"a\n", ["a"], id="trailing-newline"),
    pytest.param(b"a", ["a"], id="no-newline"),
    pytest.param(b"a\n\n", ["a", ""], id="blank-last-line"),
])
def test_line_reader_file_ends(tmp_path: Path, data: bytes, lines: list[str]) -> None:
    chunks = _chunks_of(data, 2, tmp_path)
    assert [raw for chunk in chunks for raw in chunk.column("raw").to_pylist()] == lines


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Make the loader read JSONL in 256 KiB chunks; yields the row count of every callbacks chunk read.

    (Monkeypatching ``linereader.CHUNK_BYTES`` alone does nothing: it is bound as the default
    argument when ``iter_line_chunks`` is defined.)
    """
    sizes: list[int] = []
    original = linereader.iter_line_chunks

    def chunked(path: Path, **kwargs: Any) -> Iterator[pa.Table]:
        for chunk in functools.partial(original, chunk_bytes=256 * 1024)(path, **kwargs):
            if path.name == "callbacks.jsonl":
                sizes.append(chunk.num_rows)
            yield chunk

    monkeypatch.setattr(linereader, "iter_line_chunks", chunked)
    yield sizes


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["line-reader", "parallel-reader"])
def test_200k_callbacks_across_chunk_boundaries(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                small_chunks: list[int], monkeypatch: pytest.MonkeyPatch,
                                                reader: str) -> None:
    """~200k JSONL callbacks, with two blank lines among them, read in many chunks by the line reader, or
    by DuckDB's parallel readers: bad lines far into the file keep exact line numbers either way (a line
    that is not UTF-8 too, which the parallel read steps over and reads again). (A CRLF line among LF
    lines is for the line reader alone: DuckDB's CSV reader refuses such a file, and the line reader
    takes it.)"""
    planted: dict[int, tuple[bytes, str, str]] = {
        1: (b"{oops", "{oops", "not valid JSON"),
        65_537: (b'{"url":"/webhooks/wh-a"}', '{"url":"/webhooks/wh-a"}', "missing received_at"),
        150_000: (b'{"received_at":"later","url":"/x"}', '{"received_at":"later","url":"/x"}',
                  "bad received_at: not an ISO 8601 timestamp"),
        199_999: (b"[]", "[]", "not a JSON object"),
    }
    planted[123_457] = (b'{"received_at":"2026-11-20T10:00:00Z","url":"/\xff"}',
                        '{"received_at":"2026-11-20T10:00:00Z","url":"/\\xff"}', "not valid UTF-8")
    planted = dict(sorted(planted.items()))
    crlf: set[int] = set()
    if reader == "line-reader":
        monkeypatch.setattr(callback_loading, "_read_jsonl_in_parallel", lambda *args: False)
        crlf = {180_000}
    total = 200_000
    blank = {100_000, 170_001}
    parts = []
    for n in range(1, total + 1):
        if n in planted:
            parts.append(planted[n][0] + b"\n")
        elif n in blank:
            parts.append(b"\n")
        else:
            end = b"\r\n" if n in crlf else b"\n"
            parts.append(b'{"received_at":"2026-11-20T10:%02d:%02d.%06dZ","url":"/webhooks/wh-a?pcid=C%d"}'
                         % (n // 3600 % 60, n // 60 % 60, n, n) + end)
    data = b"".join(parts)
    folder = make_dataset(tmp_path / "ds", callbacks=data[:-1])  # the last line has no newline
    load_dataset(con, folder)

    if reader == "line-reader":
        assert len(small_chunks) > 40
        assert sum(small_chunks) == total
    else:
        assert small_chunks == []
    assert quarantine(con) == [("callbacks.jsonl", n, raw, reason) for n, (_, raw, reason) in planted.items()]
    loaded = total - len(planted) - len(blank)
    assert report(con)["callbacks"] == ("callbacks.jsonl", total - len(blank), loaded, len(planted))
    assert con.execute("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM callbacks").fetchone() == (
        loaded, loaded, 2, total)
    skipped = set(planted) | blank
    assert con.execute("SELECT count(*) FROM callbacks WHERE seq IN (SELECT unnest(?))",
                       [sorted(skipped)]).fetchone() == (0,)
    # Every loaded row's line number is the one written into its own URL and request_id.
    assert con.execute(
        "SELECT count(*) FROM callbacks "
        "WHERE url <> '/webhooks/wh-a?pcid=C' || seq OR request_id <> CAST(seq AS VARCHAR)"
    ).fetchone() == (0,)

    # Loaded as keys only (webhook-audit replay without --database): the same rows, numbers and quarantine.
    keys_con = connect()
    try:
        load_dataset(keys_con, folder, keep_requests=False)
        assert quarantine(keys_con) == quarantine(con) and report(keys_con) == report(con)
        assert keys_con.execute("SELECT seq, request_id, 'C' || seq FROM callback_keys ORDER BY seq").fetchall() \
            == con.execute("SELECT seq, request_id, 'C' || seq FROM callbacks ORDER BY seq").fetchall()
        assert keys_con.execute(
            "SELECT count(*) FROM callback_keys WHERE conversion_id IS DISTINCT FROM 'C' || seq").fetchone() == (0,)
    finally:
        keys_con.close()


@pytest.mark.slow
def test_a_large_jsonl_file_read_in_parallel_keeps_every_line_number(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, full_passes: list[str]) -> None:
    """Matching's input order is the JSONL line (seq). In a file large enough for DuckDB to read its
    parts on several threads (~100 MB) every row keeps its own line number, also after the lines
    DuckDB's CSV reader cannot read (bytes that are not UTF-8) and steps over. (DuckDB's
    JSON reader gave the rows of such a file out of order; its CSV reader, which the fast path uses,
    keeps the order.)"""
    total = 1_000_000
    unreadable = {n: b'{"url":"/\xff"}' if n % 2 else b"\xfe" for n in range(7, total, 99_991)}
    data = b"".join(unreadable.get(n, b'{"received_at":"2026-11-20T10:00:00Z","url":"/webhooks/wh-a?pcid=C%d",'
                                      b'"body":"%s"}' % (n, b"x" * (n % 23))) + b"\n" for n in range(1, total + 1))
    load_dataset(con, make_dataset(tmp_path / "ds", callbacks=data))
    assert "callbacks.jsonl" not in full_passes  # the parallel path, not the line reader
    assert con.execute(
        "SELECT count(*), count(*) FILTER (url <> '/webhooks/wh-a?pcid=C' || seq) FROM callbacks"
    ).fetchone() == (total - len(unreadable), 0)
    assert reasons(con) == [(n, "not valid UTF-8") for n in unreadable]
    keys_con = connect()
    try:  # and so does every row loaded as keys only, its conversion ID read from that URL
        load_dataset(keys_con, make_dataset(tmp_path / "ds", callbacks=data), keep_requests=False)
        assert keys_con.execute(
            "SELECT count(*), count(*) FILTER (conversion_id IS DISTINCT FROM 'C' || seq) FROM callback_keys"
        ).fetchone() == (total - len(unreadable), 0)
        assert reasons(keys_con) == reasons(con)
    finally:
        keys_con.close()


def test_progress_reports_bytes_of_each_file(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1), crow(2)))
    seen: list[tuple[str, int, int]] = []
    load_dataset(con, folder, progress=lambda label, done, total: seen.append((label, done, total)))
    size = (folder / "callbacks.jsonl").stat().st_size
    assert ("callbacks.jsonl", 0, size) in seen
    assert [s for s in seen if s[0] == "callbacks.jsonl"][-1] == ("callbacks.jsonl", size, size)


def test_reload_replaces_tables(tmp_path: Path) -> None:
    """Loading twice into one connection replaces every table rather than appending."""
    con = connect()
    try:
        folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1), "{bad"))
        load_dataset(con, folder)
        load_dataset(con, folder)
        assert report(con) == {"dispatches": ("dispatches.jsonl", 1, 1, 0), "callbacks": ("callbacks.jsonl", 2, 1, 1)}
        assert len(quarantine(con)) == 1
    finally:
        con.close()


# --------------------------------------------------------------------------- the fast paths

#: Good and bad callback lines that DuckDB's CSV reader splits as written, so the parallel path may read them.
FAST_CALLBACK_LINES: tuple[dict[str, Any] | str | bytes, ...] = (
    "\ufeff" + compact(crow(1)), "{oops", '{"url":"/x"}', crow(2, url=5), crow(3, received_at="later"), "[]",
    "\x0b " + compact(crow(4)) + " \x0c\t", crow(5, request_id=7),
    crow(6, headers={"X-A": "1", "x-a": 2}, body={"pcid": "C6"}), crow(7, headers=[["X-B", "b"]], method="GET"),
    '{"received_at":"2026')
FAST_DISPATCH_ROWS: tuple[dict[str, Any], ...] = (
    drow(1), drow(2, conversion_id=""), drow(3, created_at="x"), drow(4, conversion_id="C1"),
    drow(5, webhook_id="wh-old"), drow(6, webhook_id="wh-nope"), drow(7, external_id=""))


@pytest.fixture
def full_passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the loader reads whole with the chunked line reader (its slow paths), in order."""
    passes: list[str] = []
    line_reader = linereader.iter_line_chunks

    def spy(path: Path, **kwargs: Any) -> Iterator[pa.Table]:
        passes.append(path.name)
        return line_reader(path, **kwargs)

    monkeypatch.setattr(linereader, "iter_line_chunks", spy)
    return passes


def _all_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    return {name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
            for name in ("callbacks", "dispatches", "quarantine", "load_report")}


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_fast_paths_give_exactly_the_line_readers_tables(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, full_passes: list[str],
                                                         newline: str) -> None:
    """Q1, Q4, Q5, Q7: DuckDB's parallel JSONL reader and the CSV read without a second pass over the
    file (both used when every line is a record) load, number and quarantine exactly as the line readers
    do; a byte-order mark and surrounding ASCII whitespace are not part of a line's JSON."""
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(*FAST_DISPATCH_ROWS, newline=newline),
                          dispatch_name="dispatches.csv",
                          callbacks=jsonl(*FAST_CALLBACK_LINES, newline=newline.encode()))
    load_dataset(con, folder)
    fast = _all_tables(con)
    assert full_passes == []
    assert quarantine(con)[:2] == [
        ("callbacks.jsonl", 2, "{oops", "not valid JSON"),
        ("callbacks.jsonl", 3, '{"url":"/x"}', "missing received_at")]
    assert ("dispatches.csv", 3, csv_line(drow(2, conversion_id="")), "missing conversion_id") in quarantine(con)

    # Lines never line up with records:
    monkeypatch.setattr(linereader, "count_lines_finding", lambda path, byte, **kwargs: (-1, False))
    load_dataset(con, folder)
    assert sorted(set(full_passes)) == ["callbacks.jsonl", "dispatches.csv"]
    assert _all_tables(con) == fast
    assert_reconciles(con)


#: A line DuckDB's CSV reader cannot read: valid JSON, a callback, longer than the parallel read takes.
LONG_LINE = compact(crow(2, body="x" * callback_loading._MAX_LINE_BYTES))


@pytest.mark.parametrize(("lines", "loaded", "bad"), [
    pytest.param([crow(1), b'{"received_at":"2026-11-20T10:00:01Z","url":"/\xfe"}', crow(3)],
                 [1, 3], [(2, "not valid UTF-8")], id="not-utf8"),
    pytest.param([crow(1), LONG_LINE, crow(3)], [1, 2, 3], [], id="longer-than-the-csv-reader-takes"),
    pytest.param([b"\xff", "", crow(2), "{oops", b"\xfe\x7f", "  ", LONG_LINE, b"\xff", crow(9), b"\xff"],
                 [3, 7, 9], [(1, "not valid UTF-8"), (4, "not valid JSON"), (5, "not valid UTF-8"),
                             (8, "not valid UTF-8"), (10, "not valid UTF-8")], id="among-blank-and-bad-lines"),
    pytest.param([crow(n, received_at=T0) if n % 3 else b"\xff" for n in range(1, 301)],
                 [n for n in range(1, 301) if n % 3],
                 [(n, "not valid UTF-8") for n in range(3, 301, 3)], id="a-hundred"),
    # Runs of them, the first and the last line among them: 5,243, more than the binary search in SQL
    # takes (_MOST_SKIPPED_LINES_IN_SQL), so the rows are numbered by the ASOF join.
    pytest.param([b"\xff" if n % 7 in (0, 1, 2, 4) or n > 9_000 else crow(n, received_at=T0)
                  for n in range(1, 9_101)],
                 [n for n in range(1, 9_001) if n % 7 not in (0, 1, 2, 4)],
                 [(n, "not valid UTF-8") for n in range(1, 9_101) if n % 7 in (0, 1, 2, 4) or n > 9_000],
                 id="thousands-in-runs"),
])
def test_lines_duckdbs_csv_reader_cannot_read_are_read_again_by_number(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_passes: list[str],
        lines: list[Any], loaded: list[int], bad: list[tuple[int, str]]) -> None:
    """Q1, Q2, Q4: a line DuckDB's CSV reader cannot read (bytes that are not UTF-8, a very long line)
    is left out of the parallel read, read again by its number and judged as the line reader
    judges it; the rows after it keep their numbers, and the tables are the line reader's."""
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(*lines))
    load_dataset(con, folder)
    assert "callbacks.jsonl" not in full_passes
    assert column(con, "SELECT seq FROM callbacks ORDER BY seq") == loaded
    assert column(con, "SELECT request_id FROM callbacks ORDER BY seq") == [str(n) for n in loaded]
    assert reasons(con) == bad
    assert_reconciles(con)
    keys_con = connect()
    try:  # loaded as keys only (webhook-audit replay without --database): the same rows and keys
        load_dataset(keys_con, folder, keep_requests=False)
        assert quarantine(keys_con) == quarantine(con) and report(keys_con) == report(con)
        expected = [(seq, str(seq), url.split("pcid=")[1])
                    for seq, url in con.execute("SELECT seq, url FROM callbacks ORDER BY seq").fetchall()]
        assert keys_con.execute(
            "SELECT seq, request_id, conversion_id FROM callback_keys ORDER BY seq").fetchall() == expected
    finally:
        keys_con.close()
    fast = _all_tables(con)
    monkeypatch.setattr(callback_loading, "_read_jsonl_in_parallel", lambda *args: False)
    load_dataset(con, folder)
    assert _all_tables(con) == fast


@pytest.mark.parametrize(("odd_line", "reason"), [
    pytest.param(b'{"received_at":"2026-11-20T10:00:01Z","url":"/a\rb"}', "not valid JSON", id="lone-cr"),
    pytest.param(b'{"received_at":"2026-11-20T10:00:01Z","url":"/a\x01b"}', "not valid JSON",
                 id="control-character"),
    pytest.param(b'{"received_at":"2026-11-20T10:00:01Z","url":"/a"}\x01', "not valid JSON",
                 id="control-character-ending-a-line"),
    pytest.param(b"\x01\x01", "not valid JSON", id="control-characters-alone"),
])
def test_lines_duckdbs_csv_reader_would_misread_send_the_file_to_the_line_reader(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, full_passes: list[str], odd_line: bytes,
        reason: str) -> None:
    """Q1, Q2, Q4: DuckDB's CSV reader splits lines at a lone CR, and drops its delimiter (chr(1)) and
    an empty text after it at the end of a line, which would load a line that is not JSON, or
    lose one: such a file is read by the line reader, and every line keeps its number."""
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1), odd_line, crow(3)))
    load_dataset(con, folder)
    assert "callbacks.jsonl" in full_passes
    assert con.execute("SELECT seq, request_id FROM callbacks ORDER BY seq").fetchall() == [(1, "1"), (3, "3")]
    assert reasons(con) == [(2, reason)]
    assert_reconciles(con)


@pytest.mark.parametrize("most_in_sql", [4096, 0], ids=["binary-search-in-sql", "asof-join"])
@pytest.mark.parametrize("skipped", [[], [1], [1, 2, 3], [5, 6, 9, 40, 41, 42, 43, 200, 230],
                                     [n for n in range(1, 231) if n % 4 == 0] + [231, 232]],
                         ids=["none", "the-first-line", "a-run-at-the-start", "runs", "every-fourth-and-the-last"])
def test_rows_are_numbered_past_the_lines_they_skipped(con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch,
                                                        most_in_sql: int, skipped: list[int]) -> None:
    """Q4: row r (from 0) of a fast read is the (r + 1)-th line that is not skipped, whichever way it is numbered."""
    monkeypatch.setattr(numbering, "MOST_SKIPPED_LINES_IN_SQL", most_in_sql)
    gave_no_row = set(skipped)
    lines = [n for n in range(1, 201 + len(skipped)) if n not in gave_no_row][:200]
    con.execute("CREATE TABLE read_rows AS SELECT range AS r FROM range(200)")
    numbered = numbering.with_lines_skipped_before(con, skipped, "(SELECT r AS rid FROM read_rows)")
    assert column(con, f"SELECT rid + 1 + skipped_before FROM {numbered} ORDER BY rid") == lines


def test_the_line_reader_takes_a_file_whose_reader_names_readable_lines(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        full_passes: list[str]) -> None:
    """Q1: when a line DuckDB names as unreadable reads well (its line numbers would be wrong), the
    parallel read is dropped and the line reader loads the file from the start: nothing twice,
    nothing lost."""
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(crow(1), b"\xff", crow(3), b"\xfe", crow(5)))
    pick_lines = linereader.pick_lines

    def neighbours(path: Path, numbers: list[int]) -> pa.Table:
        """Each line's next line in its place: as if DuckDB had named the wrong lines, which read well."""
        picked = pick_lines(path, [n + 1 for n in numbers])
        return picked.set_column(0, "line", pa.array([n - 1 for n in picked.column("line").to_pylist()]))

    monkeypatch.setattr(linereader, "pick_lines", neighbours)
    load_dataset(con, folder)
    assert "callbacks.jsonl" in full_passes
    assert column(con, "SELECT seq FROM callbacks ORDER BY seq") == [1, 3, 5]
    assert reasons(con) == [(2, "not valid UTF-8"), (4, "not valid UTF-8")]
    assert_reconciles(con)


@pytest.mark.parametrize(("lines", "parallel", "loaded", "bad"), [
    pytest.param(["", crow(1), "  ", crow(2), "\t", "{oops", ""], True, [2, 4], [(6, "not valid JSON")],
                 id="blank-lines-anywhere"),
    pytest.param([crow(1), "\x0c", crow(2)], True, [1, 3], [(2, "not valid JSON")], id="form-feed-line"),
    pytest.param([crow(1)] + [""] * 65 + [crow(2)], True, [1, 67], [], id="many-blank-lines"),
    pytest.param([crow(1), "\t\r", crow(2)], False, [1, 3], [], id="one-crlf-line-among-lf"),
    pytest.param([crow(1), "\r\r", crow(2)], False, [1, 3], [(2, "not valid JSON")], id="two-carriage-returns"),
])
def test_blank_lines_and_the_parallel_reader(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, lines: list[Any], parallel: bool,
                                             loaded: list[int], bad: list[tuple[int, str]]) -> None:
    """Q4, Q7: blank lines and odd whitespace keep their line numbers on the parallel path; a file DuckDB's
    CSV reader does not split as the line reader does (a CRLF line among LF lines, a second CR) goes to
    the line reader. The lines loaded and quarantined are the same either way."""
    folder = make_dataset(tmp_path / "ds", callbacks=jsonl(*lines))
    taken: list[bool] = []
    parallel_reader = callback_loading._read_jsonl_in_parallel

    def spy(*args: Any) -> bool:
        taken.append(parallel_reader(*args))
        return taken[-1]

    monkeypatch.setattr(callback_loading, "_read_jsonl_in_parallel", spy)
    load_dataset(con, folder)
    assert taken == [parallel]
    assert column(con, "SELECT seq FROM callbacks ORDER BY seq") == loaded
    assert column(con, "SELECT request_id FROM callbacks ORDER BY seq") == [str(n) for n in loaded]
    assert reasons(con) == bad
    fast = _all_tables(con)
    monkeypatch.setattr(callback_loading, "_read_jsonl_in_parallel", lambda *args: False)
    load_dataset(con, folder)
    assert _all_tables(con) == fast


def test_blank_line_numbers_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"".join(b"\n" if n % 7 == 0 else b" \t\r\n" if n % 11 == 0 else b'{"n":%d}\n' % n for n in range(1, 200))
    path = tmp_path / "lines.bin"
    path.write_bytes(data + b"  ")
    expected = [n for n in range(1, 200) if n % 7 == 0 or n % 11 == 0] + [200]
    for chunk_bytes in (5, 64, 1 << 20):
        monkeypatch.setattr(linereader, "CHUNK_BYTES", chunk_bytes)
        assert linereader.blank_line_numbers(path, most=100) == expected, chunk_bytes
    assert linereader.blank_line_numbers(path, most=10) is None


@pytest.mark.parametrize("chunk_bytes", [1, 3, 16, 1 << 20])
def test_count_lines_agrees_with_the_line_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 chunk_bytes: int) -> None:
    monkeypatch.setattr(linereader, "CHUNK_BYTES", chunk_bytes)
    for data in (b"", b"\n", b"a", b"a\n", b"a\n\n", READER_INPUT, b"x\r\n" * 1000, b"a\x01b\n\n"):
        path = tmp_path / "lines.bin"
        path.write_bytes(data)
        lines = sum(t.num_rows for t in linereader.iter_line_chunks(path, chunk_bytes=1 << 20))
        assert linereader.count_lines(path) == lines, data[:20]
        assert linereader.count_lines_finding(path, b"\x01") == (lines, b"\x01" in data), data[:20]


def test_count_and_pick_lines_read_a_pipe(tmp_path: Path) -> None:
    """A pipe has no size to size the read buffer by (a file's buffer is its size when smaller than
    ``CHUNK_BYTES``): it is read whole all the same."""
    pipe = tmp_path / "lines.pipe"
    os.mkfifo(pipe)

    def through_pipe(read: Callable[[], Any]) -> Any:
        writer = threading.Thread(target=lambda: pipe.write_bytes(b'{"n":1}\n\n{"n":3}\nlast'))
        writer.start()
        try:
            return read()
        finally:
            writer.join()

    assert through_pipe(lambda: linereader.count_lines_finding(pipe, b"\x01")) == (4, False)
    assert through_pipe(lambda: linereader.pick_lines(pipe, [3, 4]).to_pylist()) == [
        {"line": 3, "raw": '{"n":3}', "utf8": True}, {"line": 4, "raw": "last", "utf8": True}]

    def buffer_size(path: Path) -> int:
        with path.open("rb", buffering=0) as handle:
            buffer, mask = linereader._read_buffers(handle)
            handle.read()  # a pipe's writer must not find it closed
        assert len(mask) == len(buffer)
        return len(buffer)

    assert through_pipe(lambda: buffer_size(pipe)) == linereader.CHUNK_BYTES
    small = tmp_path / "small.jsonl"
    small.write_bytes(b'{"n":1}\n')
    assert buffer_size(small) == 9


@pytest.mark.parametrize("chunk_bytes", [1, 3, 16, 49, 1 << 20])
@pytest.mark.parametrize("data", [READER_INPUT, READER_INPUT + b"\n", b"\n\n\xff\n", b"", b"only"],
                         ids=["reader-input", "final-newline", "blank-and-bad", "empty", "one-line"])
def test_pick_lines_gives_the_line_readers_lines_at_any_chunk_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int, data: bytes) -> None:
    """Q1: a line read back by number for the quarantine is the line the chunked line reader gives."""
    path = tmp_path / "lines.bin"
    path.write_bytes(data)
    whole = pa.concat_tables(linereader.iter_line_chunks(path)) if data else None
    monkeypatch.setattr(linereader, "CHUNK_BYTES", chunk_bytes)
    total = whole.num_rows if whole is not None else 0
    for numbers in ([], [1], [total], list(range(1, total + 1)), [0, 2, total + 1, 2, total]):
        picked = linereader.pick_lines(path, numbers)
        expected = sorted({n for n in numbers if 1 <= n <= total})
        assert picked.column("line").to_pylist() == expected
        if whole is not None:
            rows = {line: (raw, utf8) for line, raw, utf8 in zip(*(whole.column(c).to_pylist()
                                                                   for c in ("line", "raw", "utf8")), strict=True)}
            assert list(zip(picked.column("raw").to_pylist(), picked.column("utf8").to_pylist(), strict=True)) \
                == [rows[n] for n in expected]


def test_pick_lines_reads_lines_by_number(tmp_path: Path) -> None:
    path = tmp_path / "lines.bin"
    path.write_bytes(READER_INPUT)
    picked = linereader.pick_lines(path, [7, 4, 1, 4, 99])
    assert picked.column("line").to_pylist() == [1, 4, 7]
    assert picked.column("raw").to_pylist() == ["first\r", "\\xff\\xfe bad", "last-no-newline"]
    assert picked.column("utf8").to_pylist() == [True, False, True]


@pytest.mark.parametrize("blank_line", [False, True], ids=["parallel-reader", "line-reader"])
def test_Q7_byte_order_mark_and_ascii_whitespace_are_not_part_of_a_line(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, blank_line: bool) -> None:
    lines: list[dict[str, Any] | str] = ["\ufeff" + compact(crow(1)), "\x0b " + compact(crow(2)) + " \x0c\t",
                                         "\ufeff" + compact(crow(3))]
    if blank_line:
        lines.insert(1, "")
    make_dataset(tmp_path / "ds", callbacks=jsonl(*lines))
    load_dataset(con, tmp_path / "ds")
    assert column(con, "SELECT request_id FROM callbacks ORDER BY seq") == (["1", "3"] if blank_line else ["1", "2"])
    # Only the file's first line may open with a byte-order mark.
    assert reasons(con) == [(4 if blank_line else 3, "not valid JSON")]


def test_parse_progress_thread_hands_errors_back_and_leaves_no_bar_on(con: duckdb.DuckDBPyConnection) -> None:
    reported: list[float] = []
    with pytest.raises(duckdb.CatalogException):
        progress.execute_reporting(con, "SELECT * FROM no_such_table", reported.append)
    progress.execute_reporting(con, "CREATE TABLE t AS SELECT range AS x FROM range(2000000)", reported.append)
    assert column(con, "SELECT count(*) FROM t") == [2_000_000]
    assert all(0 <= percent <= 100 for percent in reported)
    assert column(con, "SELECT current_setting('enable_progress_bar')") == [False]


@pytest.mark.parametrize(("jsonl_ending", "csv_ending"), [
    ("\n", "\n"), ("\n\n", "\n\n"), ("\n  \n\t\n", "\n\n\n"), ("\n\n\n  ", "\n\n")], ids=repr)
def test_blank_lines_at_the_end_keep_the_fast_paths(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, full_passes: list[str],
                                                    jsonl_ending: str, csv_ending: str) -> None:
    """Q4: blank lines after the last record (a common way files end) leave records and lines lined up,
    so both fast paths still apply, with the line readers' result. (DuckDB's CSV reader takes only empty
    lines as blank: a CSV line of spaces is a malformed row either way.)"""
    dispatches = csv_file(*FAST_DISPATCH_ROWS).rstrip(b"\n") + csv_ending.encode()
    callbacks = jsonl(*FAST_CALLBACK_LINES).rstrip(b"\n") + jsonl_ending.encode()
    folder = make_dataset(tmp_path / "ds", dispatches=dispatches, dispatch_name="dispatches.csv", callbacks=callbacks)
    load_dataset(con, folder)
    fast = _all_tables(con)
    assert full_passes == []
    monkeypatch.setattr(linereader, "count_lines_finding", lambda path, byte, **kwargs: (-1, False))
    load_dataset(con, folder)
    assert sorted(set(full_passes)) == ["callbacks.jsonl", "dispatches.csv"]
    assert _all_tables(con) == fast


@pytest.mark.parametrize(("data", "blank"), [
    pytest.param(b"", 0, id="empty"), pytest.param(b"a", 0, id="no-newline"), pytest.param(b"a\n", 0, id="one-line"),
    pytest.param(b"a\n\n", 1, id="one-blank"), pytest.param(b"a\n \t\r\n\n", 2, id="spaces-tab-cr"),
    pytest.param(b"a\n\x0c\n", 0, id="form-feed-is-not-blank"), pytest.param(b"\n\n", 2, id="only-blank"),
    pytest.param(b"a\n  ", 1, id="blank-without-newline"),
])
def test_trailing_blank_lines(tmp_path: Path, data: bytes, blank: int) -> None:
    path = tmp_path / "lines.bin"
    path.write_bytes(data)
    raws = [t for chunk in linereader.iter_line_chunks(path) for t in chunk.column("raw").to_pylist()]
    numbers = linereader.blank_line_numbers(path)
    if b"\x0c" in data:
        assert numbers is None  # DuckDB skips a form-feed line, the line reader keeps it: no lining up
    else:
        assert numbers is not None
        assert [n for n in numbers if n > len(raws) - blank] == list(range(len(raws) - blank + 1, len(raws) + 1))
    assert all(not line.rstrip("\r").strip(" \t") for line in raws[len(raws) - blank:])


def test_long_blank_lines_are_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "lines.bin"
    path.write_bytes(b"x" * 100 + b"\n" + b" " * 40 + b"\n\n")
    assert linereader.blank_line_numbers(path) == [3]


def test_csv_duckdb_cannot_read_is_one_line_naming_the_file(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """Q6: a CSV file DuckDB's reader gives up on (here an LF file whose last line ends in CRLF)."""
    folder = make_dataset(tmp_path / "ds", dispatches=csv_file(drow(1)) + b"\t\r\n", dispatch_name="dispatches.csv")
    with pytest.raises(DatasetError) as caught:
        load_dataset(con, folder)
    assert str(caught.value) == (
        f"{folder / 'dispatches.csv'}: DuckDB's CSV reader cannot read it (Invalid Input Error: The CSV Parser "
        "state machine reached an invalid state.); check that every line ends the same way (LF or CRLF) and "
        "quotes are balanced")


def test_malformed_csv_rows_keep_the_fast_path(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, full_passes: list[str]) -> None:
    """Q3, Q4, Q5: rows DuckDB's CSV reader rejects (too many or too few columns), among blank lines,
    are quarantined at their lines, and the records after them keep theirs, without reading the file
    again: the tables are the ones the slow path (every line read to line records up) gives."""
    rows = [csv_line(row) for row in FAST_DISPATCH_ROWS]
    dispatches = "\n".join([DISPATCH_HEADER, rows[0], csv_line(drow(11)) + ",extra", "", rows[1], "L12,C12",
                            "", "", csv_line(drow(13)), *rows[2:]]).encode() + b"\n"
    folder = make_dataset(tmp_path / "ds", dispatches=dispatches, dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    fast = _all_tables(con)
    assert full_passes == []
    assert column(con, 'SELECT "row" FROM dispatches ORDER BY "row"') == [2, 9, 14]
    assert reasons(con)[:3] == [
        (3, "malformed CSV row: too many columns (Expected Number of Columns: 6 Found: 7)"),
        (5, "missing conversion_id"),
        (6, "malformed CSV row: missing columns (Expected Number of Columns: 6 Found: 2)")]
    assert column(con, "SELECT lead_id FROM dispatches ORDER BY \"row\"") == ["L1", "L13", "L7"]
    assert_reconciles(con)
    monkeypatch.setattr(linereader, "count_lines_finding", lambda path, byte, **kwargs: (-1, False))
    load_dataset(con, folder)
    assert "dispatches.csv" in full_passes
    assert _all_tables(con) == fast


def test_thousands_of_malformed_csv_rows_keep_the_fast_path(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        full_passes: list[str]) -> None:
    """Q3, Q5: more malformed rows than the binary search in SQL takes (5,500, in runs, the last line
    among them) are quarantined at their lines and the records keep theirs, as on the slow path."""
    malformed = [n for n in range(1, 9_101) if n % 5 in (0, 1, 2) or n > 9_000]
    assert len(malformed) > numbering.MOST_SKIPPED_LINES_IN_SQL  # numbered by the ASOF join
    bad = set(malformed)
    dispatches = "\n".join([DISPATCH_HEADER, *(csv_line(drow(n)) + (",extra" if n in bad else "")
                                               for n in range(1, 9_101))]).encode() + b"\n"
    folder = make_dataset(tmp_path / "ds", dispatches=dispatches, dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    fast = _all_tables(con)
    assert full_passes == []
    assert column(con, 'SELECT "row" FROM dispatches ORDER BY "row"') == [
        n + 1 for n in range(1, 9_101) if n not in bad]
    assert [line for line, _ in reasons(con)] == [n + 1 for n in malformed]
    assert_reconciles(con)
    monkeypatch.setattr(linereader, "count_lines_finding", lambda path, byte, **kwargs: (-1, False))
    load_dataset(con, folder)
    assert "dispatches.csv" in full_passes
    assert _all_tables(con) == fast


def test_blank_lines_inside_a_csv_keep_its_fast_path(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, full_passes: list[str]) -> None:
    """Q4, Q5: empty lines among the records are stepped over as in a JSONL file; lines stay exact."""
    rows = [csv_line(row) for row in FAST_DISPATCH_ROWS]
    dispatches = "\n".join([DISPATCH_HEADER, "", rows[0], "", "", *rows[1:4], "", *rows[4:]]).encode() + b"\n"
    folder = make_dataset(tmp_path / "ds", dispatches=dispatches, dispatch_name="dispatches.csv")
    load_dataset(con, folder)
    fast = _all_tables(con)
    assert full_passes == []
    assert column(con, 'SELECT "row" FROM dispatches ORDER BY "row"') == [3, 12]
    assert ("dispatches.csv", 6, rows[1], "missing conversion_id") in quarantine(con)
    monkeypatch.setattr(linereader, "count_lines_finding", lambda path, byte, **kwargs: (-1, False))
    load_dataset(con, folder)
    assert "dispatches.csv" in full_passes
    assert _all_tables(con) == fast
