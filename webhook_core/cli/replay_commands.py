"""``webhook-audit replay``: the audit of a dataset, written out; and the load-and-replay every analysis
command starts with."""

from __future__ import annotations

import contextlib
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
import duckdb
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from webhook_core.audit.audit import NOTHING_THERE, Audit, open_audit
from webhook_core.audit.database import write_audit_database
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.audit.replay import CALLBACK_COLUMNS, CALLBACK_ORDER, LEAD_COLUMNS, replay
from webhook_core.audit.schema import CALLBACK_OUTCOMES, LEAD_OUTCOMES, LOAD_REPORT, QUARANTINE
from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import (
    export,
    print_load_report,
    print_outcomes,
    print_table,
    print_warnings,
    stderr,
    stdout,
)
from webhook_core.cli.params import MemorySize, TimeoutOption, Timestamp, quarantine_option, timestamp_format_option
from webhook_core.exceptions import MissingFileError
from webhook_core.load.dataset import DUCKDB_SHARE, Dataset, connect, duckdb_memory_limit, load_dataset
from webhook_core.load.inputs import is_uri
from webhook_core.load.progress import ProgressCallback
from webhook_core.rules.settings import load_webhooks

__all__ = ["load_with_progress", "replay_command", "replayed"]


@click.command("replay")
# (text, not a Path: with --engine spark DATASET may be a URI, which a Path would spoil)
@click.argument("dataset")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for callback_outcomes, lead_outcomes, quarantine and load_report. "
                   "Give --out, --database or both.")
@click.option("--format", "file_format", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True, help="Output file format.")
@click.option("--parquet-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="Parquet format version: 2 writes delta encodings (faster, smaller files); "
                   "1 for readers that know only version 1.")
@click.option("--timeout", "timeouts", type=TimeoutOption(), multiple=True, metavar="[WEBHOOK_ID=]SECONDS",
              help="What-if timeout for the webhooks that wait; repeat for several webhooks.")
@click.option("--observation-end", type=Timestamp(), default=None,
              help="Judge lead states as of this time (default: the latest timestamp in the data).")
@click.option("--database", type=click.Path(path_type=Path), default=None,
              help="Keep the loaded tables and results in this DuckDB file, an audit database the analysis "
                   "commands and report read in place of DATASET (docs/audit-database.md).")
@click.option("--memory-limit", type=MemorySize(), default=None, metavar="SIZE",
              help="Memory budget of the whole process, e.g. 4GB or 4GiB. DuckDB is given "
                   f"{DUCKDB_SHARE:.0%} of it (the rest is Python's) and spills to disk beyond that.")
@click.option("--temp-dir", type=click.Path(path_type=Path), default=None,
              help="Where DuckDB spills (and --engine spark stages the loaded rows for Spark).")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Where the replay runs: DuckDB in this process, or Apache Spark (the same outputs; "
                   "pip install 'webhook-audit[spark]'; docs/spark.md).")
@click.option("--spark-master", default=None, metavar="URL",
              help="With --engine spark: local[2], spark://HOST:7077, yarn, … "
                   "(default: spark-submit's, else local[*]).")
@click.option("--spark-stage", default=None, metavar="DIR|URI",
              help="With --engine spark: where Spark stages the loaded rows, storage every executor reads "
                   "(a shared folder, s3a://…); a temporary folder in it is removed afterwards "
                   "(default: one under --temp-dir, else the system's).")
@quarantine_option
@timestamp_format_option
def replay_command(dataset: str, out_dir: Path | None, file_format: str, parquet_version: str,
                   timeouts: tuple[tuple[str | None, float], ...], observation_end: datetime | None,
                   database: Path | None, memory_limit: int | None, temp_dir: Path | None, engine: str,
                   spark_master: str | None, spark_stage: str | None, max_quarantined: float,
                   timestamp_format: str | None) -> None:
    """Replay DATASET's captured callbacks and write one outcome per callback and per lead.

    --out writes them as files; --database keeps them, with the loaded dataset, as an audit database.
    """
    if out_dir is None and database is None:
        raise click.UsageError("give --out DIR for the outcome files, --database FILE for an audit database, "
                               "or both")
    if engine == "spark" and database is not None:
        raise click.ClickException("--database: an audit database is written by --engine duckdb only; give --out "
                                   "DIR with --engine spark, or drop --engine spark")
    if spark_master is not None and engine != "spark":
        raise click.ClickException("--spark-master applies to --engine spark; add --engine spark")
    if spark_stage is not None and engine != "spark":
        raise click.ClickException("--spark-stage applies to --engine spark; add --engine spark")
    if is_uri(dataset) and engine != "spark":
        raise click.ClickException(f"{dataset}: the DuckDB engine reads local folders; use --engine spark for a URI, "
                                   "or copy the dataset here")
    # The connection is closed before the error is reported: a --database left open would hold its lock.
    with user_errors(), contextlib.ExitStack() as cleanup:
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise click.ClickException(f"{out_dir}: --out must be a folder, and this is a file")
        if timeouts and not is_uri(dataset) and (Path(dataset) / "webhooks.json").is_file():
            load_webhooks(Path(dataset) / "webhooks.json").with_timeouts(dict(timeouts))  # fail before a long load
        con = connect(str(database) if database else ":memory:", memory_limit=duckdb_memory_limit(memory_limit),
                      temp_directory=str(temp_dir) if temp_dir else None)
        cleanup.callback(con.close)
        if database is not None:
            loaded, result = write_audit_database(con, Path(dataset), load=partial(_load_and_print,
                                                                              max_quarantined=max_quarantined,
                                                                              timestamp_format=timestamp_format),
                                                  timeouts=dict(timeouts),
                                                  observation_end=observation_end)
        elif engine == "spark":
            from webhook_core.cli.spark_engine import replay_on_spark

            result = replay_on_spark(con, dataset, master=spark_master, timeouts=dict(timeouts),
                                     observation_end=observation_end, max_quarantined=max_quarantined,
                                     timestamp_format=timestamp_format, temp_dir=temp_dir, stage=spark_stage)
        else:
            # Without --database only the replay reads the callbacks: keep just what it judges them by.
            loaded = load_with_progress(con, Path(dataset), keep_requests=False, max_quarantined=max_quarantined,
                                        timestamp_format=timestamp_format)
            print_load_report(loaded)
            with stderr.status("Replaying…"):
                # Nothing reads the inputs after the replay: let it free their memory.
                result = replay(con, loaded.webhooks, timeouts=dict(timeouts), observation_end=observation_end,
                                release_inputs=True)
        written = [] if out_dir is None else _export_outcomes(con, out_dir, file_format, int(parquet_version))
        print_outcomes(result.outcome_counts())
        end = result.observation_end.isoformat() if result.observation_end else "-"
        stdout.print(f"Lead states as of {end}:")
        print_table(con.execute(f"""
            SELECT webhook_id, count(*) AS leads,
                   count(*) FILTER (state = 'received') AS received,
                   count(*) FILTER (state = 'timed_out') AS timed_out,
                   count(*) FILTER (state = 'waiting') AS waiting
            FROM {LEAD_OUTCOMES} GROUP BY webhook_id ORDER BY webhook_id
        """).fetchall(), ["webhook_id", "leads", "received", "timed_out", "waiting"])
        for path in [*written, *([database] if database is not None else [])]:
            stdout.print(f"wrote {path}")


def _export_outcomes(con: duckdb.DuckDBPyConnection, out_dir: Path, file_format: str, version: int) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        export(con, f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM {CALLBACK_OUTCOMES} ORDER BY {CALLBACK_ORDER}",
               out_dir / f"{CALLBACK_OUTCOMES}.{file_format}", file_format, version),
        export(con, f"SELECT {', '.join(LEAD_COLUMNS)} FROM {LEAD_OUTCOMES} ORDER BY \"row\"",
               out_dir / f"{LEAD_OUTCOMES}.{file_format}", file_format, version),
        export(con, f"SELECT * FROM {QUARANTINE} ORDER BY source_file, line",
               out_dir / f"{QUARANTINE}.{file_format}", file_format, version),
        export(con, f"SELECT * FROM {LOAD_REPORT} ORDER BY table_name DESC, source_file",
               out_dir / f"{LOAD_REPORT}.{file_format}", file_format, version),
    ]


def replayed(dataset: Path, observation_end: datetime | None = None, max_quarantined: float | None = None,
             timestamp_format: str | None = None, filters: Filters | None = None) -> Audit:
    """DATASET as the analysis commands take it (a folder loaded and replayed, or an audit database), with
    the load's warnings printed and narrowed to ``filters``."""
    audit = _opened(dataset, observation_end, max_quarantined, timestamp_format)
    if not filters:
        return audit
    stderr.print(f"Only {filters.describe()}", highlight=False, markup=False)
    return apply_filters(audit, filters)


def _opened(dataset: Path, observation_end: datetime | None, max_quarantined: float | None,
            timestamp_format: str | None) -> Audit:
    if dataset.is_file():
        if timestamp_format is not None:
            raise click.ClickException(f"{dataset}: an audit database was loaded already; --timestamp-format "
                                       "applies to a dataset folder (replay it again with the format)")
        audit = open_audit(dataset, observation_end=observation_end, max_quarantined=max_quarantined)
        print_warnings(audit.warnings)
        return audit
    if not dataset.exists():
        raise MissingFileError(NOTHING_THERE, path=str(dataset))
    con = connect()
    loaded = load_with_progress(con, dataset, max_quarantined=max_quarantined, timestamp_format=timestamp_format)
    print_load_report(loaded)
    with stderr.status("Replaying…"):
        result = replay(con, loaded.webhooks, observation_end=observation_end)
    return Audit(con, loaded.webhooks, result.observation_end, dataset, read_only=False)


def _load_and_print(con: duckdb.DuckDBPyConnection, dataset: Path, *,
                    max_quarantined: float | None = None, timestamp_format: str | None = None) -> Dataset:
    loaded = load_with_progress(con, dataset, max_quarantined=max_quarantined, timestamp_format=timestamp_format)
    print_load_report(loaded)
    return loaded


def load_with_progress(con: duckdb.DuckDBPyConnection, dataset: Path, *, keep_requests: bool = True,
                       max_quarantined: float | None = None, timestamp_format: str | None = None) -> Dataset:
    with Progress(TextColumn("Loading {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=stderr, transient=True, disable=not stderr.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def advance(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        callback: ProgressCallback = advance
        # Without a dispatch or a callback every figure would be empty or misleading (every callback
        # not_found, every lead waiting): an error, not a success.
        return load_dataset(con, dataset, progress=callback, keep_requests=keep_requests,
                            required=("dispatches", "callbacks"), max_quarantined=max_quarantined,
                            timestamp_format=timestamp_format)
