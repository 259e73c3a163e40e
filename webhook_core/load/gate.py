"""No silent quarantine: how much of each input file was quarantined, and the stop when it is too much.

A quarantined dispatch turns its callbacks into ``not_found`` charged to the advertiser; a quarantined
callback is missing from every rate. A few such rows are the usual noise of a capture; many mean the
file was read wrong (an export's timestamp format, a truncated capture), and every figure built on it
would mislead. So each file's quarantined share, ``quarantined / read``, is checked against a limit
(``--max-quarantined``, default 1 %): over it, the run stops with one line naming the file, the count
and share, the commonest reason and an example line; under it, a share above zero is a warning.

The figures come from ``load_report`` and ``quarantine``: the same for a dataset folder just loaded
and for an audit database read later.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import duckdb

from webhook_core.exceptions import DatasetError
from webhook_core.load.timestamps import timestamp_hint

__all__ = ["DEFAULT_MAX_QUARANTINED", "QuarantineShare", "check_quarantine", "load_warnings", "quarantine_shares"]

#: The share of a file's rows that may be quarantined before a run stops (``--max-quarantined``).
DEFAULT_MAX_QUARANTINED = 0.01

#: What a row is called in each capture format, by suffix, in messages.
_UNITS = {".har": "entry", ".parquet": "row"}


@dataclass(frozen=True, slots=True)
class QuarantineShare:
    """One input file's quarantine: how much, and its commonest reason with the first row it hit."""

    path: str
    table: str
    read: int
    quarantined: int
    reason: str | None
    line: int | None

    @property
    def share(self) -> float:
        return self.quarantined / self.read if self.read else 0.0

    def describe(self, limit: float | None = None) -> str:
        """``3 of 3,540 rows quarantined (0.08%); commonest reason: …, e.g. line 17``, with the limit it
        exceeds after the share when given."""
        unit = _UNITS.get(Path(self.path).suffix, "line")
        over = "" if limit is None else f", over --max-quarantined {limit * 100:g}%"
        return (f"{self.quarantined:,} of {self.read:,} rows quarantined ({_percent(self.share)}{over}); "
                f"commonest reason: {self.reason}, e.g. {unit} {self.line:,}")


def quarantine_shares(con: duckdb.DuckDBPyConnection) -> list[QuarantineShare]:
    """Every input file of ``load_report`` with its quarantine, dispatches first."""
    rows = con.execute("""
        WITH reasons AS (
            SELECT source_file, reason, count(*) AS n, min(line) AS first_line FROM quarantine GROUP BY ALL
        ),
        commonest AS (
            SELECT source_file, arg_max(reason, (n, -first_line)) AS reason,
                   arg_max(first_line, (n, -first_line)) AS line
            FROM reasons GROUP BY source_file
        )
        SELECT r.source_file, r.table_name, r.read, r.quarantined, c.reason, c.line
        FROM load_report r LEFT JOIN commonest c USING (source_file)
        ORDER BY r.table_name DESC, r.source_file
    """).fetchall()
    return [QuarantineShare(*row) for row in rows]


def check_quarantine(con: duckdb.DuckDBPyConnection, folder: str | Path, max_share: float, *,
                     tables: Collection[str] | None = None) -> list[QuarantineShare]:
    """The files with a quarantine (to warn of); a :class:`DatasetError` for the first over ``max_share``.
    ``tables``: only the files of these tables count (``serve`` reads no callbacks file)."""
    shares = [file for file in quarantine_shares(con) if tables is None or file.table in tables]
    for file in shares:
        if file.share > max_share:
            raise DatasetError(f"{file.describe(max_share)}; figures from it would mislead: fix those rows"
                               f"{timestamp_hint(file.reason)}; or judge the rest anyway with --max-quarantined 100%",
                               path=str(Path(folder) / file.path))
    return [file for file in shares if file.quarantined]


def _percent(share: float) -> str:
    # Two decimals below 10 %: a share just over a 1% limit must not print as "1.0%".
    return f"{share:.2%}" if share < 0.1 else f"{share:.1%}"


def load_warnings(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """What an analyst should know of a load that did not stop it: each file's quarantine under the limit,
    its timestamps read as UTC for want of a zone, and a file of a folder without rows, as ``FILE: …`` lines
    (from ``load_report``)."""
    lines = [f"{file.path}: {file.describe()}" for file in quarantine_shares(con) if file.quarantined]
    for path, zone_less in con.execute("SELECT source_file, zone_less FROM load_report WHERE zone_less > 0 "
                                       "ORDER BY table_name DESC, source_file").fetchall():
        lines.append(f"{path}: {zone_less:,} timestamps name no zone (no Z, no +hh:mm); read as UTC")
    # A lone empty file is an error where rows are required; in a folder it may be a rotated log's quiet day.
    for (path,) in con.execute("SELECT source_file FROM load_report WHERE read = 0 AND contains(source_file, '/') "
                               "ORDER BY table_name DESC, source_file").fetchall():
        lines.append(f"{path}: no rows; nothing loaded from it")
    return tuple(lines)
