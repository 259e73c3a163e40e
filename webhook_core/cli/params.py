"""The CLI's own parameter types: sizes, timeouts, timestamps and the shared ``--out`` / ``--observation-end``
options, each failing with one line that says how to write the value."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from webhook_core.rules.settings import parse_timestamp

__all__ = ["MemorySize", "TimeoutOption", "Timestamp", "end_option", "out_option"]

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


def out_option(help_text: str, required: bool = False) -> Callable[[F], F]:
    return click.option("--out", "out_file", type=click.Path(path_type=Path), required=required,
                        callback=_table_path, help=help_text + " Parquet or CSV, by the extension.")


end_option: Callable[[F], F] = click.option("--observation-end", type=Timestamp(), default=None,
                           help="Judge leads as of this time (default: the latest timestamp in the data).")
