"""What the CLI prints and writes: its two consoles, tables, figures and exported files, for every command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import duckdb
import pandas as pd
from rich.console import Console
from rich.table import Table

from webhook_core.domain import Outcome
from webhook_core.load.dataset import Dataset
from webhook_core.quoting import quote_literal
from webhook_core.timeutil import iso_utc

__all__ = [
    "export",
    "percent",
    "print_frame",
    "print_load_report",
    "print_outcomes",
    "print_table",
    "print_warnings",
    "say",
    "seconds",
    "stderr",
    "stdout",
    "write_frame",
    "write_json",
]

# Piped output gets wide tables rather than Rich's 80-column default, so names are not cut.
stdout = Console(soft_wrap=True)
if not stdout.is_terminal:
    stdout = Console(soft_wrap=True, width=200)
stderr = Console(stderr=True, soft_wrap=True)


def say(text: str) -> None:
    stdout.print(text, highlight=False)
    sys.stdout.flush()  # serve's lines are read by whoever started it (tests poll for the URL)


def print_load_report(loaded: Dataset) -> None:
    for report in loaded.files:
        say(f"{report.path}: read {report.read:,} = loaded {report.loaded:,} + quarantined {report.quarantined:,}")
    print_warnings(loaded.warnings)


def print_warnings(warnings: Iterable[str]) -> None:
    """A load's warnings (quarantined rows under the limit, times read as UTC): never silent."""
    for warning in warnings:
        stderr.print(f"warning: {warning}", highlight=False, markup=False)


def print_outcomes(frame: Any) -> None:
    columns = ["webhook_id", "callbacks", *[o.value for o in Outcome]]
    print_table(frame[columns].itertuples(index=False, name=None), columns, title="Outcomes per webhook")


#: ``webhook-audit --wide``: print every table whole, however wide.
WIDE = False


def print_table(rows: Any, columns: list[str], title: str | None = None, *, keys: int = 1) -> None:
    """A table; one wider than the terminal is split into several, each repeating the first ``keys``
    columns, so no cell is cut (``--wide`` prints it whole)."""
    rows = list(rows)
    cells = [[_cell(v) for v in row] for row in rows]
    # Each column costs its widest text plus a border and two spaces of padding.
    widths = [max([len(name), *(len(row[i]) for row in cells)]) + 3 for i, name in enumerate(columns)]
    budget = _table_width()
    groups = [list(range(len(columns)))]
    if budget is not None and sum(widths) + 1 > budget and len(columns) > keys + 1:
        groups = _split(widths, keys, budget)
    for part, group in enumerate(groups, 1):
        suffix = f" ({part}/{len(groups)})" if len(groups) > 1 and title else ""
        table = Table(title=f"{title}{suffix}" if title else None, title_justify="left", header_style="bold")
        for index in group:
            values = [row[index] for row in rows if row[index] is not None and not isinstance(row[index], str)]
            numeric = bool(values) and all(isinstance(v, (int, float)) for v in values)
            table.add_column(columns[index], justify="right" if numeric or _looks_numeric(rows, index) else "left")
        for row in cells:
            table.add_row(*(row[index] for index in group))
        stdout.print(table)


def _table_width() -> int | None:
    """The columns a table may take: the terminal's, or ``COLUMNS`` (else 200) when piped."""
    if WIDE:
        return None
    if stdout.is_terminal:
        return stdout.width
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else 200


def _split(widths: list[int], keys: int, budget: int) -> list[list[int]]:
    """Column groups, each the key columns and as many others as fit in ``budget``."""
    key_columns = list(range(min(keys, len(widths))))
    base = sum(widths[i] for i in key_columns) + 1
    groups: list[list[int]] = []
    current: list[int] = []
    used = base
    for index in range(len(key_columns), len(widths)):
        if current and used + widths[index] > budget:
            groups.append(key_columns + current)
            current, used = [], base
        current.append(index)
        used += widths[index]
    groups.append(key_columns + current)
    return groups


def _looks_numeric(rows: list[Any], index: int) -> bool:
    """Formatted figures ("12.5%", "3.1 s") line up on the right like numbers."""
    texts = [row[index] for row in rows if isinstance(row[index], str) and row[index]]
    return bool(texts) and all(t[:1].isdigit() for t in texts)


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, (str, list, tuple)) and pd.isna(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int) or (hasattr(value, "is_integer") and not isinstance(value, float)):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


def print_frame(frame: pd.DataFrame, title: str) -> None:
    print_table(frame.itertuples(index=False, name=None), [str(c) for c in frame.columns], title=title)


def percent(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.1%}"


def seconds(value: Any) -> str:
    if value is None or pd.isna(value):
        return ""
    value = float(value)
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def export(con: duckdb.DuckDBPyConnection, query: str, path: Path, file_format: str,
            parquet_version: int = 2) -> Path:
    """``query``'s rows into ``path``; Parquet version 2 (delta encodings) is written faster and is
    smaller than version 1 (docs/benchmarks.md)."""
    options = (f"FORMAT parquet, PARQUET_VERSION V{parquet_version}" if file_format == "parquet"
               else "FORMAT csv, HEADER true")
    con.execute(f"COPY ({query}) TO {quote_literal(str(path))} ({options})")
    return path


def write_frame(frame: pd.DataFrame, path: Path, *, announce: bool = True) -> Path:
    """Parquet or CSV, by the file's extension; ``announce`` says "wrote PATH" at once."""
    if path.suffix not in (".parquet", ".csv"):
        raise click.ClickException(f"{path}: --out must end in .parquet or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.register("frame", frame)
        export(con, "SELECT * FROM frame", path, path.suffix.lstrip("."))
    finally:
        con.close()
    if announce:
        stdout.print(f"wrote {path}", highlight=False)
    return path


def write_json(frame: pd.DataFrame, path: Path, *, json_columns: Iterable[str] = ()) -> Path:
    """JSON records: timestamps ISO 8601 in UTC to the microsecond, NULL as ``null``, and each of
    ``json_columns`` (JSON text in the frame, so CSV and Parquet keep it as one cell) as the JSON it holds."""
    nested = set(json_columns)

    def value(name: str, cell: Any) -> Any:
        if cell is None or (not isinstance(cell, (str, list, tuple, dict)) and pd.isna(cell)):
            return None
        if name in nested:
            return json.loads(cell)
        if isinstance(cell, datetime):
            return iso_utc(cell)
        return cell.item() if hasattr(cell, "item") else cell  # numpy scalars are not JSON

    records = [{str(k): value(str(k), v) for k, v in row.items()} for row in frame.to_dict("records")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    stdout.print(f"wrote {path}", highlight=False)
    return path
