"""Loading ``dispatches.{csv,jsonl,parquet}`` (or the files of ``dispatches/``) into ``dispatches``: the
waiting webhooks.

Each format is staged into ``dispatch_stage`` (line, raw text, fields as text), then one
statement types, checks and quarantines the rows of every format alike (docs/semantics.md, Q3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from webhook_core.exceptions import DatasetError
from webhook_core.load import linereader
from webhook_core.load.formats import JSON_LINE, parquet_columns
from webhook_core.load.inputs import UNUSABLE, InputFile, check_lines, stage_unusable, unusable_reason
from webhook_core.load.numbering import (
    SKIPPED_LINES,
    blank_lines,
    counting_lines,
    fill_raw_text,
    with_lines_skipped_before,
)
from webhook_core.load.progress import ProgressCallback, line_chunks
from webhook_core.load.timestamps import ZONE_LESS_SQL
from webhook_core.quoting import quote_identifier, quote_literal

__all__ = ["DISPATCH_COLUMNS", "DISPATCH_READERS", "load_dispatches"]

DISPATCH_COLUMNS = ("lead_id", "conversion_id", "advertiser_id", "external_id", "webhook_id", "created_at")


_DISPATCH_STAGE = """
    CREATE OR REPLACE TEMP TABLE dispatch_stage (
        line BIGINT, raw VARCHAR, parse_error VARCHAR,
        lead_id VARCHAR, conversion_id VARCHAR, advertiser_id VARCHAR,
        external_id VARCHAR, webhook_id VARCHAR, created_at_text VARCHAR)
"""


def load_dispatches(con: duckdb.DuckDBPyConnection, files: Sequence[InputFile],
                    progress: ProgressCallback | None) -> None:
    """Each file's rows checked into ``dispatch_checked`` (``row``: its rank and line, ``inputs.py``), then the
    conversion IDs across all of them (Q3) and the tables written. A file in a folder that cannot be used
    at all is quarantined whole (``inputs.stage_unusable``) instead of stopping the load."""
    con.execute(_DISPATCH_CHECKED)
    for file in files:
        source = quote_literal(file.name)
        con.execute(_DISPATCH_STAGE)
        try:
            staged = DISPATCH_READERS[file.path.suffix.lstrip(".")](con, file.path, progress)
            _check_dispatches(con, file, staged)
        except (DatasetError, OSError, duckdb.Error) as error:
            if not file.in_folder:
                raise
            con.execute(_DROP_STAGING)
            stage_unusable(con, file)
            con.execute(f"""
                DELETE FROM dispatch_checked WHERE source_file = {source};
                INSERT INTO dispatch_checked (source_file, "row", line, raw, zone_less, final_reason)
                SELECT {source}, {file.offset} + line, line, raw, false, {quote_literal(unusable_reason(file, error))}
                FROM {UNUSABLE};
                DROP TABLE {UNUSABLE};
            """)
        check_lines(con, file, f"SELECT max(line) FROM dispatch_checked WHERE source_file = {source}")
    _finish_dispatches(con, files)


#: Every file's rows, typed and checked: ``final_reason`` is NULL for a row to load.
_DISPATCH_CHECKED = """
    CREATE OR REPLACE TEMP TABLE dispatch_checked (
        source_file VARCHAR, "row" BIGINT, line BIGINT, raw VARCHAR, lead_id VARCHAR, conversion_id VARCHAR,
        advertiser_id VARCHAR, external_id VARCHAR, webhook_id VARCHAR, created_at TIMESTAMPTZ, zone_less BOOLEAN,
        final_reason VARCHAR)
"""

#: What a reader that failed part-way may leave behind.
_DROP_STAGING = f"""
    DROP TABLE IF EXISTS dispatch_stage; DROP TABLE IF EXISTS csv_rows; DROP TABLE IF EXISTS csv_lines;
    DROP TABLE IF EXISTS csv_record_lines; DROP TABLE IF EXISTS csv_rejects; DROP TABLE IF EXISTS wa_csv_rejects;
    DROP TABLE IF EXISTS wa_csv_scans; DROP TABLE IF EXISTS {SKIPPED_LINES};
"""


def _stage_jsonl(con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressCallback | None) -> str:
    for chunk in line_chunks(path, progress):
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
            FROM (SELECT line, raw, utf8, {JSON_LINE} AS doc
                  FROM (SELECT line, utf8, regexp_replace(raw, '\\r$', '') AS raw FROM chunk)
                  WHERE NOT regexp_full_match(raw, '[ \t]*'))
        """)
        con.unregister("chunk")
    return "dispatch_stage"


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressCallback | None) -> str:
    columns = parquet_columns(con, path)
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
    return "dispatch_stage"


def _stage_csv(con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressCallback | None) -> str:
    """Stage ``path``'s rows; returns the table (or subquery) holding them, with ``dispatch_stage``'s columns.
    (DuckDB reads the file: no progress by bytes.)"""
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
    with counting_lines(path) as counting:
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
    blanks = blank_lines(path, lines, header_line + records + len(malformed))
    if blanks is not None:
        # Every line after the header is a record, a malformed row (DuckDB names its line) or one
        # of a few blank lines: record n (from 0) is line header + n + 1 + the lines of the other
        # two kinds before it. The raw text is read back only for the rows that end up
        # quarantined (_finish_dispatches).
        skipped = sorted(line - header_line for line in (*blanks, *malformed) if line > header_line)
        con.execute(_STAGE_MALFORMED_CSV_ROWS)
        con.execute("DROP TABLE IF EXISTS wa_csv_rejects; DROP TABLE IF EXISTS wa_csv_scans; DROP TABLE csv_rejects")
        numbered = with_lines_skipped_before(con, skipped, "(SELECT rowid AS rid, * FROM csv_rows)")
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
    for chunk in linereader.iter_line_chunks(path):
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


#: Each dispatch format by its file suffix: stages the file's rows into ``dispatch_stage`` and returns
#: the relation holding them (``dispatch_stage``, or a subquery over it). ``load_dataset`` accepts these.
DISPATCH_READERS: dict[str, Callable[[duckdb.DuckDBPyConnection, Path, ProgressCallback | None], str]] = {
    "csv": _stage_csv, "jsonl": _stage_jsonl, "parquet": _stage_parquet}


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


def _check_dispatches(con: duckdb.DuckDBPyConnection, file: InputFile, staged: str) -> None:
    """``staged`` (one file's rows) typed and checked into ``dispatch_checked``, all but the duplicates (Q3)."""
    con.execute(f"""
        INSERT INTO dispatch_checked
        WITH typed AS (
            SELECT *, wa_input_timestamp(created_at_text) AS created_at FROM {staged}
        )
        -- Versions of one webhook never overlap (S3): at most one is live at created_at.
        SELECT {quote_literal(file.name)}, {file.offset} + typed.line, typed.line, typed.raw, typed.lead_id,
            typed.conversion_id, typed.advertiser_id, typed.external_id, typed.webhook_id, typed.created_at,
            typed.created_at IS NOT NULL AND {ZONE_LESS_SQL.format("created_at_text")} AS zone_less,
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
    con.execute(f"DROP TABLE IF EXISTS csv_rows; DROP TABLE IF EXISTS {SKIPPED_LINES}; DROP TABLE dispatch_stage")


def _finish_dispatches(con: duckdb.DuckDBPyConnection, files: Sequence[InputFile]) -> None:
    # Conversion IDs are unique: the first usable row (by row: file, then line) keeps one, later ones are
    # quarantined. As many distinct 64-bit hashes as rows proves there are no repeats, far cheaper than
    # grouping the text; a repeat (or, once in billions, a hash collision) takes the exact way.
    distinct = con.execute("""
        SELECT count(*) = count(DISTINCT hash(conversion_id)) FROM dispatch_checked WHERE final_reason IS NULL
    """).fetchone()
    if distinct is None or not distinct[0]:
        # The first row's file is named only when it is another file.
        con.execute("""
            UPDATE dispatch_checked
            SET final_reason = 'duplicate conversion_id (first on '
                || CASE WHEN r.first_file = dispatch_checked.source_file THEN '' ELSE r.first_file || ' ' END
                || 'line ' || CAST(r.first_line AS VARCHAR) || ')'
            FROM (SELECT conversion_id, min("row") AS first_row, arg_min(source_file, "row") AS first_file,
                         arg_min(line, "row") AS first_line
                  FROM dispatch_checked WHERE final_reason IS NULL
                  GROUP BY conversion_id HAVING count(*) > 1) r
            WHERE dispatch_checked.final_reason IS NULL AND dispatch_checked.conversion_id = r.conversion_id
              AND dispatch_checked."row" > r.first_row
        """)
    for file in files:
        fill_raw_text(con, "dispatch_checked", file.path, f"source_file = {quote_literal(file.name)}")
    con.execute("""
        INSERT INTO quarantine
        SELECT source_file, line, raw, final_reason FROM dispatch_checked WHERE final_reason IS NOT NULL;
        INSERT INTO dispatch_quarantine
        SELECT source_file, line, lead_id, conversion_id, advertiser_id, external_id, webhook_id, final_reason
        FROM dispatch_checked
        WHERE final_reason IS NOT NULL
          AND (lead_id IS NOT NULL OR conversion_id IS NOT NULL OR external_id IS NOT NULL);
        INSERT INTO dispatches
        SELECT "row", lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at, line
        FROM dispatch_checked WHERE final_reason IS NULL;
    """)
    if files:
        # One row per file, in name order, a file without rows included.
        names = ", ".join(f"({file.rank}, {quote_literal(file.name)})" for file in files)
        con.execute(f"""
            INSERT INTO load_report
            SELECT f.name, 'dispatches', coalesce(c.read, 0), coalesce(c.loaded, 0), coalesce(c.quarantined, 0),
                   coalesce(c.zone_less, 0)
            FROM (VALUES {names}) f(rank, name)
            LEFT JOIN (SELECT source_file, count(*) AS read, count(*) FILTER (final_reason IS NULL) AS loaded,
                              count(*) FILTER (final_reason IS NOT NULL) AS quarantined,
                              count(*) FILTER (final_reason IS NULL AND zone_less) AS zone_less
                       FROM dispatch_checked GROUP BY source_file) c ON c.source_file = f.name
            ORDER BY f.rank
        """)
    con.execute("DROP TABLE dispatch_checked")
