"""The CLI's own parameter types: sizes, timeouts, timestamps and the shared ``--out`` / ``--observation-end``
options, each failing with one line that says how to write the value."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from webhook_core.analysis.timeouts import DEFAULT_CANDIDATES
from webhook_core.audit.filters import Filters
from webhook_core.load.gate import DEFAULT_MAX_QUARANTINED
from webhook_core.load.timestamps import check_timestamp_format
from webhook_core.rules.settings import parse_timestamp

__all__ = ["MemorySize", "Seconds", "Share", "TimeoutOption", "Timestamp", "TimestampFormat", "candidates_option",
           "end_option", "filter_options", "out_option", "quarantine_option", "target_option",
           "timestamp_format_option"]

F = TypeVar("F", bound=Callable[..., Any])

_SIZE_UNITS = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
               "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


class MemorySize(click.ParamType):  # type: ignore[type-arg]
    """A size such as ``4GB`` (powers of 1000) or ``4GiB`` (powers of 1024), in bytes."""

    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
        unit = match.group(2).upper() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            self.fail(f"{value!r} is not a size; write it like 4GB, 512MB or 4GiB", param, ctx)
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
        if size < 64 * 1024**2:
            self.fail(f"{value!r} is too small; give at least 64MB", param, ctx)
        return size


class TimeoutOption(click.ParamType):  # type: ignore[type-arg]
    """``SECONDS`` (every webhook that waits) or ``WEBHOOK_ID=SECONDS``."""

    name = "timeout"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str | None, float]:
        if isinstance(value, tuple):
            return value
        webhook, _, seconds = str(value).rpartition("=")
        try:
            number = float(seconds)
        except ValueError:
            self.fail(f"{value!r}: write SECONDS or WEBHOOK_ID=SECONDS, e.g. 30 or wh-acme=30", param, ctx)
        if not number > 0 or number == float("inf"):
            self.fail(f"{value!r}: the timeout must be a positive number of seconds", param, ctx)
        return (webhook or None, number)


class Timestamp(click.ParamType):  # type: ignore[type-arg]
    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_timestamp(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 timestamp (e.g. 2026-11-20T10:00:00Z)", param, ctx)


def _table_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # Checked before the (possibly long) load, not after it.
    if value is not None and value.suffix not in (".parquet", ".csv"):
        raise click.ClickException(f"{value}: --out must end in .parquet or .csv")
    return value


def _table_or_json_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix not in (".csv", ".json", ".parquet"):
        raise click.ClickException(f"{value}: --out must end in .csv, .json or .parquet")
    return value


def out_option(help_text: str, required: bool = False, json: bool = False) -> Callable[[F], F]:
    """``json``: the command also writes JSON records (``.json``)."""
    return click.option("--out", "out_file", type=click.Path(path_type=Path), required=required,
                        callback=_table_or_json_path if json else _table_path,
                        help=f"{help_text} {'CSV, JSON or Parquet' if json else 'Parquet or CSV'}, by the extension.")


end_option: Callable[[F], F] = click.option("--observation-end", type=Timestamp(), default=None,
                           help="Judge leads as of this time (default: the latest timestamp in the data).")


class Share(click.ParamType):  # type: ignore[type-arg]
    """A percentage such as ``1%``, ``0.5%`` or ``100%``, as a fraction."""

    name = "share"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*", str(value))
        if match is None or float(match.group(1)) > 100:
            self.fail(f"{value!r} is not a percentage; write it like 1%, 0.5% or 100%", param, ctx)
        return float(match.group(1)) / 100


def quarantine_option(command: F) -> F:
    """``--max-quarantined``: the share of an input file's rows that may be quarantined (webhook_core.load.gate)."""
    return click.option(
        "--max-quarantined", type=Share(), default=f"{DEFAULT_MAX_QUARANTINED:.0%}", show_default=True,
        help="Stop when more than this share of an input file's rows is quarantined (its figures would "
             "mislead); 100% judges what loads whatever the share. Under it, any quarantine is a warning.",
    )(command)


class TimestampFormat(click.ParamType):  # type: ignore[type-arg]
    """strptime directives DuckDB reads, e.g. ``%d/%m/%Y %H:%M:%S``."""

    name = "format"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            check_timestamp_format(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


def timestamp_format_option(command: F) -> F:
    """``--timestamp-format``: how to read timestamps that are not ISO 8601 (webhook_core.load.timestamps)."""
    return click.option(
        "--timestamp-format", type=TimestampFormat(), default=None, metavar="FORMAT",
        help="Also read timestamps written this way (strptime directives, e.g. '%d/%m/%Y %H:%M:%S' for "
             "02/11/2026 02:12:17); ISO 8601 is always read. A time without a zone is UTC.",
    )(command)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--advertiser``, ``--webhook`` (repeatable), ``--since``, ``--until``, handed to the command as one
    ``filters`` argument (webhook_core.audit.filters)."""

    @functools.wraps(command)
    def with_filters(*args: Any, advertisers: tuple[str, ...], webhooks: tuple[str, ...], since: datetime | None,
                     until: datetime | None, **kwargs: Any) -> Any:
        return command(*args, filters=Filters(advertisers, webhooks, since, until), **kwargs)

    options = [
        click.option("--advertiser", "advertisers", multiple=True, metavar="ID",
                     help="Only this advertiser's webhooks and leads (repeatable)."),
        click.option("--webhook", "webhooks", multiple=True, metavar="ID",
                     help="Only this webhook's callbacks and leads (repeatable)."),
        click.option("--since", type=Timestamp(), default=None,
                     help="Only leads created and callbacks received at or after this instant."),
        click.option("--until", type=Timestamp(), default=None,
                     help="Only leads created and callbacks received before this instant."),
    ]
    decorated: Callable[..., Any] = with_filters
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


class Seconds(click.ParamType):  # type: ignore[type-arg]
    """Positive seconds separated by commas, e.g. ``5,30,300``, as a tuple of floats."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            values = tuple(float(c) for c in str(value).split(",") if c.strip())
            if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
                raise ValueError
        except ValueError:
            self.fail(f"{value!r}: write positive seconds separated by commas, e.g. 5,30,300", param, ctx)
        return values


def candidates_option(command: F) -> F:
    """``--candidates``: the timeouts the what-if table tries."""
    return click.option(
        "--candidates", type=Seconds(), default=",".join(f"{c:g}" for c in DEFAULT_CANDIDATES), show_default=True,
        help="Candidate timeouts in seconds, comma-separated (the what-if table only; the advice reads no "
             "candidates).")(command)


def target_option(command: F) -> F:
    """``--target``: the share of the answers that finish a wait the timeout advice keeps."""
    return click.option(
        "--target", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
        help="Recommend the smallest whole second that keeps this share of the answers that finish a wait.",
    )(command)
