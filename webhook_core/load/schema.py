"""The tables a load writes (docs/semantics.md, "Inputs"): created empty, then filled by
``dispatches.py`` and ``callbacks.py``; ``webhook_versions`` is written from the settings."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from webhook_core.quoting import quote_literal
from webhook_core.rules.settings import WebhookVersions
from webhook_core.timeutil import to_us

__all__ = ["CALLBACKS_VIEW", "CALLBACK_TYPES", "CREATE_CALLBACKS", "KEYS_ONLY_CALLBACKS_VIEW", "create_tables",
           "write_webhook_versions"]

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
CALLBACK_TYPES = {
    "seq": "BIGINT", "request_id": "VARCHAR", "received_at": "TIMESTAMPTZ", "method": "VARCHAR", "url": "VARCHAR",
    "headers": "JSON", "body": "VARCHAR", "recorded_status": "INTEGER",
    "recorded_body": "VARCHAR", "capture_notes": "VARCHAR[]", "refused": "BOOLEAN",
}
CREATE_CALLBACKS = ("CREATE OR REPLACE TABLE callback_rows ("
                     + ", ".join(f"{name} {kind}" for name, kind in CALLBACK_TYPES.items()) + ")")
#: What everything but the replay reads: the headers as a list of ``{name, value}``, in captured order.
CALLBACKS_VIEW = ("CREATE OR REPLACE VIEW callbacks AS SELECT "
                   + ", ".join("wa_headers(headers) AS headers" if name == "headers" else name
                               for name in CALLBACK_TYPES) + " FROM callback_rows")


#: After a keys-only load: reading ``callbacks`` (the analysis functions do) says why it holds nothing.
KEYS_ONLY_CALLBACKS_VIEW = (
    "CREATE OR REPLACE VIEW callbacks AS SELECT "
    + ", ".join(f"CAST(NULL AS {'STRUCT(name VARCHAR, value VARCHAR)[]' if name == 'headers' else kind}) AS {name}"
                for name, kind in CALLBACK_TYPES.items())
    + " FROM (SELECT 1) WHERE error("
    + quote_literal("the callbacks were loaded with keep_requests=False, as their keys for the replay only: "
                    "load the dataset again with keep_requests=True to read the requests")
    + ") IS NULL")


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS callbacks")
    con.execute("DROP TABLE IF EXISTS callback_keys")
    con.execute(CREATE_CALLBACKS)
    con.execute("""
        CREATE OR REPLACE TABLE quarantine (source_file VARCHAR, line BIGINT, raw VARCHAR, reason VARCHAR);
        -- The identifiers of the quarantined dispatches that had any: their callbacks are flagged, not blamed.
        CREATE OR REPLACE TABLE dispatch_quarantine (
            source_file VARCHAR, line BIGINT, lead_id VARCHAR, conversion_id VARCHAR, advertiser_id VARCHAR,
            external_id VARCHAR, webhook_id VARCHAR, reason VARCHAR);
        CREATE OR REPLACE TABLE load_report (
            source_file VARCHAR, table_name VARCHAR, read BIGINT, loaded BIGINT, quarantined BIGINT,
            zone_less BIGINT);
        CREATE OR REPLACE TABLE dispatches (
            "row" BIGINT, lead_id VARCHAR, conversion_id VARCHAR, advertiser_id VARCHAR,
            external_id VARCHAR, webhook_id VARCHAR, created_at TIMESTAMPTZ, source_line BIGINT);
    """)
