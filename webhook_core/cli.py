"""``webhook-audit``: a thin command line over webhook_core.

Every command's work is a library call; this module parses options, shows
progress and prints tables. A user's mistake is one line on stderr and exit
code 1, never a traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import duckdb
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from webhook_core.cli_errors import user_errors
from webhook_core.cli_http import replay_http_command, serve_command
from webhook_core.generate import generate
from webhook_core.loading import Dataset, ProgressCallback, connect, load_dataset
from webhook_core.matching import Outcome
from webhook_core.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.rates import disagreements, rates
from webhook_core.replay import CALLBACK_COLUMNS, CALLBACK_ORDER, LEAD_COLUMNS, replay
from webhook_core.settings import load_webhooks, parse_timestamp
from webhook_core.sql import quote_literal
from webhook_core.survival import CURVE_COLUMNS, capture_curve, wait_summary
from webhook_core.timeline import lead_timeline
from webhook_core.timeouts import DEFAULT_CANDIDATES, blocking_webhooks, timeout_whatifs

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

# Piped output gets wide tables rather than Rich's 80-column default, so names are not cut.
stdout = Console(soft_wrap=True)
if not stdout.is_terminal:
    stdout = Console(soft_wrap=True, width=200)
stderr = Console(stderr=True, soft_wrap=True)


#: The share of ``--memory-limit`` given to DuckDB's buffer pool. The process also holds the
#: interpreter, its libraries and memory DuckDB allocates outside its pool: about 0.55 GiB
#: above DuckDB's limit in the 10M-callback benchmark (docs/benchmarks.md).
DUCKDB_SHARE = 0.8

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
@click.option("--parquet-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="Parquet format version: 2 writes delta encodings (faster, smaller files); "
                   "1 for readers that know only version 1.")
@click.option("--timeout", "timeouts", type=TimeoutOption(), multiple=True, metavar="[WEBHOOK_ID=]SECONDS",
              help="What-if timeout for the webhooks that wait; repeat for several webhooks.")
@click.option("--observation-end", type=Timestamp(), default=None,
              help="Judge lead states as of this time (default: the latest timestamp in the data).")
@click.option("--database", type=click.Path(path_type=Path), default=None,
              help="Keep the loaded tables and results in this DuckDB file (default: in memory).")
@click.option("--memory-limit", type=MemorySize(), default=None, metavar="SIZE",
              help="Memory budget of the whole process, e.g. 4GB or 4GiB. DuckDB is given "
                   f"{DUCKDB_SHARE:.0%} of it (the rest is Python's) and spills to disk beyond that.")
@click.option("--temp-dir", type=click.Path(path_type=Path), default=None, help="Where DuckDB spills.")
def replay_command(dataset: Path, out_dir: Path, file_format: str, parquet_version: str,
                   timeouts: tuple[tuple[str | None, float], ...], observation_end: datetime | None,
                   database: Path | None, memory_limit: int | None, temp_dir: Path | None) -> None:
    """Replay DATASET's captured callbacks and write one outcome per callback and per lead."""
    with user_errors():
        if out_dir.exists() and not out_dir.is_dir():
            raise click.ClickException(f"{out_dir}: --out must be a folder, and this is a file")
        if timeouts and (dataset / "webhooks.json").is_file():
            load_webhooks(dataset / "webhooks.json").with_timeouts(dict(timeouts))  # fail before a long load
        duckdb_limit = None if memory_limit is None else f"{int(memory_limit * DUCKDB_SHARE) // 1024**2}MiB"
        con = connect(str(database) if database else ":memory:", memory_limit=duckdb_limit,
                      temp_directory=str(temp_dir) if temp_dir else None)
        # Without --database only the replay reads the callbacks: keep just what it judges them by.
        loaded = _load_with_progress(con, dataset, keep_requests=database is not None)
        _print_load_report(loaded)
        with stderr.status("Replaying…"):
            # Without --database nothing reads the inputs after the replay: let it free their memory.
            result = replay(con, loaded.webhooks, timeouts=dict(timeouts), observation_end=observation_end,
                            release_inputs=database is None)
        out_dir.mkdir(parents=True, exist_ok=True)
        version = int(parquet_version)
        written = [
            _export(con, f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM callback_outcomes ORDER BY {CALLBACK_ORDER}",
                    out_dir / f"callback_outcomes.{file_format}", file_format, version),
            _export(con, f"SELECT {', '.join(LEAD_COLUMNS)} FROM lead_outcomes ORDER BY \"row\"",
                    out_dir / f"lead_outcomes.{file_format}", file_format, version),
            _export(con, "SELECT * FROM quarantine ORDER BY source_file, line",
                    out_dir / f"quarantine.{file_format}", file_format, version),
            _export(con, "SELECT * FROM load_report ORDER BY table_name DESC",
                    out_dir / f"load_report.{file_format}", file_format, version),
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


def _replayed(dataset: Path, observation_end: datetime | None = None) -> tuple[duckdb.DuckDBPyConnection, Dataset]:
    con = connect()
    loaded = _load_with_progress(con, dataset)
    _print_load_report(loaded)
    with stderr.status("Replaying…"):
        replay(con, loaded.webhooks, observation_end=observation_end)
    return con, loaded


def _write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet or CSV, by the file's extension."""
    if path.suffix not in (".parquet", ".csv"):
        raise click.ClickException(f"{path}: --out must end in .parquet or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.register("frame", frame)
    _export(con, "SELECT * FROM frame", path, path.suffix.lstrip("."))
    con.close()
    stdout.print(f"wrote {path}", highlight=False)
    return path


def _table_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # Checked before the (possibly long) load, not after it.
    if value is not None and value.suffix not in (".parquet", ".csv"):
        raise click.ClickException(f"{value}: --out must end in .parquet or .csv")
    return value


def _out_option(help_text: str, required: bool = False) -> Callable[[F], F]:
    return click.option("--out", "out_file", type=click.Path(path_type=Path), required=required,
                        callback=_table_path, help=help_text + " Parquet or CSV, by the extension.")


_end_option: Callable[[F], F] = click.option("--observation-end", type=Timestamp(), default=None,
                           help="Judge leads as of this time (default: the latest timestamp in the data).")


@cli.command("summary")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(["webhook", "advertiser"]), default="webhook", show_default=True,
              help="Group by webhook or by advertiser.")
@click.option("--per-day", is_flag=True, help="One row per group and UTC day.")
@_out_option("Also write the full table (every reason, every count) here.")
@_end_option
def summary_command(dataset: Path, by: str, per_day: bool, out_file: Path | None,
                    observation_end: datetime | None) -> None:
    """Match rate, 404 rate and 404s by reason, lead states, and agreement with production's answers."""
    with user_errors():
        con, _ = _replayed(dataset, observation_end)
        key = "webhook_id" if by == "webhook" else "advertiser_id"
        frame = rates(con, by=key, per_day=per_day)  # type: ignore[arg-type]
        shown = frame.copy()
        shown["match_rate"] = shown["match_rate"].map(_percent)
        shown["rate_404"] = shown["rate_404"].map(_percent)
        shown["agreement_rate"] = shown["agreement_rate"].map(_percent)
        reasons = [c for c in frame.columns if c.startswith("404_")]
        columns = [key, *(["day"] if per_day else []), "callbacks", "match_rate", "rate_404", *reasons,
                   "received", "timed_out", "waiting", "agreement_rate"]
        shown = shown[columns].rename(columns={c: c.removeprefix("404_") for c in reasons})
        _print_frame(shown.itertuples(index=False, name=None), list(shown.columns),
                     title="Callbacks (rates) and 404s by reason; leads by state")
        differ = disagreements(con)
        if len(differ):
            stdout.print(f"{len(differ):,} callbacks where production's recorded answer differs from the model "
                         "(first 10):", highlight=False)
            head = differ.head(10)[["request_id", "received_at", "webhook_id", "outcome", "model_status",
                                    "recorded_status"]]
            _print_frame(head.itertuples(index=False, name=None), list(head.columns))
        else:
            stdout.print("Production's recorded answers agree with the model everywhere they were captured.")
        if out_file is not None:
            _write_frame(frame, out_file)


@cli.command("wait-times")
@click.argument("dataset", type=click.Path(path_type=Path))
@_out_option("The Kaplan-Meier table: webhook_id, t_s, at_risk, events, captured, ci_low, ci_high.", required=True)
@_end_option
def wait_times_command(dataset: Path, out_file: Path, observation_end: datetime | None) -> None:
    """Time to first callback per webhook, Kaplan-Meier (leads still waiting count as censored)."""
    with user_errors():
        con, _ = _replayed(dataset, observation_end)
        curve = capture_curve(con)
        summary = wait_summary(con)
        shown = summary.copy()
        shown["captured_by_end"] = shown["captured_by_end"].map(_percent)
        for column in ("km_p50_s", "km_p90_s", "observed_p50_s", "observed_p90_s", "observed_p99_s"):
            shown[column] = shown[column].map(_seconds)
        shown = shown.rename(columns={"observed_p50_s": "observed_p50_s*", "observed_p90_s": "observed_p90_s*",
                                      "observed_p99_s": "observed_p99_s*"})
        _print_frame(shown.itertuples(index=False, name=None), list(shown.columns),
                     title="Time to first callback (Kaplan-Meier)")
        stdout.print("* plain percentiles over answered leads only: biased low, they ignore leads still waiting.")
        _write_frame(curve[list(CURVE_COLUMNS)], out_file)


@cli.command("timeouts")
@click.argument("dataset", type=click.Path(path_type=Path))
@_out_option("One row per waiting webhook and candidate timeout.", required=True)
@click.option("--candidates", default=",".join(f"{c:g}" for c in DEFAULT_CANDIDATES), show_default=True,
              help="Candidate timeouts in seconds, comma-separated.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
              help="Recommend the smallest timeout by which this share of the leads that ever get a callback "
                   "have had their first one (Kaplan-Meier).")
@_end_option
def timeouts_command(dataset: Path, out_file: Path, candidates: str, target: float,
                     observation_end: datetime | None) -> None:
    """What each candidate timeout would have done, per webhook that waits, and a recommendation."""
    try:
        values = [float(c) for c in candidates.split(",") if c.strip()]
        if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{candidates!r}: write positive seconds separated by commas, e.g. 5,30,300",
                                 param_hint="'--candidates'") from None
    with user_errors():
        con, loaded = _replayed(dataset, observation_end)
        frame = timeout_whatifs(con, loaded.webhooks, values, target)
        chosen = frame[frame.recommended][["webhook_id", "current_timeout_s", "timeout_s", "capture_rate",
                                           "mean_block_s"]]
        rows = []
        for webhook_id in frame.webhook_id.unique():
            pick = chosen[chosen.webhook_id == webhook_id]
            current = frame[frame.webhook_id == webhook_id].current_timeout_s.iloc[0]
            if len(pick):
                row = pick.iloc[0]
                rows.append((webhook_id, _seconds(current), _seconds(row.timeout_s), _percent(row.capture_rate),
                             _seconds(row.mean_block_s)))
            else:
                rows.append((webhook_id, _seconds(current), "none reaches the target", "", ""))
        _print_frame(rows, ["webhook_id", "current", "recommended", "capture_rate", "mean_block"],
                     title=f"Recommended timeouts (target {target:.0%} of the answers that come)")
        blocked = blocking_webhooks(con)
        for row in blocked.itertuples(index=False):
            stdout.print(f"warning: {row.webhook_id} waits without a timeout and {row.never_answered:,} of "
                         f"{row.leads:,} leads never got an answer: the ping tree is blocked for them "
                         f"(longest {_seconds(row.longest_block_s)}). Set a timeout.", highlight=False)
        _write_frame(frame, out_file)


@cli.command("pairing")
@click.argument("dataset", type=click.Path(path_type=Path))
@_out_option("Validation table; discovery and near-misses go beside it as STEM.discovered.EXT and "
             "STEM.near_misses.EXT.", required=True)
@_end_option
def pairing_command(dataset: Path, out_file: Path, observation_end: datetime | None) -> None:
    """Check Lead ID pairing: where each identifier is found, where else it hides, and near-misses."""
    with user_errors():
        con, loaded = _replayed(dataset, observation_end)
        validation = pairing_validation(con, loaded.webhooks)
        found = discover_locations(con, loaded.webhooks)
        misses = near_misses(con, loaded.webhooks)
        shown = validation[(validation.present > 0) | (validation.source == "pairing")].copy()
        shown["precision"] = shown["precision"].map(_percent)
        _print_frame(shown.itertuples(index=False, name=None), list(shown.columns),
                     title="Locations read by the replay (standard names shown only where present)")
        flagged = found[found.unmapped]
        for row in flagged.itertuples(index=False):
            stdout.print(f"proposal: {row.webhook_id} carries {row.identifier} in {row.location} "
                         f"({row.support:,} callbacks, precision {_percent(row.precision)}), which no pairing "
                         "rule reads", highlight=False)
        rescued = misses[misses.rescued > 0]
        if len(rescued):
            _print_frame(rescued.itertuples(index=False, name=None), list(rescued.columns),
                         title="Near-misses: 404s a normalisation would rescue (not applied to the replay)")
        _write_frame(validation, out_file)
        suffix = out_file.suffix
        _write_frame(found, out_file.with_name(f"{out_file.stem}.discovered{suffix}"))
        _write_frame(misses, out_file.with_name(f"{out_file.stem}.near_misses{suffix}"))


@cli.command("timeline")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("lead")
@_out_option("Also write the events here.")
@_end_option
def timeline_command(dataset: Path, lead: str, out_file: Path | None, observation_end: datetime | None) -> None:
    """One lead's waiting webhook, deadline and every callback resolved to it (LEAD: lead or conversion ID)."""
    with user_errors():
        con, _ = _replayed(dataset, observation_end)
        frame = lead_timeline(con, lead)
        shown = frame[["time", "event", "outcome", "status_code", "recorded_status", "request_id", "method",
                       "url", "body", "detail"]]
        _print_frame(shown.itertuples(index=False, name=None), list(shown.columns), title=f"Lead {lead}")
        if out_file is not None:
            _write_frame(frame, out_file)


def _percent(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.1%}"


def _seconds(value: Any) -> str:
    if value is None or pd.isna(value):
        return ""
    value = float(value)
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


@cli.command("report")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for one HTML page per notebook and index.html.")
def report_command(dataset: Path, out_dir: Path) -> None:
    """Run every notebook on DATASET and write a self-contained HTML report (charts work offline)."""
    from webhook_core.report import build_report  # papermill and nbconvert take seconds to import

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with user_errors(), Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("notebooks", total=None)

        def advance(name: str, index: int, total: int) -> None:
            progress.update(task, description=f"Running {name}", completed=index, total=total)
            if not stderr.is_terminal:
                stderr.print(f"[{index + 1}/{total}] {name}" if index < total else "writing index.html",
                             highlight=False)

        pages = build_report(dataset, out_dir, progress=advance)
    for page in pages:
        stdout.print(f"wrote {page.html}", highlight=False)
    stdout.print(f"open {out_dir / 'index.html'}", highlight=False)


@cli.command("generate")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--leads", type=click.IntRange(min=1), default=3000, show_default=True, help="How many leads.")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same bytes.")
def generate_command(folder: Path, leads: int, seed: int) -> None:
    """Write a realistic synthetic dataset to FOLDER (advertiser profiles in data/README.md)."""
    with user_errors(), stderr.status(f"Generating {leads:,} leads…"):
        made = generate(folder, leads=leads, seed=seed)
    stdout.print(f"wrote {made.path}: {made.leads:,} leads, {made.callbacks:,} callbacks, "
                 f"{made.garbage_lines:,} unparseable capture lines", highlight=False)


def _load_with_progress(con: duckdb.DuckDBPyConnection, dataset: Path, *, keep_requests: bool = True) -> Dataset:
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
                            required=("dispatches", "callbacks"))


def _print_load_report(loaded: Dataset) -> None:
    for report in loaded.files:
        line = (f"{report.path}: read {report.read:,} = loaded {report.loaded:,} "
                f"+ quarantined {report.quarantined:,}")
        stdout.print(line, highlight=False)


def _print_outcomes(frame: Any) -> None:
    columns = ["webhook_id", "callbacks", *[o.value for o in Outcome]]
    _print_frame(frame[columns].itertuples(index=False, name=None), columns, title="Outcomes per webhook")


def _print_frame(rows: Any, columns: list[str], title: str | None = None) -> None:
    rows = list(rows)
    table = Table(title=title, title_justify="left", header_style="bold")
    for index, name in enumerate(columns):
        values = [row[index] for row in rows if row[index] is not None and not isinstance(row[index], str)]
        numeric = bool(values) and all(isinstance(v, (int, float)) for v in values)
        table.add_column(name, justify="right" if numeric or _looks_numeric(rows, index) else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    stdout.print(table)


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


def _export(con: duckdb.DuckDBPyConnection, query: str, path: Path, file_format: str,
            parquet_version: int = 2) -> Path:
    """``query``'s rows into ``path``; Parquet version 2 (delta encodings) is written faster and is
    smaller than version 1 (docs/benchmarks.md)."""
    options = (f"FORMAT parquet, PARQUET_VERSION V{parquet_version}" if file_format == "parquet"
               else "FORMAT csv, HEADER true")
    con.execute(f"COPY ({query}) TO {quote_literal(str(path))} ({options})")
    return path


cli.add_command(serve_command)
cli.add_command(replay_http_command)


def main() -> None:
    cli(prog_name="webhook-audit")


if __name__ == "__main__":
    main()
