"""How the input files' timestamps are read: ISO 8601, and optionally one more format of the user's.

Exports from spreadsheets and BI tools write instants such as ``02/11/2026 02:12:17``; without a way
to read them every dispatch would be quarantined. ``--timestamp-format`` (strptime directives, e.g.
``%d/%m/%Y %H:%M:%S``) reads such text; ISO 8601 text is still read as ISO 8601, so a file mixing the
two loads whole. A timestamp without a zone (no ``Z``, no ``±hh:mm``) is read as UTC
(docs/semantics.md), and the load counts them, so the CLI can say so.

The loaders call the per-connection macro ``wa_input_timestamp(text)``; :func:`install_timestamp_reader`
defines it for the load's format.
"""

from __future__ import annotations

import duckdb

from webhook_core.quoting import quote_literal

__all__ = ["ZONE_LESS_SQL", "check_timestamp_format", "install_timestamp_reader", "timestamp_hint"]

#: SQL, true when the timestamp text ``{}`` names no zone: it is read as UTC.
ZONE_LESS_SQL = "NOT regexp_matches(rtrim({}), '([Zz]|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$')"


def install_timestamp_reader(con: duckdb.DuckDBPyConnection, timestamp_format: str | None) -> None:
    """Define ``wa_input_timestamp`` on ``con``: ISO 8601 (``wa_timestamp``), else ``timestamp_format``."""
    if timestamp_format is None:
        con.execute("CREATE OR REPLACE TEMP MACRO wa_input_timestamp(t) AS wa_timestamp(t)")
        return
    check_timestamp_format(timestamp_format, con)
    # The format reaches SQL as a quoted literal, never as SQL text.
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO wa_input_timestamp(t) AS
        coalesce(wa_timestamp(t), CAST(try_strptime(t, {quote_literal(timestamp_format)}) AS TIMESTAMPTZ))
    """)


def check_timestamp_format(timestamp_format: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """A :class:`ValueError` saying what is wrong when DuckDB's strptime does not know the format."""
    if "%" not in timestamp_format:
        raise ValueError(f"{timestamp_format!r} has no strptime directive; write it like %d/%m/%Y %H:%M:%S")
    probe = con or duckdb.connect()
    try:
        probe.execute("SELECT try_strptime('', ?)", [timestamp_format])
    except duckdb.InvalidInputException as exc:
        raise ValueError(f"{timestamp_format!r} is not a strptime format DuckDB reads; "
                         "write it like %d/%m/%Y %H:%M:%S") from exc
    finally:
        if con is None:
            probe.close()


def timestamp_hint(reason: str | None) -> str:
    """What to add to a message whose rows were quarantined for a timestamp ISO 8601 does not read."""
    if reason is None or "not an ISO 8601 timestamp" not in reason:
        return ""
    return ("; or read timestamps written another way (e.g. 02/11/2026 02:12:17) with "
            "--timestamp-format '%d/%m/%Y %H:%M:%S'")
