"""``webhook-audit``: a thin command line over webhook_core.

Every command's work is a library call; this module parses options, shows
progress and prints tables. A user's mistake is one line on stderr and exit
code 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from webhook_core.exceptions import WebhookAuditError
from webhook_core.generate import generate
from webhook_core.loading import Dataset, ProgressCallback, connect, load_dataset
from webhook_core.matching import Outcome
from webhook_core.replay import CALLBACK_COLUMNS, LEAD_COLUMNS, replay
from webhook_core.settings import load_webhooks, parse_timestamp

__all__ = ["main"]

# Piped output gets wide tables rather than Rich's 80-column default, so names are not cut.
stdout = Console(soft_wrap=True)
if not stdout.is_terminal:
    stdout = Console(soft_wrap=True, width=200)
stderr = Console(stderr=True, soft_wrap=True)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webhook-audit")
def cli() -> None:
    """Audit advertiser webhook callbacks: replay them against waiting webhooks
    under production's rules and say, per callback, why it was answered 404.

    A DATASET is a folder with webhooks.json, dispatches.{csv,jsonl,parquet} and
    callbacks.{jsonl,har,parquet}; see docs/semantics.md.
    """


@cli.command("replay")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for callback_outcomes, lead_outcomes, quarantine and load_report.")
@click.option("--format", "file_format", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True, help="Output file format.")
@click.option("--timeout", "timeouts", type=TimeoutOption(), multiple=True, metavar="[WEBHOOK_ID=]SECONDS",
              help="What-if timeout for the webhooks that wait; repeat for several webhooks.")
@click.option("--observation-end", type=Timestamp(), default=None,
              help="Judge lead states as of this time (default: the latest timestamp in the data).")
@click.option("--database", type=click.Path(path_type=Path), default=None,
              help="Keep the loaded tables and results in this DuckDB file (default: in memory).")
@click.option("--memory-limit", default=None, help="DuckDB memory limit, e.g. 4GB; larger data spills to disk.")
@click.option("--temp-dir", type=click.Path(path_type=Path), default=None, help="Where DuckDB spills.")
def replay_command(dataset: Path, out_dir: Path, file_format: str, timeouts: tuple[tuple[str | None, float], ...],
                   observation_end: datetime | None, database: Path | None, memory_limit: str | None,
                   temp_dir: Path | None) -> None:
    """Replay DATASET's captured callbacks and write one outcome per callback and per lead."""
    with _user_errors():
        if out_dir.exists() and not out_dir.is_dir():
            raise click.ClickException(f"{out_dir}: --out must be a folder, and this is a file")
        if timeouts and (dataset / "webhooks.json").is_file():
            load_webhooks(dataset / "webhooks.json").with_timeouts(dict(timeouts))  # fail before a long load
        con = connect(str(database) if database else ":memory:", memory_limit=memory_limit,
                      temp_directory=str(temp_dir) if temp_dir else None)
        loaded = _load_with_progress(con, dataset)
        _print_load_report(loaded)
        with stderr.status("Replaying…"):
            result = replay(con, loaded.webhooks, timeouts=dict(timeouts), observation_end=observation_end)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [
            _export(con, f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM callback_outcomes ORDER BY ord",
                    out_dir / f"callback_outcomes.{file_format}", file_format),
            _export(con, f"SELECT {', '.join(LEAD_COLUMNS)} FROM lead_outcomes ORDER BY \"row\"",
                    out_dir / f"lead_outcomes.{file_format}", file_format),
            _export(con, "SELECT * FROM quarantine ORDER BY source_file, line",
                    out_dir / f"quarantine.{file_format}", file_format),
            _export(con, "SELECT * FROM load_report ORDER BY table_name DESC",
                    out_dir / f"load_report.{file_format}", file_format),
        ]
        _print_outcomes(result.outcome_counts())
        end = result.observation_end.isoformat() if result.observation_end else "-"
        stdout.print(f"Lead states as of {end}:")
        _print_frame(con.execute("""
            SELECT webhook_id, count(*) AS leads,
                   count(*) FILTER (state = 'received') AS received,
                   count(*) FILTER (state = 'timed_out') AS timed_out,
                   count(*) FILTER (state = 'waiting') AS waiting
            FROM lead_outcomes GROUP BY webhook_id ORDER BY webhook_id
        """).fetchall(), ["webhook_id", "leads", "received", "timed_out", "waiting"])
        for path in written:
            stdout.print(f"wrote {path}")


@cli.command("generate")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--leads", type=click.IntRange(min=1), default=3000, show_default=True, help="How many leads.")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same bytes.")
def generate_command(folder: Path, leads: int, seed: int) -> None:
    """Write a realistic synthetic dataset to FOLDER (advertiser profiles in data/README.md)."""
    with _user_errors(), stderr.status(f"Generating {leads:,} leads…"):
        made = generate(folder, leads=leads, seed=seed)
    stdout.print(f"wrote {made.path}: {made.leads:,} leads, {made.callbacks:,} callbacks, "
                 f"{made.garbage_lines:,} unparseable capture lines", highlight=False)


def _load_with_progress(con: duckdb.DuckDBPyConnection, dataset: Path) -> Dataset:
    with Progress(TextColumn("Loading {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=stderr, transient=True, disable=not stderr.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def advance(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        callback: ProgressCallback = advance
        return load_dataset(con, dataset, progress=callback)


def _print_load_report(loaded: Dataset) -> None:
    for report in loaded.files:
        line = (f"{report.path}: read {report.read:,} = loaded {report.loaded:,} "
                f"+ quarantined {report.quarantined:,}")
        stdout.print(line, highlight=False)


def _print_outcomes(frame: Any) -> None:
    columns = ["webhook_id", "callbacks", *[o.value for o in Outcome]]
    _print_frame(frame[columns].itertuples(index=False, name=None), columns, title="Outcomes per webhook")


def _print_frame(rows: Any, columns: list[str], title: str | None = None) -> None:
    table = Table(title=title, title_justify="left", header_style="bold")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    stdout.print(table)


def _export(con: duckdb.DuckDBPyConnection, query: str, path: Path, file_format: str) -> Path:
    options = "FORMAT parquet" if file_format == "parquet" else "FORMAT csv, HEADER true"
    literal = "'" + str(path).replace("'", "''") + "'"
    con.execute(f"COPY ({query}) TO {literal} ({options})")
    return path


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except WebhookAuditError as exc:
        raise click.ClickException(str(exc)) from exc
    except duckdb.OutOfMemoryException as exc:
        raise click.ClickException(
            "DuckDB ran out of memory; raise --memory-limit or give --temp-dir on a disk with room") from exc
    except duckdb.Error as exc:  # e.g. a --database that is not a DuckDB file, a bad --memory-limit
        raise click.ClickException(f"DuckDB: {str(exc).splitlines()[0]}") from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")) from exc


def main() -> None:
    cli(prog_name="webhook-audit")


if __name__ == "__main__":
    main()
