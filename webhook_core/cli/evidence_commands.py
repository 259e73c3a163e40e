"""``evidence``: the callbacks answered 404 as captured, with the reason and what the advertiser should change,
as CSV or as a workbook with a sheet per advertiser (webhook_core.analysis.evidence)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import click
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from webhook_core.analysis.evidence import evidence, evidence_summary
from webhook_core.audit.filters import Filters
from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import print_table, stdout, write_frame
from webhook_core.cli.params import end_option, filter_options, quarantine_option, timestamp_format_option
from webhook_core.cli.replay_commands import replayed
from webhook_core.domain import Outcome

__all__ = ["SUMMARY_SHEET", "TERMINAL_TITLE", "evidence_command", "sheet_names", "write_evidence"]

SUMMARY_SHEET = "Summary"
#: The terminal table's title (tests find the table by it).
TERMINAL_TITLE = "Evidence: callbacks per advertiser and outcome"

#: Excel's limits: characters in a cell, rows in a sheet (the header takes one), characters in a sheet name.
_CELL_CHARS = 32_767
_SHEET_ROWS = 1_048_575
_NAME_CHARS = 31
#: Widths in characters: enough for the usual value, capped so a body does not push the hint off screen.
_WIDTHS = {"received_at": 25, "method": 8, "outcome": 15, "lead_quarantined": 9, "callbacks": 10,
           "near_misses": 12}
_MIN_WIDTH, _MAX_WIDTH = 10, 60


def _out_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    # Checked before the (possibly long) load, not after it.
    if value.suffix not in (".csv", ".xlsx"):
        raise click.ClickException(f"{value}: --out must end in .csv or .xlsx; give FILE.csv or FILE.xlsx")
    return value


@click.command("evidence")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--all", "all_callbacks", is_flag=True,
              help="Every callback (matched, interim and refused ones too), not only those answered 404.")
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True, callback=_out_path,
              help="CSV (the rows), or XLSX: a Summary sheet (callbacks per advertiser, webhook and outcome, with "
                   "the hint), then one sheet of rows per advertiser.")
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def evidence_command(dataset: Path, all_callbacks: bool, out_file: Path, observation_end: datetime | None,
                     max_quarantined: float, timestamp_format: str | None, filters: Filters) -> None:
    """The evidence to send an advertiser: every callback answered 404 as it was captured (method, URL,
    headers, body), its outcome, the reason in plain words, a hint saying what to change, and the
    near-miss that would have paired it (docs/analysis.md, "Evidence").

    DATASET is a dataset folder or an audit database (replay --database)."""
    with user_errors():
        audit = replayed(dataset, observation_end, max_quarantined, timestamp_format, filters)
        frame = evidence(audit, all_callbacks=all_callbacks)
        _print_counts(frame, all_callbacks)
        write_evidence(frame, out_file)
        stdout.print(f"wrote {out_file}", highlight=False)


def _print_counts(frame: pd.DataFrame, all_callbacks: bool) -> None:
    if frame.empty:
        stdout.print("No callback" + ("" if all_callbacks else " was answered 404") + ".", highlight=False)
        return
    summary = evidence_summary(frame)
    # The summary's order: advertisers as in the rows, outcomes as in docs/semantics.md.
    summary["position"] = summary["outcome"].map({o.value: i for i, o in enumerate(Outcome)})
    summary["group"] = pd.factorize(summary["advertiser_id"])[0]
    summary["lead_quarantined"] = summary["callbacks"].where(summary["lead_quarantined"], 0)
    counts = summary.groupby(["group", "position", "advertiser_id", "outcome"], as_index=False)[
        ["callbacks", "near_misses", "lead_quarantined"]].sum().drop(columns=["group", "position"])
    print_table(counts.itertuples(index=False, name=None), list(counts.columns), title=TERMINAL_TITLE)
    stdout.print("near_misses: rows a near-miss would have paired (column near_miss); lead_quarantined: our "
                 "load's doing, not the advertiser's.", highlight=False)


def write_evidence(frame: pd.DataFrame, path: Path) -> Path:
    """An :func:`~webhook_core.analysis.evidence.evidence` frame as CSV or XLSX, by ``path``'s extension."""
    if path.suffix == ".xlsx":
        return _write_xlsx(frame, path)
    return write_frame(frame, path, announce=False)


def sheet_names(advertisers: list[str]) -> dict[str, str]:
    """A sheet name per advertiser: Excel's forbidden characters replaced, at most 31 characters, unique
    ignoring case and never the Summary sheet's."""
    names: dict[str, str] = {}
    taken = {SUMMARY_SHEET.lower()}
    for advertiser in advertisers:
        base = re.sub(r"[\[\]:*?/\\]", "_", advertiser).strip("'")[:_NAME_CHARS] or "_"
        name, number = base, 1
        while name.lower() in taken:
            number += 1
            suffix = f" ({number})"
            name = base[:_NAME_CHARS - len(suffix)] + suffix
        taken.add(name.lower())
        names[advertiser] = name
    return names


def _write_xlsx(frame: pd.DataFrame, path: Path) -> Path:
    too_many = frame["advertiser_id"].value_counts()
    if len(too_many) and too_many.iloc[0] > _SHEET_ROWS:
        raise click.ClickException(
            f"{path}: advertiser {too_many.index[0]} has {too_many.iloc[0]:,} rows, more than an Excel sheet holds "
            f"({_SHEET_ROWS:,}); write .csv, or narrow with --since / --until")
    workbook = Workbook(write_only=True)
    _write_sheet(workbook.create_sheet(SUMMARY_SHEET), _cells(evidence_summary(frame)))
    rows = _cells(frame)
    advertisers = list(dict.fromkeys(frame["advertiser_id"]))
    for advertiser, name in sheet_names(advertisers).items():
        _write_sheet(workbook.create_sheet(name), rows[frame["advertiser_id"].to_numpy() == advertiser])
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as openpyxl can write it: times naive UTC (Excel has no zones; the format says UTC), text
    without the control characters XML cannot hold (written as ``\\xNN``) and cut to a cell's limit."""
    cells = frame.copy()
    for column in cells.columns:
        values = cells[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            cells[column] = values.dt.tz_convert("UTC").dt.tz_localize(None)
        elif values.dtype == object:
            text = values.where(values.isna(), values.astype(str).str.replace(
                ILLEGAL_CHARACTERS_RE, lambda m: f"\\x{ord(m.group()):02x}", regex=True))
            cut = text.str.len() > _CELL_CHARS
            note = " … (cut: the CSV holds all of it)"
            text = text.where(~cut, text.str.slice(0, _CELL_CHARS - len(note)) + note)
            cells[column] = text
    return cells


def _write_sheet(sheet: WriteOnlyWorksheet, frame: pd.DataFrame) -> None:
    sheet.freeze_panes = "A2"
    for index, column in enumerate(frame.columns):
        letter = get_column_letter(index + 1)
        lengths = frame[column].dropna().astype(str).str.len()
        natural = max(len(str(column)), int(lengths.max()) if len(lengths) else 0) + 2
        # Worksheet._setup gives a write-only sheet its column_dimensions; the stubs do not list them.
        sheet.column_dimensions[letter].width = _WIDTHS.get(  # type: ignore[attr-defined]
            str(column), min(max(natural, _MIN_WIDTH), _MAX_WIDTH))
    bold = Font(bold=True)
    header = []
    for column in frame.columns:
        cell = WriteOnlyCell(sheet, value=str(column))
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in frame.itertuples(index=False, name=None):
        sheet.append([_cell(sheet, value) for value in row])


def _cell(sheet: WriteOnlyWorksheet, value: object) -> object:
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[call-overload]
        return None
    if isinstance(value, str):
        cell = WriteOnlyCell(sheet, value=value)
        # A URL or body is text as captured: "=…" must not become a formula, "0042" must keep its zeros.
        cell.data_type = "s"
        return cell
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = 'yyyy-mm-dd hh:mm:ss.000 "UTC"'
        return cell
    return value.item() if hasattr(value, "item") else value

