"""The audit database's contract: the names of the tables and views the replay writes and the analyses
read, and ``audit_meta``, the run's facts and the schema version (docs/audit-database.md).

A change to a table or view the analyses read, or to what ``audit_meta`` holds, raises
:data:`SCHEMA_VERSION`: a database of another version is refused rather than read wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import duckdb

__all__ = [
    "AUDIT_META", "CALLBACKS", "CALLBACK_OUTCOMES", "CALLBACK_OUTCOME_ROWS", "CALLBACK_ROWS", "DISPATCHES",
    "DISPATCH_QUARANTINE",
    "LEAD_OUTCOMES", "LEAD_OUTCOME_ROWS", "LOAD_REPORT", "QUARANTINE", "REPLAY_VERSIONS", "SCHEMA_VERSION",
    "STORED", "WEBHOOK_VERSIONS", "read_meta", "write_meta",
]

#: 2: ``lead_outcomes.waits``, so that no analysis reads the replay's temporary ``replay_leads``.
#: 3: ``dispatch_quarantine.source_file``: a dataset's dispatches may be a folder of files.
SCHEMA_VERSION = 3

AUDIT_META = "audit_meta"
# Loaded (webhook_core/load/, which spells these names in its own SQL; tests/test_audit_database.py
# checks that a database holds exactly the names of STORED).
WEBHOOK_VERSIONS = "webhook_versions"
DISPATCHES = "dispatches"
CALLBACK_ROWS = "callback_rows"
CALLBACKS = "callbacks"
QUARANTINE = "quarantine"
DISPATCH_QUARANTINE = "dispatch_quarantine"
LOAD_REPORT = "load_report"
# Replayed (webhook_core/audit/replay.py).
REPLAY_VERSIONS = "replay_versions"
CALLBACK_OUTCOME_ROWS = "callback_outcome_rows"
CALLBACK_OUTCOMES = "callback_outcomes"
LEAD_OUTCOME_ROWS = "lead_outcome_rows"
LEAD_OUTCOMES = "lead_outcomes"

#: Every table and view an audit database holds, as ``name: "table" | "view"``.
STORED = {
    AUDIT_META: "table", WEBHOOK_VERSIONS: "table", DISPATCHES: "table", CALLBACK_ROWS: "table",
    CALLBACKS: "view", QUARANTINE: "table", DISPATCH_QUARANTINE: "table", LOAD_REPORT: "table",
    REPLAY_VERSIONS: "table",
    CALLBACK_OUTCOME_ROWS: "table", CALLBACK_OUTCOMES: "view", LEAD_OUTCOME_ROWS: "table", LEAD_OUTCOMES: "view",
}


def write_meta(con: duckdb.DuckDBPyConnection, *, dataset: str, webhooks_json: str,
               observation_end: datetime | None, timeouts: Mapping[str | None, float]) -> None:
    """Replace ``audit_meta`` with this run's facts; values are text (``observation_end`` ISO 8601, UTC)."""
    try:
        package_version = version("webhook-audit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        package_version = "unknown"
    facts = {
        "schema_version": str(SCHEMA_VERSION),
        "dataset": dataset,
        "webhooks_json": webhooks_json,
        "observation_end": "" if observation_end is None else _utc(observation_end).isoformat(),
        # A what-if replay's timeouts: its outcomes are not those of webhooks.json as written.
        "timeouts": json.dumps({"" if k is None else k: v for k, v in timeouts.items()}, sort_keys=True),
        "created_at": datetime.now(UTC).isoformat(),
        "package_version": package_version,
    }
    con.execute(f"CREATE OR REPLACE TABLE {AUDIT_META} (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.executemany(f"INSERT INTO {AUDIT_META} VALUES (?, ?)", list(facts.items()))


def _utc(moment: datetime) -> datetime:
    # A naive instant means UTC (docs/semantics.md), not the machine's zone that astimezone would assume.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
    """``audit_meta`` as a dict, or None when the database has no such table."""
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
                        [AUDIT_META]).fetchone()
    if found is None or found[0] == 0:
        return None
    return {key: value for key, value in con.execute(f"SELECT key, value FROM {AUDIT_META}").fetchall()}
