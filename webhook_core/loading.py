"""Loading a dataset folder into DuckDB.

A dataset is a folder with ``webhooks.json``, one ``dispatches.{csv,jsonl,parquet}``
and one ``callbacks.{jsonl,har,parquet}`` (docs/semantics.md, "Inputs").

Loading never stops on a bad row and never drops one silently: a row that cannot
be used goes to the ``quarantine`` table with its file, line (or HAR entry
number), raw text and reason, and every file reconciles as
``read = loaded + quarantined``. A file that cannot be used at all raises a
:class:`~webhook_core.exceptions.DatasetError` naming the file and field.

Tables written (all replaced on each load):

* ``webhook_versions`` – one row per webhook version;
* ``dispatches`` – waiting webhooks: ``row, lead_id, conversion_id, advertiser_id,
  external_id, webhook_id, created_at, source_line``; ``row`` is the lead's key and its
  position in the input (its line, or Parquet row number), the tie-break between leads;
* ``callbacks`` – captured requests: ``seq, request_id, received_at, method, url,
  headers, body, recorded_status, recorded_body, capture_notes, refused``, ``headers`` a list of
  ``{name, value}`` in captured order. It is a view over ``callback_rows``, which keeps
  the headers as captured (JSON) because building the list for every row cost about as
  much as the rest of the load, while the replay reads a header of few callbacks;
* ``callback_keys`` – instead of ``callbacks`` when loaded with ``keep_requests=False``: of each
  callback only what the replay judges it by (``webhook_core.keys``), computed while the file is
  read, for a one-shot replay of large captures (``webhook-audit replay`` without ``--database``).
  ``callbacks`` is then a view that fails, when read, with a message saying to load again;
* ``quarantine`` – ``source_file, line, raw, reason``;
* ``load_report`` – ``source_file, table_name, read, loaded, quarantined``.

Two fast paths, taken only when they give exactly what the line readers give
(``tests/test_loading.py`` holds them to it): a ``callbacks.jsonl`` that DuckDB's CSV
reader splits into exactly its lines is read by it in parallel and judged in SQL, and
a ``dispatches.csv`` whose lines after the header are records (and at most 64 empty
lines) takes its line numbers from its row order instead of a second pass over the file.
Either way only the rows that end up quarantined have their raw text read back from the
file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from webhook_core.exceptions import DatasetError, MissingFileError
from webhook_core.keys import keys_fingerprint, keys_sql
from webhook_core.linereader import (
    blank_line_numbers,
    count_lines_finding,
    iter_line_chunks,
    pick_lines,
)
from webhook_core.matching import to_us
from webhook_core.settings import WebhookVersions, load_webhooks
from webhook_core.sql import install_macros, quote_identifier, quote_literal

__all__ = [
    "CALLBACK_FORMATS",
    "DISPATCH_COLUMNS",
    "DISPATCH_FORMATS",
    "Dataset",
    "FileReport",
    "ProgressCallback",
    "connect",
    "find_input",
    "load_dataset",
]

DISPATCH_COLUMNS = ("lead_id", "conversion_id", "advertiser_id", "external_id", "webhook_id", "created_at")
DISPATCH_FORMATS = ("csv", "jsonl", "parquet")
CALLBACK_FORMATS = ("jsonl", "har", "parquet")

#: ``progress(label, bytes_done, bytes_total)`` is called as a file is read.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class FileReport:
    path: str
    table: str
    read: int
    loaded: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class Dataset:
    path: Path
    webhooks: WebhookVersions
    files: tuple[FileReport, ...]


def connect(database: str = ":memory:", *, memory_limit: str | None = None,
            temp_directory: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for webhook_core (UTC session, macros installed).

    ``memory_limit`` (e.g. ``"4GB"``) and ``temp_directory`` let data larger than
    memory spill to disk instead of failing.
    """
    con = duckdb.connect(database)
    prepare(con, memory_limit=memory_limit, temp_directory=temp_directory, threads=threads)
    return con


def prepare(con: duckdb.DuckDBPyConnection, *, memory_limit: str | None = None,
            temp_directory: str | None = None, threads: int | None = None) -> None:
    # A naive timestamp means UTC, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's own bar would write to stdout mid-table; the CLI shows its own progress. (In Jupyter
    # DuckDB refuses to touch the setting without ipywidgets, and draws no text bar there anyway.)
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    if memory_limit is not None:
        con.execute("SET memory_limit = ?", [memory_limit])
    if temp_directory is not None:
        con.execute("SET temp_directory = ?", [temp_directory])
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    install_macros(con)


def find_input(folder: Path, stem: str, formats: tuple[str, ...]) -> Path:
    """The one ``stem.EXT`` file in ``folder``; none or several is a :class:`DatasetError`."""
    found = [folder / f"{stem}.{ext}" for ext in formats if (folder / f"{stem}.{ext}").is_file()]
    if not found:
        names = ", ".join(f"{stem}.{ext}" for ext in formats)
        raise MissingFileError(f"no {stem} file; a dataset needs one of {names}", path=str(folder))
    if len(found) > 1:
        raise DatasetError(f"several {stem} files ({', '.join(p.name for p in found)}); keep one",
                           path=str(folder))
    return found[0]


def load_dataset(con: duckdb.DuckDBPyConnection, folder: str | Path, *,
                 progress: ProgressCallback | None = None, keep_requests: bool = True,
                 required: Collection[str] = (), may_be_empty: Collection[str] = ()) -> Dataset:
    """Load ``folder`` into ``con``'s tables and return what was read, loaded and quarantined.

    ``keep_requests=False`` keeps of each callback only its keys (table ``callback_keys``, no
    ``callbacks``): enough for :func:`~webhook_core.replay.replay` with these webhook settings
    (timeouts may differ), and far less memory and time on large captures.

    ``required`` names the tables (``"dispatches"``, ``"callbacks"``) whose file must load at
    least one row, else a :class:`DatasetError` names the file, what was read and quarantined and
    the commonest reason (the tables are loaded all the same). Of those, a file named in
    ``may_be_empty`` may have no rows at all; one whose every row was quarantined is still an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError("not a folder; a dataset is a folder with webhooks.json, "
                               "dispatches.* and callbacks.*", path=str(folder))
    webhooks = load_webhooks(folder / "webhooks.json")
    dispatch_path = find_input(folder, "dispatches", DISPATCH_FORMATS)
    callback_path = find_input(folder, "callbacks", CALLBACK_FORMATS)
    prepare(con)
    _create_tables(con)
    write_webhook_versions(con, webhooks)
    _load_dispatches(con, dispatch_path, progress)
    _load_callbacks(con, callback_path, progress, None if keep_requests else webhooks)
    rows = con.execute(
        "SELECT source_file, table_name, read, loaded, quarantined FROM load_report ORDER BY table_name DESC"
    ).fetchall()
    files = tuple(FileReport(*row) for row in rows)
    for report in files:
        if report.table in required and report.loaded == 0:
            if report.read == 0 and report.table in may_be_empty:
                continue
            raise _nothing_loaded(con, folder, report)
    return Dataset(folder, webhooks, files)


def _nothing_loaded(con: duckdb.DuckDBPyConnection, folder: Path, report: FileReport) -> DatasetError:
    """The error for a required file of which no row was loaded."""
    path = str(folder / report.path)
    if report.read == 0:
        fix = ("the file has no dispatches; add one row per waiting webhook" if report.table == "dispatches"
               else "the file has no callbacks; add the captured requests (docs/semantics.md, I3-I5)")
        return DatasetError(f"0 rows: {fix}", path=path)
    found = con.execute("""
        SELECT reason, min(line) FROM quarantine WHERE source_file = ?
        GROUP BY reason ORDER BY count(*) DESC, min(line) LIMIT 1
    """, [report.path]).fetchone()
    reason, line = found if found is not None else ("unknown", 0)
    unit = {".har": "entry", ".parquet": "row"}.get(Path(report.path).suffix, "line")
    # Every dispatch reason but a malformed row or duplicate can also be fixed in webhooks.json (Q3).
    fix = ("fix those rows or webhooks.json (docs/semantics.md, Q3)" if report.table == "dispatches"
           else "fix those rows (docs/semantics.md, Q2)")
    return DatasetError(f"0 of {report.read:,} rows loaded ({report.quarantined:,} quarantined; commonest reason: "
                        f"{reason}, e.g. {unit} {line}); {fix}", path=path)


def write_webhook_versions(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions,
                           table: str = "webhook_versions") -> None:
    con.execute(f"""
        CREATE OR REPLACE TABLE {table} (
            version_no INTEGER, webhook_id VARCHAR, advertiser_id VARCHAR, wait BOOLEAN,
            timeout_us BIGINT, active_from_us BIGINT, active_to_us BIGINT)
    """)
    versions = webhooks.versions
    # One Arrow table, one INSERT: executemany costs about half a millisecond a row (19 s for 40,000
    # versions, and the replay writes them again).
    rows = pa.table({
        "version_no": pa.array(range(len(versions)), pa.int32()),
        "webhook_id": pa.array([v.webhook_id for v in versions], pa.string()),
        "advertiser_id": pa.array([v.advertiser_id for v in versions], pa.string()),
        "wait": pa.array([v.wait for v in versions], pa.bool_()),
        "timeout_us": pa.array([v.timeout_us for v in versions], pa.int64()),
        "active_from_us": pa.array([None if v.active_from is None else to_us(v.active_from) for v in versions],
                                   pa.int64()),
        "active_to_us": pa.array([None if v.active_to is None else to_us(v.active_to) for v in versions], pa.int64()),
    })
    con.register("wa_versions", rows)
    try:
        con.execute(f"INSERT INTO {table} SELECT * FROM wa_versions")
    finally:
        con.unregister("wa_versions")


#: ``callback_rows`` keeps the headers as captured (JSON); the ``callbacks`` view lists them.
_CALLBACK_TYPES = {
    "seq": "BIGINT", "request_id": "VARCHAR", "received_at": "TIMESTAMPTZ", "method": "VARCHAR", "url": "VARCHAR",
    "headers": "JSON", "body": "VARCHAR", "recorded_status": "INTEGER",
    "recorded_body": "VARCHAR", "capture_notes": "VARCHAR[]", "refused": "BOOLEAN",
}
_CREATE_CALLBACKS = ("CREATE OR REPLACE TABLE callback_rows ("
                     + ", ".join(f"{name} {kind}" for name, kind in _CALLBACK_TYPES.items()) + ")")
#: What everything but the replay reads: the headers as a list of ``{name, value}``, in captured order.
_CALLBACKS_VIEW = ("CREATE OR REPLACE VIEW callbacks AS SELECT "
                   + ", ".join("wa_headers(headers) AS headers" if name == "headers" else name
                               for name in _CALLBACK_TYPES) + " FROM callback_rows")


#: After a keys-only load: reading ``callbacks`` (the analysis functions do) says why it holds nothing.
_KEYS_ONLY_CALLBACKS_VIEW = (
    "CREATE OR REPLACE VIEW callbacks AS SELECT "
    + ", ".join(f"CAST(NULL AS {'STRUCT(name VARCHAR, value VARCHAR)[]' if name == 'headers' else kind}) AS {name}"
                for name, kind in _CALLBACK_TYPES.items())
    + " FROM (SELECT 1) WHERE error("
    + quote_literal("the callbacks were loaded with keep_requests=False, as their keys for the replay only: "
                    "load the dataset again with keep_requests=True to read the requests")
    + ") IS NULL")


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS callbacks")
    con.execute("DROP TABLE IF EXISTS callback_keys")
    con.execute(_CREATE_CALLBACKS)
    con.execute("""
        CREATE OR REPLACE TABLE quarantine (source_file VARCHAR, line BIGINT, raw VARCHAR, reason VARCHAR);
        CREATE OR REPLACE TABLE load_report (
            source_file VARCHAR, table_name VARCHAR, read BIGINT, loaded BIGINT, quarantined BIGINT);
        CREATE OR REPLACE TABLE dispatches (
            "row" BIGINT, lead_id VARCHAR, conversion_id VARCHAR, advertiser_id VARCHAR,
            external_id VARCHAR, webhook_id VARCHAR, created_at TIMESTAMPTZ, source_line BIGINT);
    """)


# --------------------------------------------------------------------------- dispatches

def _json_line_text(first_line: str) -> str:
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


def _json_line(first_line: str) -> str:
    """SQL: :func:`_json_line_text` parsed as JSON, NULL when it is not valid JSON."""
    return f"try_cast({_json_line_text(first_line)} AS JSON)"


#: For readers that number their lines (``line``).
_JSON_LINE = _json_line("line = 1")

_DISPATCH_STAGE = """
    CREATE OR REPLACE TEMP TABLE dispatch_stage (
        line BIGINT, raw VARCHAR, parse_error VARCHAR,
        lead_id VARCHAR, conversion_id VARCHAR, advertiser_id VARCHAR,
        external_id VARCHAR, webhook_id VARCHAR, created_at_text VARCHAR)
"""


def _load_dispatches(con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressCallback | None) -> None:
    con.execute(_DISPATCH_STAGE)
    suffix = path.suffix.lstrip(".")
    staged = "dispatch_stage"
    if suffix == "csv":
        staged = _stage_dispatch_csv(con, path)
    elif suffix == "jsonl":
        for chunk in _line_chunks(path, progress):
            con.register("chunk", chunk)
            fields = ", ".join(f"wa_json_text(json_extract(doc, '$.{c}'))" for c in DISPATCH_COLUMNS[:5])
            con.execute(f"""
                INSERT INTO dispatch_stage
                SELECT line, raw,
                       CASE WHEN NOT utf8 THEN 'not valid UTF-8'
                            WHEN doc IS NULL THEN 'not valid JSON'
                            WHEN json_type(doc) <> 'OBJECT' THEN 'not a JSON object' END,
                       {fields},
                       CASE json_type(doc, '$.created_at')
                            WHEN 'VARCHAR' THEN json_extract_string(doc, '$.created_at')
                            WHEN 'NULL' THEN NULL
                            ELSE CAST(json_extract(doc, '$.created_at') AS VARCHAR) END
                FROM (SELECT line, raw, utf8, {_JSON_LINE} AS doc
                      FROM (SELECT line, utf8, regexp_replace(raw, '\\r$', '') AS raw FROM chunk)
                      WHERE NOT regexp_full_match(raw, '[ \t]*'))
            """)
            con.unregister("chunk")
    else:
        columns = _parquet_columns(con, path)
        missing = [c for c in DISPATCH_COLUMNS if c not in columns]
        if missing:
            raise DatasetError("missing column; the file must have columns " + ", ".join(DISPATCH_COLUMNS),
                               path=str(path), field=missing[0])
        values = ", ".join(f"nullif(CAST({quote_identifier(c)} AS VARCHAR), '')" for c in DISPATCH_COLUMNS)
        con.execute(f"""
            INSERT INTO dispatch_stage
            SELECT file_row_number + 1,
                   CAST(to_json(struct_pack({", ".join(quote_identifier(c) for c in columns)})) AS VARCHAR),
                   NULL, {values}
            FROM read_parquet({quote_literal(str(path))}, file_row_number = true)
        """)
    _finish_dispatches(con, path, staged)


def _stage_dispatch_csv(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """Stage ``path``'s rows; returns the table (or subquery) holding them, with ``dispatch_stage``'s columns."""
    header_line, header = _csv_header(path)
    missing = [c for c in DISPATCH_COLUMNS if c not in header]
    if missing:
        raise DatasetError("missing column; the header must name " + ", ".join(DISPATCH_COLUMNS),
                           path=str(path), field=missing[0])
    repeated = [c for c in DISPATCH_COLUMNS if header.count(c) > 1]
    if repeated:
        raise DatasetError("column named more than once in the header; keep one", path=str(path), field=repeated[0])
    # The header's names only pick the columns: the reader names them c0, c1, … so that no text
    # of the file becomes SQL (and a name DuckDB would refuse, such as an empty one, is no error).
    position: dict[str, int] = {c: header.index(c) for c in DISPATCH_COLUMNS}
    source = f"""read_csv({quote_literal(str(path))}, header = true, all_varchar = true, auto_detect = false,
                          skip = {header_line - 1},
                          columns = {{{", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header)))}}},
                          delim = ',', quote = '"', escape = '"',
                          store_rejects = true, rejects_table = 'wa_csv_rejects',
                          rejects_scan = 'wa_csv_scans')"""
    with _counting_lines(path) as counting:
        # rowid is the file's record order (DuckDB keeps insertion order); a window would run on one thread.
        try:
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE csv_rows AS
                SELECT {", ".join(f"nullif(c{position[c]}, '') AS {c}" for c in DISPATCH_COLUMNS[:5])},
                       c{position["created_at"]} AS created_at_text
                FROM {source}
            """)
        except duckdb.Error as exc:  # e.g. an LF file whose last line ends in CRLF
            raise DatasetError(f"DuckDB's CSV reader cannot read it ({str(exc).splitlines()[0]}); "
                               "check that every line ends the same way (LF or CRLF) and quotes are balanced",
                               path=str(path)) from exc
        lines, _ = counting.result()
    # DuckDB lists a row once per bad column: one record, one quarantine row.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE csv_rejects AS
        SELECT line, csv_line, error_type, error_message FROM wa_csv_rejects
        QUALIFY row_number() OVER (PARTITION BY line ORDER BY column_idx) = 1
    """)
    [(records,)] = con.execute("SELECT count(*) FROM csv_rows").fetchall()
    malformed = [line for (line,) in con.execute("SELECT line FROM csv_rejects ORDER BY line").fetchall()]
    blanks = _blank_lines(path, lines, header_line + records + len(malformed))
    if blanks is not None:
        # Every line after the header is a record, a malformed row (DuckDB names its line) or one
        # of a few blank lines: record n (from 0) is line header + n + 1 + the lines of the other
        # two kinds before it. The raw text is read back only for the rows that end up
        # quarantined (_finish_dispatches).
        skipped = sorted(line - header_line for line in (*blanks, *malformed) if line > header_line)
        con.execute(_STAGE_MALFORMED_CSV_ROWS)
        con.execute("DROP TABLE IF EXISTS wa_csv_rejects; DROP TABLE IF EXISTS wa_csv_scans; DROP TABLE csv_rejects")
        numbered = _with_lines_skipped_before(con, skipped, "(SELECT rowid AS rid, * FROM csv_rows)")
        return f"""(SELECT {header_line} + rid + 1 + skipped_before AS line,
                           NULL::VARCHAR AS raw, NULL::VARCHAR AS parse_error, lead_id, conversion_id,
                           advertiser_id, external_id, webhook_id, created_at_text
                    FROM {numbered}
                    UNION ALL SELECT * FROM dispatch_stage)"""
    # Otherwise the file's own lines give each parsed record its line number and raw text:
    # the records are the non-blank lines after the header that DuckDB did not reject, in
    # order. A quoted field spanning lines breaks that count; then records are numbered
    # from the header instead (Q5).
    con.execute("CREATE OR REPLACE TEMP TABLE csv_lines (line BIGINT, raw VARCHAR)")
    for chunk in iter_line_chunks(path):
        con.register("chunk", chunk)
        con.execute(f"""
            INSERT INTO csv_lines
            SELECT line, regexp_replace(raw, '\\r$', '') FROM chunk
            WHERE line > {header_line} AND trim(regexp_replace(raw, '\\r$', ''), ' \t') <> ''
        """)
        con.unregister("chunk")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE csv_record_lines AS
        SELECT row_number() OVER (ORDER BY line) AS k, line, raw
        FROM csv_lines WHERE line NOT IN (SELECT line FROM csv_rejects)
    """)
    exact = con.execute(
        "SELECT (SELECT count(*) FROM csv_record_lines) = (SELECT count(*) FROM csv_rows)").fetchone()
    if exact is not None and exact[0]:
        con.execute("""
            INSERT INTO dispatch_stage
            SELECT l.line, l.raw, NULL, r.lead_id, r.conversion_id, r.advertiser_id, r.external_id,
                   r.webhook_id, r.created_at_text
            FROM (SELECT rowid + 1 AS k, * FROM csv_rows) r JOIN csv_record_lines l USING (k)
        """)
    else:
        joined = " || ',' || ".join(f"coalesce({c}, '')" for c in (*DISPATCH_COLUMNS[:5], "created_at_text"))
        con.execute(f"""
            INSERT INTO dispatch_stage
            SELECT rowid + 1 + {header_line}, {joined}, NULL, lead_id, conversion_id, advertiser_id, external_id,
                   webhook_id, created_at_text
            FROM csv_rows
        """)
    con.execute(_STAGE_MALFORMED_CSV_ROWS)
    con.execute("""
        DROP TABLE IF EXISTS wa_csv_rejects; DROP TABLE IF EXISTS wa_csv_scans; DROP TABLE csv_rejects;
        DROP TABLE csv_rows; DROP TABLE csv_lines; DROP TABLE csv_record_lines;
    """)
    return "dispatch_stage"


#: The rows DuckDB's CSV reader rejected (``csv_rejects``), staged for the quarantine as it read them.
#: (Its text of a row opens with the line breaks before it: the blank lines', and a CRLF file's LF.)
_STAGE_MALFORMED_CSV_ROWS = """
    INSERT INTO dispatch_stage
    SELECT line, ltrim(csv_line, chr(13) || chr(10)),
           'malformed CSV row: ' || lower(error_type) || ' (' || error_message || ')',
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM csv_rejects
"""


def _csv_header(path: Path) -> tuple[int, list[str]]:
    """The header's line number (blank lines before it are skipped) and its column names."""
    with path.open("rb") as handle:
        for number, first in enumerate(handle, 1):
            try:
                text = first.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DatasetError("the header line is not UTF-8 text", path=str(path)) from exc
            if text.strip():
                return number, [name.strip().strip('"') for name in text.split(",")]
    raise DatasetError("empty file; the first line must be the header " + ",".join(DISPATCH_COLUMNS),
                       path=str(path))


def _finish_dispatches(con: duckdb.DuckDBPyConnection, path: Path, staged: str) -> None:
    source = quote_literal(path.name)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dispatch_checked AS
        WITH typed AS (
            SELECT *, wa_timestamp(created_at_text) AS created_at FROM {staged}
        )
        -- Versions of one webhook never overlap (S3): at most one is live at created_at.
        SELECT typed.line, typed.raw, typed.lead_id, typed.conversion_id, typed.advertiser_id,
            typed.external_id, typed.webhook_id, typed.created_at,
            CASE
                WHEN parse_error IS NOT NULL THEN parse_error
                WHEN lead_id IS NULL THEN 'missing lead_id'
                WHEN conversion_id IS NULL THEN 'missing conversion_id'
                WHEN typed.advertiser_id IS NULL THEN 'missing advertiser_id'
                WHEN typed.webhook_id IS NULL THEN 'missing webhook_id'
                WHEN created_at_text IS NULL OR created_at_text = '' THEN 'missing created_at'
                WHEN created_at IS NULL THEN 'bad created_at: not an ISO 8601 timestamp'
                WHEN typed.webhook_id NOT IN (SELECT webhook_id FROM webhook_versions)
                    THEN 'unknown webhook_id (not in webhooks.json)'
                WHEN v.webhook_id IS NULL THEN 'webhook has no version live at created_at'
            END AS final_reason
        FROM typed
        LEFT JOIN webhook_versions v
          ON v.webhook_id = typed.webhook_id
         AND (v.active_from_us IS NULL OR v.active_from_us <= epoch_us(typed.created_at))
         AND (v.active_to_us IS NULL OR epoch_us(typed.created_at) < v.active_to_us)
    """)
    con.execute(f"DROP TABLE IF EXISTS csv_rows; DROP TABLE IF EXISTS {_SKIPPED_LINES}; DROP TABLE dispatch_stage")
    # Conversion IDs are unique: the first usable row keeps one, later ones are quarantined. As
    # many distinct 64-bit hashes as rows proves there are no repeats, far cheaper than grouping
    # the text; a repeat (or, once in billions, a hash collision) takes the exact way.
    distinct = con.execute("""
        SELECT count(*) = count(DISTINCT hash(conversion_id)) FROM dispatch_checked WHERE final_reason IS NULL
    """).fetchone()
    if distinct is None or not distinct[0]:
        con.execute("""
            UPDATE dispatch_checked
            SET final_reason = 'duplicate conversion_id (first on line ' || CAST(r.first_line AS VARCHAR) || ')'
            FROM (SELECT conversion_id, min(line) AS first_line FROM dispatch_checked WHERE final_reason IS NULL
                  GROUP BY conversion_id HAVING count(*) > 1) r
            WHERE dispatch_checked.final_reason IS NULL AND dispatch_checked.conversion_id = r.conversion_id
              AND dispatch_checked.line > r.first_line
        """)
    _fill_raw_text(con, "dispatch_checked", path)
    con.execute(f"""
        INSERT INTO quarantine
        SELECT {source}, line, raw, final_reason FROM dispatch_checked WHERE final_reason IS NOT NULL;
        INSERT INTO dispatches
        SELECT line, lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at, line
        FROM dispatch_checked WHERE final_reason IS NULL;
        INSERT INTO load_report
        SELECT {source}, 'dispatches', count(*), count(*) FILTER (final_reason IS NULL),
               count(*) FILTER (final_reason IS NOT NULL)
        FROM dispatch_checked;
        DROP TABLE dispatch_checked;
    """)


def _fill_raw_text(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Give quarantined rows staged without their raw text (the fast CSV path) their line as written."""
    numbers = [line for (line,) in con.execute(
        f"SELECT line FROM {table} WHERE final_reason IS NOT NULL AND raw IS NULL").fetchall()]
    if not numbers:
        return
    con.register("picked", pick_lines(path, numbers))
    con.execute(f"""
        UPDATE {table} SET raw = regexp_replace(picked.raw, '\\r$', '')
        FROM picked WHERE picked.line = {table}.line
    """)
    con.unregister("picked")


# --------------------------------------------------------------------------- callbacks

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
             THEN 'headers_unreadable' END
    ], lambda n: n IS NOT NULL) AS capture_notes,
    refused
"""

#: The two parses (``try``: a line that is not JSON has no types), then the typed pieces the
#: fields above read; ``headers`` is JSON text, kept only when it is an object or a list.
#: ``{{source}}`` has the columns ``line, raw, parse_error, doc`` (the document's text).
_CALLBACK_PARTS = f"""
    SELECT *, wa_timestamp(CASE WHEN {_T["received_at"]} = 'VARCHAR' THEN {_S["received_at"]} END) AS received_at,
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

_CALLBACK_COLUMNS = ", ".join(_CALLBACK_TYPES)

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
           CASE WHEN utf8 THEN {_json_line_text("line = 1")} END
    FROM (SELECT line, utf8, regexp_replace(raw, '\\r$', '') AS raw FROM chunk)
    WHERE NOT regexp_full_match(raw, '[ \t]*')
"""



def _load_callbacks(con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressCallback | None,
                    keys_for: WebhookVersions | None) -> None:
    """Into ``callback_rows``, or with ``keys_for`` into ``callback_keys`` (their keys for those settings)."""
    target = _CallbackTarget(keys_for)
    con.execute(_CALLBACK_STAGE)
    suffix = path.suffix.lstrip(".")
    source = quote_literal(path.name)
    if suffix == "jsonl":
        if not _read_jsonl_in_parallel(con, path, source, progress, target):
            target.create(con)
            # Each chunk goes all the way to the final tables so memory stays one chunk deep.
            for chunk in _line_chunks(path, progress):
                con.register("chunk", chunk)
                con.execute(_STAGE_LINES)
                con.unregister("chunk")
                _flush_callbacks(con, source, target)
    elif suffix == "har":
        target.create(con)
        _stage_har(con, path)
        _flush_callbacks(con, source, target)
    else:
        columns = _parquet_columns(con, path)
        for required in ("received_at", "url"):
            if required not in columns:
                raise DatasetError("missing column; callbacks need at least received_at and url",
                                   path=str(path), field=required)
        types = dict(zip(columns, _parquet_types(con, path), strict=True))
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
    con.execute(f"""
        INSERT INTO load_report
        SELECT {source}, 'callbacks', loaded + quarantined, loaded, quarantined
        FROM (SELECT (SELECT count(*) FROM {target.table}) AS loaded,
                     (SELECT count(*) FROM quarantine WHERE source_file = {source}) AS quarantined)
    """)
    con.execute("DROP TABLE callback_stage")
    if keys_for is None:
        con.execute(_CALLBACKS_VIEW)
    else:
        con.execute("DROP TABLE callback_rows")
        con.execute(_KEYS_ONLY_CALLBACKS_VIEW)
        # What replay() checks its settings against.
        con.execute(f"COMMENT ON TABLE callback_keys IS {quote_literal(keys_fingerprint(keys_for))}")


@dataclass(frozen=True, slots=True)
class _CallbackTarget:
    """Where loaded callbacks go: ``callback_rows`` as read, or with ``keys_for`` only their keys."""

    keys_for: WebhookVersions | None

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


def _flush_callbacks(con: duckdb.DuckDBPyConnection, source: str, target: _CallbackTarget) -> None:
    """Judge ``callback_stage``: its bad rows to the quarantine, the others to ``target``."""
    con.execute(_JUDGE_STAGE)
    columns = _CALLBACK_COLUMNS.replace("request_id", "coalesce(request_id, CAST(seq AS VARCHAR)) AS request_id")
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
              f"{_json_line_text('false')} AS doc FROM {lines})")
    # The keys read the headers' JSON text as it is: casting it to JSON would parse every one.
    typed = ", ".join(name if name == "headers" and target.keys_for is not None else f"CAST({name} AS {kind}) AS {name}"
                      for name, kind in _CALLBACK_TYPES.items())
    report = None if progress is None else (lambda percent: progress(path.name, int(size * percent / 100), size))
    (preserve,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() or (True,)
    con.execute("SET preserve_insertion_order = true")
    unreadable: list[int] = []
    with _counting_lines(path, find=_DELIMITER) as counting:
        try:
            # Only a row to quarantine keeps its text (read again from the file below, as written).
            judged = f"SELECT {_CALLBACK_FIELDS} FROM ({_CALLBACK_PARTS.format(source=reader)})"
            rows = f"(SELECT {typed}, reason FROM ({judged}))"
            _execute_reporting(con, f"CREATE OR REPLACE TABLE {target.table} AS {target.select(rows, ('reason',))}",
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
    if len(unreadable) <= _MOST_SKIPPED_LINES_IN_SQL:
        con.execute(f"UPDATE {target.table} SET seq = rowid + 1 + {_skipped_lines_before('rowid', unreadable)}")
    else:
        numbered = _with_lines_skipped_before(con, unreadable, f"(SELECT rowid AS rid FROM {target.table})")
        con.execute(f"UPDATE {target.table} SET seq = n.rid + 1 + n.skipped_before FROM {numbered} n "
                    f"WHERE {target.table}.rowid = n.rid")
        con.execute(f"DROP TABLE {_SKIPPED_LINES}")
    con.execute(f"UPDATE {target.table} SET request_id = CAST(seq AS VARCHAR) "
                "WHERE request_id IS NULL AND reason IS NULL")
    rejected = [number for (number,) in con.execute(
        f"SELECT seq FROM {target.table} WHERE reason IS NOT NULL AND reason <> {_BLANK_LINE} ORDER BY seq"
    ).fetchall()]
    con.execute(f"DELETE FROM {target.table} WHERE reason IS NOT NULL")
    con.execute(f"ALTER TABLE {target.table} DROP COLUMN reason")
    if rejected or unreadable:
        con.register("chunk", pick_lines(path, rejected + unreadable))
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
#: Up to this many lines a fast read stepped over, the rows are numbered past them by a binary search
#: written as SQL (``_skipped_lines_before``: no join); past it, by an ASOF join with a table of them
#: (``_SKIPPED_LINES``), about 1 s more on 10M rows but the same for any number of lines.
_MOST_SKIPPED_LINES_IN_SQL = 4096
_SKIPPED_LINES = "wa_skipped_lines"


def _give_up_parallel_read(con: duckdb.DuckDBPyConnection, target: _CallbackTarget) -> bool:
    """Drop what the parallel JSONL read wrote, for the line reader to start afresh."""
    con.execute(f"DROP TABLE IF EXISTS {target.table}")
    con.execute(_CREATE_CALLBACKS)
    return False


@contextlib.contextmanager
def _counting_lines(path: Path, *, find: bytes = b"") -> Iterator[concurrent.futures.Future[tuple[int, bool]]]:
    """``path``'s line count and whether it holds the byte ``find``, found in a thread while the
    caller has DuckDB read the file: both are needed only after that, and DuckDB releases the GIL
    while it works."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-audit-count") as pool:
        yield pool.submit(count_lines_finding, path, find)


def _blank_lines(path: Path, lines: int, accounted: int) -> list[int] | None:
    """The blank lines that explain why a DuckDB reader accounted for fewer than all ``lines``
    (rows, plus a header), or None when blank lines do not explain it.

    A few blank lines (one at the end is common) are found and stepped over; with many,
    or with whitespace only DuckDB calls blank, rows and lines cannot be lined up.
    """
    if accounted == lines:
        return []
    blanks = blank_line_numbers(path)
    return blanks if blanks is not None and accounted == lines - len(blanks) else None


def _skipped_lines_before(row: str, skipped: list[int]) -> str:
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


def _with_lines_skipped_before(con: duckdb.DuckDBPyConnection, skipped: list[int], rows: str) -> str:
    """SQL: ``rows`` (a relation whose ``rid`` is a row's place among the rows read, from 0) with
    ``skipped_before``, how many of ``skipped`` come before the row (as :func:`_skipped_lines_before`
    counts them); the row's line is ``rid + 1 + skipped_before``.

    Past ``_MOST_SKIPPED_LINES_IN_SQL`` lines an ASOF join finds, for every row at once, the last
    skipped line with at most ``rid`` rows before it, in ``_SKIPPED_LINES``, which the caller drops
    once the statement has run.
    """
    if len(skipped) <= _MOST_SKIPPED_LINES_IN_SQL:
        return f"(SELECT *, {_skipped_lines_before('rid', skipped)} AS skipped_before FROM {rows})"
    con.register("wa_skipped_line_numbers", pa.table({"line": pa.array(skipped, pa.int64())}))
    # Consecutive skipped lines have as many rows before them: the last of them counts them all.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_SKIPPED_LINES} AS
        SELECT line - k AS rows_before, max(k) AS skipped
        FROM (SELECT line, row_number() OVER (ORDER BY line) AS k FROM wa_skipped_line_numbers)
        GROUP BY line - k
    """)
    con.unregister("wa_skipped_line_numbers")
    return (f"(SELECT r.*, coalesce(s.skipped, 0) AS skipped_before FROM {rows} r "
            f"ASOF LEFT JOIN {_SKIPPED_LINES} s ON r.rid >= s.rows_before)")


def _execute_reporting(con: duckdb.DuckDBPyConnection, sql: str, report: Callable[[float], None] | None) -> None:
    """Run ``sql``; while it runs, ``report(percent)`` from DuckDB's own progress tracking.

    The statement runs in a worker thread and this one polls ``query_progress``, which
    DuckDB allows from another thread. Where DuckDB will not track progress (Jupyter
    without ipywidgets) the statement just runs.
    """
    if report is None:
        con.execute(sql)
        return
    try:
        con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false; "
                    "SET progress_bar_time = 0")
    except duckdb.Error:
        con.execute(sql)
        return
    failures: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as exc:  # handed to the caller's thread below
            failures.append(exc)

    worker = threading.Thread(target=work, name="webhook-audit-load", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.25)
            percent = con.query_progress()
            if percent >= 0:
                report(min(percent, 100.0))
    except KeyboardInterrupt:
        con.interrupt()
        worker.join()
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("SET enable_progress_bar = false")
    if failures:
        raise failures[0]


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


# --------------------------------------------------------------------------- helpers


def _line_chunks(path: Path, progress: ProgressCallback | None) -> Iterator[pa.Table]:
    return iter_line_chunks(path, progress=_bytes_progress(path, progress))


def _bytes_progress(path: Path, progress: ProgressCallback | None) -> Callable[[int], None] | None:
    """Turn "so many more bytes read" into ``progress(file name, bytes done, file size)``."""
    if progress is None:
        return None
    total = path.stat().st_size
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        progress(path.name, done, total)

    progress(path.name, 0, total)
    return advance


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))})").fetchall()
    except duckdb.Error as exc:
        raise DatasetError(f"not a readable Parquet file: {str(exc).splitlines()[0]}", path=str(path)) from exc
    return [row[0] for row in rows]


def _parquet_types(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))})").fetchall()
    return [row[1] for row in rows]

