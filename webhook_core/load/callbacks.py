"""Loading ``callbacks.{jsonl,har,parquet}`` (or the files of ``callbacks/``) into ``callback_rows``
(or ``callback_keys``).

Every format becomes JSONL-shaped documents, judged by one SQL text (``_CALLBACK_FIELDS``).
A ``callbacks.jsonl`` whose lines DuckDB's CSV reader splits exactly is read by it in
parallel; otherwise by the line reader (``linereader.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from webhook_core.exceptions import DatasetError
from webhook_core.load import linereader
from webhook_core.load.formats import json_line_text, parquet_columns, parquet_types
from webhook_core.load.inputs import UNUSABLE, InputFile, check_lines, stage_unusable, unusable_reason
from webhook_core.load.numbering import (
    MOST_SKIPPED_LINES_IN_SQL,
    SKIPPED_LINES,
    counting_lines,
    skipped_lines_before,
    with_lines_skipped_before,
)
from webhook_core.load.progress import ProgressCallback, execute_reporting, line_chunks
from webhook_core.load.schema import CALLBACK_TYPES, CALLBACKS_VIEW, CREATE_CALLBACKS, KEYS_ONLY_CALLBACKS_VIEW
from webhook_core.load.timestamps import ZONE_LESS_SQL
from webhook_core.quoting import quote_identifier, quote_literal
from webhook_core.rules.keys import keys_fingerprint, keys_sql
from webhook_core.rules.settings import WebhookVersions

__all__ = ["CALLBACK_READERS", "load_callbacks"]

_CALLBACK_STAGE = """
    CREATE OR REPLACE TEMP TABLE callback_stage (line BIGINT, raw VARCHAR, parse_error VARCHAR, doc VARCHAR)
"""

#: The JSONL fields, read from each document by two parses in all: one gives the document's
#: JSON type and its fields' (``t``), one their text (``s``: a string's value, anything else
#: as JSON text; ``json_extract_string`` with a list of paths). Field positions:
_FIELD_PATHS = ("received_at", "url", "method", "headers", "body", "request_id", "response_status",
                "response_body", "refused")
_S = {name: f"s[{index}]" for index, name in enumerate(_FIELD_PATHS, 1)}
_FIELD_PATHS_SQL = ", ".join(f"'$.{name}'" for name in _FIELD_PATHS)
#: ``t[1]`` is the document's own type.
_T = {name: f"t[{index}]" for index, name in enumerate(_FIELD_PATHS, 2)}

#: From a JSONL-shaped document to the callbacks columns; a non-NULL ``reason`` quarantines the row.
_CALLBACK_FIELDS = f"""
    line AS seq, raw,
    CASE
        WHEN parse_error IS NOT NULL THEN parse_error
        WHEN t IS NULL THEN 'not valid JSON'
        WHEN doc_type <> 'OBJECT' THEN 'not a JSON object'
        WHEN coalesce({_T["received_at"]}, 'NULL') = 'NULL' THEN 'missing received_at'
        WHEN {_T["received_at"]} <> 'VARCHAR' OR received_at IS NULL
            THEN 'bad received_at: not an ISO 8601 timestamp'
        WHEN coalesce({_T["url"]}, 'NULL') = 'NULL' OR {_S["url"]} = '' THEN 'missing url'
        WHEN {_T["url"]} <> 'VARCHAR' THEN 'bad url: not a string'
        -- refused is judged by the status it was answered: without one there is nothing to compare
        WHEN refused AND NOT coalesce(try_cast({_S["response_status"]} AS INTEGER) BETWEEN 100 AND 599, false)
            THEN 'refused without a response_status'
    END AS reason,
    -- the line number when NULL, given on insert
    wa_json_text_of({_T["request_id"]}, {_S["request_id"]}) AS request_id,
    received_at,
    coalesce(nullif({_S["method"]}, ''), 'POST') AS method,
    {_S["url"]} AS url,
    headers,
    -- (CASE, not IN (…): DuckDB may run a value list as a join, which would lose the file's order)
    CASE body_type WHEN 'VARCHAR' THEN {_S["body"]} WHEN 'OBJECT' THEN {_S["body"]} WHEN 'ARRAY' THEN {_S["body"]}
    END AS body,
    CASE WHEN try_cast({_S["response_status"]} AS INTEGER) BETWEEN 100 AND 599
         THEN try_cast({_S["response_status"]} AS INTEGER) END AS recorded_status,
    {_S["response_body"]} AS recorded_body,
    list_filter([
        CASE WHEN coalesce(body_type, 'NULL') = 'NULL' THEN 'body_absent' END,
        CASE body_type WHEN 'OBJECT' THEN 'body_not_text' WHEN 'ARRAY' THEN 'body_not_text'
                       WHEN 'BIGINT' THEN 'body_not_text' WHEN 'UBIGINT' THEN 'body_not_text'
                       WHEN 'DOUBLE' THEN 'body_not_text' WHEN 'BOOLEAN' THEN 'body_not_text' END,
        CASE WHEN coalesce(headers_type, 'NULL') NOT IN ('NULL', 'OBJECT', 'ARRAY')
               OR CASE WHEN headers_type = 'ARRAY' THEN len(wa_headers(headers)) < json_array_length(headers) END
             THEN 'headers_unreadable' END,
        -- read as UTC (docs/semantics.md I2); the load counts these for a warning
        CASE WHEN received_at IS NOT NULL AND {ZONE_LESS_SQL.format(_S["received_at"])} THEN 'received_at_without_zone'
        END
    ], lambda n: n IS NOT NULL) AS capture_notes,
    refused
"""

#: The two parses (``try``: a line that is not JSON has no types), then the typed pieces the
#: fields above read; ``headers`` is JSON text, kept only when it is an object or a list.
#: ``{{source}}`` has the columns ``line, raw, parse_error, doc`` (the document's text).
_CALLBACK_PARTS = f"""
    SELECT *, wa_input_timestamp(CASE WHEN {_T["received_at"]} = 'VARCHAR' THEN {_S["received_at"]} END)
                  AS received_at,
           t[1] AS doc_type, {_T["body"]} AS body_type, {_T["headers"]} AS headers_type,
           -- only JSON true: the receiver's mark of a request it answered without judging (I3)
           coalesce({_T["refused"]} = 'BOOLEAN' AND {_S["refused"]} = 'true', false) AS refused,
           CASE {_T["headers"]} WHEN 'OBJECT' THEN {_S["headers"]} WHEN 'ARRAY' THEN {_S["headers"]} END AS headers
    FROM (SELECT *, CASE WHEN t[1] = 'OBJECT' THEN json_extract_string(doc, [{_FIELD_PATHS_SQL}]) END AS s
          FROM (SELECT line, raw, parse_error, doc, try(json_type(doc, ['$', {_FIELD_PATHS_SQL}])) AS t
                FROM {{source}}))
"""

#: The reason given a blank line in the parallel read; such rows are dropped, not quarantined.
_BLANK_LINE = "'(blank line)'"

_CALLBACK_COLUMNS = ", ".join(CALLBACK_TYPES)

#: ``callback_stage`` rows (line, raw text, staging error, parsed document) to judged rows.
_JUDGE_STAGE = f"""
    CREATE OR REPLACE TEMP TABLE callback_judged AS
    SELECT {_CALLBACK_FIELDS} FROM ({_CALLBACK_PARTS.format(source="callback_stage")})
"""

#: Lines from the line reader (``chunk``: line, raw, utf8) to ``callback_stage``. A line that is not
#: UTF-8 has no document: its text (bad bytes written ``\xNN``) is not JSON, and a parse that fails
#: makes DuckDB judge the rest of the vector a row at a time.
_STAGE_LINES = f"""
    INSERT INTO callback_stage
    SELECT line, raw, CASE WHEN NOT utf8 THEN 'not valid UTF-8' END,
           CASE WHEN utf8 THEN {json_line_text("line = 1")} END
    FROM (SELECT line, utf8, regexp_replace(raw, '\\r$', '') AS raw FROM chunk)
    WHERE NOT regexp_full_match(raw, '[ \t]*')
"""



def load_callbacks(con: duckdb.DuckDBPyConnection, files: Sequence[InputFile], progress: ProgressCallback | None,
                   keys_for: WebhookVersions | None) -> None:
    """Into ``callback_rows``, or with ``keys_for`` into ``callback_keys`` (their keys for those settings).

    Each file is read into the empty table as if it were the only one (the fast reads number the rows
    by their place in the table); a file after the first is then added to the rows before it with its
    rank in ``seq`` (``inputs.py``).
    """
    _CallbackTarget(keys_for).create(con)
    for file in files:
        target = _CallbackTarget(keys_for, file.id_prefix)
        if file.rank > 0:
            con.execute(f"ALTER TABLE {target.table} RENAME TO {_EARLIER_FILES}")
            _empty_target(con, target)
        _load_file(con, file, progress, target)
        if file.rank > 0:
            con.execute(f"""
                INSERT INTO {_EARLIER_FILES} SELECT * REPLACE (seq + {file.offset} AS seq) FROM {target.table};
                DROP TABLE {target.table};
                ALTER TABLE {_EARLIER_FILES} RENAME TO {target.table};
            """)
    if keys_for is None:
        con.execute(CALLBACKS_VIEW)
    else:
        con.execute("DROP TABLE callback_rows")
        con.execute(KEYS_ONLY_CALLBACKS_VIEW)
        # What replay() checks its settings against.
        con.execute(f"COMMENT ON TABLE callback_keys IS {quote_literal(keys_fingerprint(keys_for))}")


#: The rows of the files already read while the next one is read into the empty target table.
_EARLIER_FILES = "wa_callbacks_earlier_files"


def _load_file(con: duckdb.DuckDBPyConnection, file: InputFile, progress: ProgressCallback | None,
               target: _CallbackTarget) -> None:
    """One file into the empty ``target`` and the quarantine, and its ``load_report`` row. A file in a folder
    that cannot be used at all is quarantined whole (``inputs.stage_unusable``) instead of stopping the load."""
    con.execute(_CALLBACK_STAGE)
    source = quote_literal(file.name)
    try:
        CALLBACK_READERS[file.path.suffix.lstrip(".")](con, file.path, source, progress, target)
    except (DatasetError, OSError, duckdb.Error) as error:
        if not file.in_folder:
            raise
        _empty_target(con, target)
        stage_unusable(con, file)
        con.execute(f"""
            DELETE FROM quarantine WHERE source_file = {source};
            INSERT INTO quarantine SELECT {source}, line, raw, {quote_literal(unusable_reason(file, error))}
            FROM {UNUSABLE};
            DROP TABLE {UNUSABLE};
        """)
    check_lines(con, file, f"SELECT greatest((SELECT max(seq) FROM {target.table}), "
                           f"(SELECT max(line) FROM quarantine WHERE source_file = {source}))")
    # Only the requests kept whole keep their capture notes: the keys alone cannot count zone-less times.
    zone_less = ("NULL::BIGINT" if target.keys_for is not None else
                 "(SELECT count(*) FROM callback_rows WHERE list_contains(capture_notes, 'received_at_without_zone'))")
    con.execute(f"""
        INSERT INTO load_report
        SELECT {source}, 'callbacks', loaded + quarantined, loaded, quarantined, {zone_less}
        FROM (SELECT (SELECT count(*) FROM {target.table}) AS loaded,
                     (SELECT count(*) FROM quarantine WHERE source_file = {source}) AS quarantined)
    """)
    con.execute("DROP TABLE callback_stage")


def _empty_target(con: duckdb.DuckDBPyConnection, target: _CallbackTarget) -> None:
    """``target`` created anew, empty (``callback_keys`` is shaped after ``callback_rows``)."""
    con.execute(f"DROP TABLE IF EXISTS {target.table}")
    con.execute(CREATE_CALLBACKS)
    target.create(con)


@dataclass(frozen=True, slots=True)
class _CallbackTarget:
    """Where loaded callbacks go: ``callback_rows`` as read, or with ``keys_for`` only their keys."""

    keys_for: WebhookVersions | None
    #: Opens the default ``request_id`` before the line (``InputFile.id_prefix``).
    id_prefix: str = ""

    def default_id(self, column: str) -> str:
        """SQL: the ``request_id`` of a row that names none (I3), from its line, the column ``column``."""
        line = f"CAST({column} AS VARCHAR)"
        return f"{quote_literal(self.id_prefix)} || {line}" if self.id_prefix else line

    @property
    def table(self) -> str:
        return "callback_rows" if self.keys_for is None else "callback_keys"

    def create(self, con: duckdb.DuckDBPyConnection) -> None:
        """An empty target table (``callback_rows`` is made empty with the other tables)."""
        if self.keys_for is not None:
            con.execute(f"CREATE OR REPLACE TABLE callback_keys AS SELECT * FROM ({self.select('callback_rows')}) "
                        "WHERE false")

    def select(self, rows: str, passthrough: tuple[str, ...] = ()) -> str:
        """SQL: the target's columns (and ``passthrough``) from ``rows``, which has ``callback_rows``'."""
        if self.keys_for is None:
            return f"SELECT * FROM {rows}"
        return keys_sql(self.keys_for, rows, passthrough)


def _read_jsonl(con: duckdb.DuckDBPyConnection, path: Path, source: str, progress: ProgressCallback | None,
                target: _CallbackTarget) -> None:
    if not _read_jsonl_in_parallel(con, path, source, progress, target):
        target.create(con)
        # Each chunk goes all the way to the final tables so memory stays one chunk deep.
        for chunk in line_chunks(path, progress):
            con.register("chunk", chunk)
            con.execute(_STAGE_LINES)
            con.unregister("chunk")
            _flush_callbacks(con, source, target)


def _read_har(con: duckdb.DuckDBPyConnection, path: Path, source: str, progress: ProgressCallback | None,
              target: _CallbackTarget) -> None:
    target.create(con)
    _stage_har(con, path)
    _flush_callbacks(con, source, target)


def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path, source: str, progress: ProgressCallback | None,
                  target: _CallbackTarget) -> None:
    columns = parquet_columns(con, path)
    for required in ("received_at", "url"):
        if required not in columns:
            raise DatasetError("missing column; callbacks need at least received_at and url",
                               path=str(path), field=required)
    types = dict(zip(columns, parquet_types(con, path), strict=True))
    target.create(con)
    # A headers column may hold JSON text: parse it so it reads like the JSONL field.
    struct = ", ".join(
        "headers := try_cast(headers AS JSON)" if c == "headers" and types[c] == "VARCHAR"
        else quote_identifier(c) for c in columns)
    con.execute(f"""
        INSERT INTO callback_stage
        SELECT file_row_number + 1, CAST(doc AS VARCHAR), NULL, doc
        FROM (SELECT file_row_number, to_json(struct_pack({struct})) AS doc
              FROM read_parquet({quote_literal(str(path))}, file_row_number = true))
    """)
    _flush_callbacks(con, source, target)


#: Each callback format by its file suffix: reads the file into ``target`` (``source`` is its name as
#: SQL, for the quarantine). ``load_dataset`` accepts these.
CALLBACK_READERS: dict[str, Callable[[duckdb.DuckDBPyConnection, Path, str, ProgressCallback | None, _CallbackTarget],
                                     None]] = {"jsonl": _read_jsonl, "har": _read_har, "parquet": _read_parquet}


def _flush_callbacks(con: duckdb.DuckDBPyConnection, source: str, target: _CallbackTarget) -> None:
    """Judge ``callback_stage``: its bad rows to the quarantine, the others to ``target``."""
    con.execute(_JUDGE_STAGE)
    columns = _CALLBACK_COLUMNS.replace("request_id", f"coalesce(request_id, {target.default_id('seq')}) AS request_id")
    rows = f"(SELECT {columns} FROM callback_judged WHERE reason IS NULL ORDER BY seq)"
    con.execute(f"""
        INSERT INTO quarantine SELECT {source}, seq, raw, reason FROM callback_judged WHERE reason IS NOT NULL;
        INSERT INTO {target.table} {target.select(rows)};
        DROP TABLE callback_judged;
        DELETE FROM callback_stage;
    """)


def _read_jsonl_in_parallel(con: duckdb.DuckDBPyConnection, path: Path, source: str,
                            progress: ProgressCallback | None, target: _CallbackTarget) -> bool:
    """Load ``callbacks.jsonl`` with DuckDB's parallel CSV reader; False (nothing loaded) if it cannot.

    The lines are read as one-column CSV (quoting off, a delimiter no JSON line holds) and
    judged by the line reader's SQL in the same statement, every line a row, a blank one
    included (and, for ``callback_keys``, given its keys). Such a statement keeps the file's
    order in the table it creates (every step is a projection), so a line's number is its
    row's rowid + 1, written into ``seq`` after. (DuckDB's JSON reader gives no line numbers
    and, on several threads, not the file's order either. A join would lose the order too:
    DuckDB runs a long ``IN (…)`` list as one, so the judging SQL has none.)

    A line the CSV reader cannot read (bytes that are not UTF-8, more than ``_MAX_LINE_BYTES``)
    it leaves out and names in its rejects table, by number: the rows after it are numbered past
    it (however many there are), and it is read again from the file and judged like the line
    reader's lines. Where the CSV reader would not give the lines as the line reader does (a lone
    CR, a CRLF line among LF lines) it stops with an error or gives a count that is not the line
    count, and the line reader takes the file. So it does when the file holds the delimiter: the
    CSV reader drops it, and what it ends, unseen at the end of a line. Lines to quarantine, and
    lines opening with a byte-order mark (only the file's first may, and only the line reader
    knows which is first), are read again from the file by number and judged like the line
    reader's (raw text as written).
    """
    size = path.stat().st_size
    if progress is not None:
        progress(path.name, 0, size)
    lines = (f"read_csv({quote_literal(str(path))}, columns = {{'raw': 'VARCHAR'}}, delim = chr({ord(_DELIMITER)}), "
             f"quote = '', escape = '', header = false, auto_detect = false, max_line_size = {_MAX_LINE_BYTES}, "
             f"store_rejects = true, rejects_table = '{_REJECTS}', rejects_scan = '{_REJECTS}_scans')")
    blank = "regexp_full_match(coalesce(raw, ''), '[ \t]*')"
    # No line numbers yet: a line opening with a byte-order mark is left to the line reader (see above).
    reader = (f"(SELECT NULL::BIGINT AS line, raw, CASE WHEN {blank} THEN {_BLANK_LINE} END AS parse_error, "
              f"{json_line_text('false')} AS doc FROM {lines})")
    # The keys read the headers' JSON text as it is: casting it to JSON would parse every one.
    typed = ", ".join(name if name == "headers" and target.keys_for is not None else f"CAST({name} AS {kind}) AS {name}"
                      for name, kind in CALLBACK_TYPES.items())
    report = None if progress is None else (lambda percent: progress(path.name, int(size * percent / 100), size))
    (preserve,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() or (True,)
    con.execute("SET preserve_insertion_order = true")
    unreadable: list[int] = []
    with counting_lines(path, find=_DELIMITER) as counting:
        try:
            # Only a row to quarantine keeps its text (read again from the file below, as written).
            judged = f"SELECT {_CALLBACK_FIELDS} FROM ({_CALLBACK_PARTS.format(source=reader)})"
            rows = f"(SELECT {typed}, reason FROM ({judged}))"
            execute_reporting(con, f"CREATE OR REPLACE TABLE {target.table} AS {target.select(rows, ('reason',))}",
                               report)
            counted = con.execute(f"SELECT count(*) FROM {target.table}").fetchone()
            # (DuckDB names a line once per error in it.)
            unreadable = [line for (line,) in con.execute(
                f"SELECT DISTINCT line FROM {_REJECTS} ORDER BY line").fetchall()]
        except duckdb.Error:  # see above: the line reader copes
            counted = None
        finally:
            con.execute(f"SET preserve_insertion_order = {bool(preserve)}")
            con.execute(f"DROP TABLE IF EXISTS {_REJECTS}; DROP TABLE IF EXISTS {_REJECTS}_scans")
    try:
        line_count, holds_delimiter = counting.result()
    except OSError:  # then the line reader reports the file
        return _give_up_parallel_read(con, target)
    if counted is None or holds_delimiter or counted[0] + len(unreadable) != line_count:
        return _give_up_parallel_read(con, target)
    if len(unreadable) <= MOST_SKIPPED_LINES_IN_SQL:
        con.execute(f"UPDATE {target.table} SET seq = rowid + 1 + {skipped_lines_before('rowid', unreadable)}")
    else:
        numbered = with_lines_skipped_before(con, unreadable, f"(SELECT rowid AS rid FROM {target.table})")
        con.execute(f"UPDATE {target.table} SET seq = n.rid + 1 + n.skipped_before FROM {numbered} n "
                    f"WHERE {target.table}.rowid = n.rid")
        con.execute(f"DROP TABLE {SKIPPED_LINES}")
    con.execute(f"UPDATE {target.table} SET request_id = {target.default_id('seq')} "
                "WHERE request_id IS NULL AND reason IS NULL")
    rejected = [number for (number,) in con.execute(
        f"SELECT seq FROM {target.table} WHERE reason IS NOT NULL AND reason <> {_BLANK_LINE} ORDER BY seq"
    ).fetchall()]
    con.execute(f"DELETE FROM {target.table} WHERE reason IS NOT NULL")
    con.execute(f"ALTER TABLE {target.table} DROP COLUMN reason")
    if rejected or unreadable:
        con.register("chunk", linereader.pick_lines(path, rejected + unreadable))
        # A line the CSV reader named is one it could not read; if not, its numbers cannot be trusted.
        [(misnamed,)] = con.execute(f"""
            SELECT count(*) FROM chunk
            WHERE line IN (SELECT unnest(?)) AND utf8 AND strlen(raw) < {_MAX_LINE_BYTES} - 1
        """, [unreadable]).fetchall()
        if misnamed:
            con.unregister("chunk")
            return _give_up_parallel_read(con, target)
        con.execute(_STAGE_LINES)
        con.unregister("chunk")
        _flush_callbacks(con, source, target)
    if progress is not None:
        progress(path.name, size, size)
    return True


#: The parallel JSONL read's column delimiter: a byte no valid JSON text holds.
_DELIMITER = b"\x01"
#: DuckDB's rejects table for the parallel JSONL read (a temporary table, dropped after the read).
_REJECTS = "wa_jsonl_rejects"
#: Longest line the parallel JSONL read takes; a longer one is read again by the line reader.
_MAX_LINE_BYTES = 2 * 1024 * 1024


def _give_up_parallel_read(con: duckdb.DuckDBPyConnection, target: _CallbackTarget) -> bool:
    """Drop what the parallel JSONL read wrote, for the line reader to start afresh."""
    con.execute(f"DROP TABLE IF EXISTS {target.table}")
    con.execute(CREATE_CALLBACKS)
    return False


def _stage_har(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    literal = quote_literal(str(path))
    try:
        kind = con.execute(f"""
            SELECT CASE WHEN doc IS NULL THEN 'invalid'
                        WHEN json_type(doc, '$.log.entries') = 'ARRAY' THEN 'ok'
                        ELSE 'no_entries' END
            FROM (SELECT try_cast(content AS JSON) AS doc FROM read_text({literal}))
        """).fetchone()
    except duckdb.Error as exc:  # not UTF-8, unreadable
        raise DatasetError(f"cannot read as text: {str(exc).splitlines()[0]}", path=str(path)) from exc
    if kind is None or kind[0] == "invalid":
        raise DatasetError("not valid JSON; a HAR file is one JSON document", path=str(path))
    if kind[0] == "no_entries":
        raise DatasetError("not a HAR file: log.entries must be a list", path=str(path), field="log.entries")
    # Re-shape each entry into the JSONL fields; a lossy writer's missing parts become nulls.
    con.execute(f"""
        INSERT INTO callback_stage
        SELECT position, CAST(entry AS VARCHAR),
               CASE WHEN json_type(entry) <> 'OBJECT' THEN 'not a JSON object' END,
               json_object(
                   'received_at', json_extract(entry, '$.startedDateTime'),
                   'url', json_extract(entry, '$.request.url'),
                   'method', json_extract(entry, '$.request.method'),
                   'headers', json_extract(entry, '$.request.headers'),
                   'body', json_extract(entry, '$.request.postData.text'),
                   'request_id', json_extract(entry, '$._request_id'),
                   'response_status', json_extract(entry, '$.response.status'),
                   'response_body',
                       CASE WHEN json_extract_string(entry, '$.response.content.encoding') = 'base64'
                            THEN to_json(coalesce(
                                try(decode(from_base64(json_extract_string(entry, '$.response.content.text')))),
                                json_extract_string(entry, '$.response.content.text')))
                            ELSE json_extract(entry, '$.response.content.text') END)
        FROM (
            SELECT unnest(entries) AS entry, unnest(range(1, len(entries) + 1)) AS position
            FROM (SELECT CAST(json_extract(try_cast(content AS JSON), '$.log.entries') AS JSON[]) AS entries
                  FROM read_text({literal}))
        )
    """)
