"""Write an audit database: a dataset loaded and replayed into a DuckDB file, ``audit_meta`` last
(docs/audit-database.md). ``webhook-audit replay --database`` and ``webhook-audit report`` share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb

from webhook_core.audit.audit import Loader
from webhook_core.audit.replay import ReplayResult, replay
from webhook_core.audit.schema import AUDIT_META, write_meta
from webhook_core.load.dataset import Dataset, load_dataset

__all__ = ["write_audit_database"]


def write_audit_database(con: duckdb.DuckDBPyConnection, dataset: Path, *, load: Loader | None = None,
                         timeouts: Mapping[str | None, float] | None = None,
                         observation_end: datetime | None = None,
                         max_quarantined: float | None = None,
                         timestamp_format: str | None = None) -> tuple[Dataset, ReplayResult]:
    """Load ``dataset`` into ``con`` (a connection on the database file), replay it, then write ``audit_meta``.

    ``max_quarantined`` and ``timestamp_format`` apply to the default loader (``load_dataset``'s)."""
    # A database's facts describe its tables only once this run has written them all: a run that
    # fails midway must not leave an earlier run's audit_meta vouching for half-replaced tables.
    con.execute(f"DROP TABLE IF EXISTS {AUDIT_META}")
    loaded = load(con, dataset) if load is not None else load_dataset(
        con, dataset, required=("dispatches", "callbacks"), max_quarantined=max_quarantined,
        timestamp_format=timestamp_format)
    result = replay(con, loaded.webhooks, timeouts=dict(timeouts or {}), observation_end=observation_end)
    write_meta(con, dataset=str(dataset.resolve()),
               webhooks_json=(dataset / "webhooks.json").read_text(encoding="utf-8"),
               observation_end=result.observation_end, timeouts=dict(timeouts or {}))
    return loaded, result

