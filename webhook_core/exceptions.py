"""Errors raised by webhook_core.

Every error a user can cause names the file, entry or field at fault and says
how to fix it; the CLI prints ``str(error)`` as one line and exits non-zero.

Hierarchy::

    WebhookAuditError
    ├── ConfigError            webhooks.json (or a settings object) is invalid
    │   └── LocationError      a location string such as "json.data.ref" is malformed
    ├── DatasetError           a dataset folder or one of its files is unusable
    │   ├── MissingFileError   a required file is absent
    │   └── AuditDatabaseError not an audit database, or one of another schema version
    │       └── AuditDatabaseLockedError  another process has the audit database open for writing
    ├── ReplayError            replay or filter options do not fit the data (e.g. --timeout, --webhook
    │                          naming an unknown webhook)
    ├── ReportError            a report notebook failed (names the notebook and cell)
    ├── CaptureLogError        the live capture log cannot be opened, read back or written
    ├── ReceiverError          serve cannot start with these options, or its log disagrees with the dataset
    ├── ReplayHttpError        replay-http options that cannot work (a remote target, a bad URL or rate)
    └── SparkEngineError       the Spark engine cannot run here (pyspark or Java missing, no master reached)

Row-level problems (a bad line, a bad timestamp) are *not* errors: those rows
go to the quarantine table and loading goes on.
"""

from __future__ import annotations

__all__ = [
    "AuditDatabaseError",
    "AuditDatabaseLockedError",
    "CaptureLogError",
    "ConfigError",
    "DatasetError",
    "LocationError",
    "MissingFileError",
    "ReceiverError",
    "ReplayError",
    "ReplayHttpError",
    "ReportError",
    "SparkEngineError",
    "WebhookAuditError",
]


class WebhookAuditError(Exception):
    """Base class of every error webhook_core raises on purpose."""


class ConfigError(WebhookAuditError):
    """Invalid webhook settings.

    ``source`` is the file (or ``"<settings>"``), ``webhook`` the webhook ID or
    entry number, ``field`` the offending field.
    """

    def __init__(self, message: str, *, source: str = "<settings>", webhook: str | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.webhook = webhook
        self.field = field
        where = source
        if webhook is not None:
            where += f": webhook {webhook}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class LocationError(ConfigError):
    """A location string is not ``query.NAME``, ``form.NAME``, ``json.PATH`` or ``header.NAME``."""


class DatasetError(WebhookAuditError):
    """A dataset file cannot be used at all (not a row-level problem)."""

    def __init__(self, message: str, *, path: str, field: str | None = None) -> None:
        self.path = path
        self.field = field
        where = path if field is None else f"{path}: field '{field}'"
        super().__init__(f"{where}: {message}")


class MissingFileError(DatasetError):
    """A required dataset file does not exist."""


class AuditDatabaseError(DatasetError):
    """A file given as an audit database that is not one webhook-audit can read (docs/audit-database.md)."""


class AuditDatabaseLockedError(AuditDatabaseError):
    """Another process holds the audit database's write lock, so it cannot be opened read-only now."""


class ReplayError(WebhookAuditError):
    """Replay options that cannot apply to this dataset (e.g. a --timeout for an unknown webhook)."""


class ReportError(WebhookAuditError):
    """A notebook failed; names the notebook and cell."""


class CaptureLogError(WebhookAuditError):
    """The capture log cannot be opened, read back or written."""


class ReceiverError(WebhookAuditError):
    """The receiver cannot start with these options, or its capture log disagrees with the dataset."""


class ReplayHttpError(WebhookAuditError):
    """Options that cannot work (a remote target without --allow-remote, a bad URL or rate)."""


class SparkEngineError(WebhookAuditError):
    """``--engine spark`` cannot run: pyspark is not installed, Spark did not start, or a load it cannot read."""
