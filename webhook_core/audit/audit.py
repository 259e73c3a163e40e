"""One way in for every analysis: a dataset folder (loaded and replayed in memory) or an audit database
written by ``webhook-audit replay --database`` (opened read-only). The tables the analyses read are the
same either way (docs/audit-database.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import duckdb

from webhook_core.audit.filters import Filters
from webhook_core.audit.replay import replay
from webhook_core.audit.schema import SCHEMA_VERSION, read_meta
from webhook_core.exceptions import AuditDatabaseError, AuditDatabaseLockedError, MissingFileError
from webhook_core.load.dataset import Dataset, configure, connect, load_dataset
from webhook_core.load.gate import check_quarantine, load_warnings
from webhook_core.rules.settings import WebhookVersions, parse_webhooks
from webhook_core.timeutil import to_us

__all__ = ["NOTHING_THERE", "Audit", "Loader", "open_audit"]

#: Loads a dataset folder into a connection (the CLI's shows progress and prints the load report).
Loader = Callable[[duckdb.DuckDBPyConnection, Path], Dataset]

_WRITE_ONE = "write one with: webhook-audit replay DATASET --database FILE"
#: What a path that names nothing gets, where a dataset folder or an audit database will do.
NOTHING_THERE = ("no such folder or file; give a dataset folder (webhooks.json, dispatches.*, callbacks.*) "
                 f"or an audit database ({_WRITE_ONE.removeprefix('write one with: ')})")


@dataclass(frozen=True, slots=True)
class Audit:
    """The replay's tables on ``con``, the webhook settings they were judged by, and where they came from.

    Every analysis function takes one. The tables are named in ``webhook_core.audit.schema``.
    """

    con: duckdb.DuckDBPyConnection
    webhooks: WebhookVersions
    observation_end: datetime | None
    source: Path
    read_only: bool
    #: What the load did not stop for but an analyst should know (``webhook_core.load.gate.load_warnings``).
    warnings: tuple[str, ...] = ()
    #: What the analyses are narrowed to (``webhook_core.audit.filters.apply_filters``); empty: everything.
    filters: Filters = field(default_factory=Filters)
    #: What an analysis computed once for this audit and shares between its reports, by the analysis's
    #: own key (``pairing``: its temporary table of request values): an audit's tables never change.
    cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Audit:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_audit(path: str | Path, *, observation_end: datetime | None = None, load: Loader | None = None,
               memory_limit: str | None = None, temp_directory: str | None = None,
               max_quarantined: float | None = None) -> Audit:
    """A dataset folder, loaded and replayed in memory, or an audit database file, opened read-only.

    ``observation_end`` applies to a dataset folder; a database was replayed as of its own, and another
    one is an :class:`AuditDatabaseError` (replaying again is what would honour it). ``memory_limit``
    (e.g. ``"3GiB"``) bounds DuckDB's buffer pool; beyond it DuckDB spills to ``temp_directory``.
    An input file whose quarantined share exceeds ``max_quarantined`` is a :class:`DatasetError`, from a
    folder or a database alike (``webhook_core.load.gate``).
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(NOTHING_THERE, path=str(path))
    if not path.is_file():  # a folder: load_dataset names what it lacks
        con = connect(memory_limit=memory_limit, temp_directory=temp_directory)
        loaded = load(con, path) if load is not None else _load(con, path, max_quarantined)
        result = replay(con, loaded.webhooks, observation_end=observation_end)
        return Audit(con, loaded.webhooks, result.observation_end, path, read_only=False,
                     warnings=loaded.warnings)
    con = _connect_read_only(path, memory_limit=memory_limit, temp_directory=temp_directory)
    try:
        audit = _from_database(con, path)
        if observation_end is not None and (audit.observation_end is None
                                            or to_us(audit.observation_end) != to_us(observation_end)):
            stored = audit.observation_end.isoformat() if audit.observation_end else "none"
            raise AuditDatabaseError(f"replayed as of {stored}, not --observation-end {observation_end.isoformat()}; "
                                     "replay the dataset again with that --observation-end and --database",
                                     path=str(path))
        if max_quarantined is not None:
            check_quarantine(con, (read_meta(con) or {}).get("dataset", ""), max_quarantined)
        audit = replace(audit, warnings=load_warnings(con))
    except BaseException:
        con.close()
        raise
    return audit


def _load(con: duckdb.DuckDBPyConnection, folder: Path, max_quarantined: float | None = None) -> Dataset:
    return load_dataset(con, folder, required=("dispatches", "callbacks"), max_quarantined=max_quarantined)


def _connect_read_only(path: Path, *, memory_limit: str | None,
                       temp_directory: str | None) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        text = str(exc)
        if "Could not set lock" in text or "Conflicting lock" in text:
            raise AuditDatabaseLockedError("the audit database is open for writing by another process; "
                                           "wait for it to finish", path=str(path)) from exc
        if "not a valid DuckDB database" in text:
            raise AuditDatabaseError("not a dataset folder nor an audit database (not a DuckDB file); give the "
                                     f"dataset folder, or {_WRITE_ONE}", path=str(path)) from exc
        raise
    # The macros are in the file already (and a read-only database cannot take them again).
    configure(con, memory_limit=memory_limit, temp_directory=temp_directory)
    return con


def _from_database(con: duckdb.DuckDBPyConnection, path: Path) -> Audit:
    meta = read_meta(con)
    if meta is None:
        raise AuditDatabaseError(f"not an audit database (no audit_meta table); {_WRITE_ONE}", path=str(path))
    found = meta.get("schema_version", "")
    if found != str(SCHEMA_VERSION):
        raise AuditDatabaseError(f"audit database schema version {found or '(none)'}, this webhook-audit reads "
                                 f"version {SCHEMA_VERSION}; replay the dataset again with --database",
                                 path=str(path))
    webhooks = parse_webhooks(json.loads(meta["webhooks_json"]), source=f"{path}: audit_meta.webhooks_json")
    # The settings the outcomes were judged by: a what-if replay's timeouts, not webhooks.json's.
    timeouts: dict[str | None, float] = {key or None: value for key, value in json.loads(meta["timeouts"]).items()}
    if timeouts:
        webhooks = webhooks.with_timeouts(timeouts)
    end = datetime.fromisoformat(meta["observation_end"]) if meta["observation_end"] else None
    return Audit(con, webhooks, end, path, read_only=True)
