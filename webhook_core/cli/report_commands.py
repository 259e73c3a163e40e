"""``webhook-audit report`` (the notebooks as HTML) and ``generate`` (a synthetic dataset)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn

from webhook_core.audit.filters import Filters
from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import print_warnings, stderr, stdout
from webhook_core.cli.params import (
    MemorySize,
    candidates_option,
    end_option,
    filter_options,
    quarantine_option,
    target_option,
    timestamp_format_option,
)
from webhook_core.load.dataset import DUCKDB_SHARE
from webhook_core.synth.generate import generate

__all__ = ["generate_command", "report_command"]


@click.command("report")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for one HTML page per notebook and index.html.")
@click.option("--with-http", is_flag=True,
              help="Also run notebook 05: the reference receiver answering the captured callbacks over HTTP.")
@click.option("--memory-limit", type=MemorySize(), default=None, metavar="SIZE",
              help="Memory budget of the whole report, e.g. 4GiB: the replay, and each notebook with this "
                   f"process beside it. DuckDB is given {DUCKDB_SHARE:.0%} of what is left to it and spills to "
                   "disk beyond that.")
@click.option("--temp-dir", type=click.Path(path_type=Path), default=None, help="Where DuckDB spills.")
@click.option("--show-code", is_flag=True, help="Keep the notebooks' code on the pages (hidden by default: the report "
                                                 "is for people who do not read code).")
@candidates_option
@target_option
@click.option("--lead", default=None, metavar="ID",
              help="The lead (lead or conversion ID) whose timeline page 04 shows (default: the one with most "
                   "callbacks).")
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def report_command(dataset: Path, out_dir: Path, with_http: bool, memory_limit: int | None,
                   temp_dir: Path | None, show_code: bool, candidates: tuple[float, ...], target: float,
                   lead: str | None, observation_end: datetime | None, max_quarantined: float,
                   timestamp_format: str | None, filters: Filters) -> None:
    """Run notebooks 01-04 on DATASET and write a self-contained HTML report (charts work offline).

    DATASET is a dataset folder, replayed once into OUT/audit.duckdb, or an audit database
    (webhook-audit replay --database). Notebook 05 (the receiver over HTTP) joins with --with-http.
    """
    from webhook_core.report.build import ReportSettings, build_report

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with user_errors(), Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("notebooks", total=None)

        def advance(name: str, index: int, total: int) -> None:
            progress.update(task, description=f"Running {name}", completed=index, total=total)
            if not stderr.is_terminal:
                stderr.print(f"[{index + 1}/{total}] {name}" if index < total else "writing index.html",
                             highlight=False)

        pages = build_report(dataset, out_dir, with_http=with_http, progress=advance,
                             memory_budget=memory_limit,
                             temp_directory=None if temp_dir is None else str(temp_dir.resolve()),
                             max_quarantined=max_quarantined, timestamp_format=timestamp_format,
                             warn=print_warnings, show_code=show_code, observation_end=observation_end,
                             settings=ReportSettings(candidates=candidates, target=target, lead=lead,
                                                     filters=filters))
    for page in pages:
        stdout.print(f"wrote {page.html}", highlight=False)
    stdout.print(f"open {out_dir / 'index.html'}", highlight=False)


@click.command("generate")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--leads", type=click.IntRange(min=1), default=3000, show_default=True, help="How many leads.")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same bytes.")
def generate_command(folder: Path, leads: int, seed: int) -> None:
    """Write a realistic synthetic dataset to FOLDER (advertiser profiles in data/README.md)."""
    with user_errors(), stderr.status(f"Generating {leads:,} leads…"):
        made = generate(folder, leads=leads, seed=seed)
    stdout.print(f"wrote {made.path}: {made.leads:,} leads, {made.callbacks:,} callbacks, "
                 f"{made.garbage_lines:,} unparseable capture lines", highlight=False)
