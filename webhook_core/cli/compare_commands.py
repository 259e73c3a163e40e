"""``webhook-audit compare``: two periods side by side, per webhook or advertiser, with what got significantly
worse flagged (webhook_core.analysis.compare; docs/analysis.md, "Period comparison")."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd

from webhook_core.analysis.compare import compare, compare_split, is_wait
from webhook_core.audit.filters import Filters
from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import percent, print_table, seconds, stdout, write_frame
from webhook_core.cli.params import Timestamp, filter_options, out_option, quarantine_option, timestamp_format_option
from webhook_core.cli.replay_commands import replayed

__all__ = ["compare_command", "compare_table"]

#: The printed tables' titles (tests find the tables by them).
FLAGGED_TITLE = "Flagged: significant after Holm's correction and at least --min-change (worst regression first)"
ALL_TITLE = "Every metric, worst regression first"


@click.command("compare")
@click.argument("before", type=click.Path(path_type=Path))
@click.argument("after", type=click.Path(path_type=Path), required=False)
@click.option("--split-at", type=Timestamp(), default=None, metavar="TS",
              help="Compare one DATASET with itself: leads created and callbacks received before TS against "
                   "those at or after it (instead of AFTER).")
@click.option("--by", type=click.Choice(["webhook", "advertiser"]), default="webhook", show_default=True,
              help="Compare per webhook or per advertiser.")
@click.option("--min-change", type=click.FloatRange(0, 100), default=5.0, show_default=True, metavar="POINTS",
              help="Flag only changes of at least this many percentage points (finishing waits: this many "
                   "percent of the value before).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level, after Holm's correction across every test of the run.")
@out_option("Also write every row and column here:")
@quarantine_option
@timestamp_format_option
@filter_options
def compare_command(before: Path, after: Path | None, split_at: datetime | None, by: str, min_change: float,
                    alpha: float, out_file: Path | None, max_quarantined: float, timestamp_format: str | None,
                    filters: Filters) -> None:
    """Compare BEFORE with AFTER (each a dataset folder or an audit database), or one DATASET cut at
    --split-at: per webhook or advertiser, answer, match and 404 rates (by reason), the finishing wait's median
    and p90 and the current timeout's capture rate, before and after, with the change, its 95 % interval and a
    p-value. The filters apply to both sides."""
    if after is None and split_at is None:
        raise click.ClickException(f"{before}: nothing to compare it with; give AFTER (a second dataset or audit "
                                   "database) or --split-at TS to cut this one in two")
    if after is not None and split_at is not None:
        raise click.ClickException(f"{after}: --split-at cuts one dataset in two; give AFTER or --split-at, "
                                   "not both")
    key = "webhook_id" if by == "webhook" else "advertiser_id"
    with user_errors():
        if split_at is not None:
            audit = replayed(before, None, max_quarantined, timestamp_format)
            frame = compare_split(audit, split_at, by=key, filters=filters,  # type: ignore[arg-type]
                                  min_change=min_change / 100, alpha=alpha)
            only = f", only {filters.describe()}" if filters else ""
            stdout.print(f"Comparing {before} before {split_at.isoformat()} with at or after it{only}",
                         highlight=False)
        elif after is not None:
            first = replayed(before, None, max_quarantined, timestamp_format, filters)
            second = replayed(after, None, max_quarantined, timestamp_format, filters)
            frame = compare(first, second, by=key, min_change=min_change / 100, alpha=alpha)  # type: ignore[arg-type]
            stdout.print(f"Comparing {before} (before) with {after} (after)", highlight=False)
        _print(frame, key, min_change, alpha)
        if out_file is not None:
            write_frame(frame, out_file)


def _print(frame: pd.DataFrame, key: str, min_change: float, alpha: float) -> None:
    tests = int(frame.attrs.get("tests", 0))
    stdout.print(f"{tests:,} tests; flagged: p < {alpha:g} after Holm's correction across all of them, and a change\n"
                 f"of at least {min_change:g} percentage points (finishing waits: {min_change:g} % of the value "
                 "before).\nShares in %, changes in percentage points (pp).", highlight=False)
    flagged = frame[frame["flagged"]]
    if flagged.empty:
        stdout.print("Nothing flagged: no change is both significant and that large.", highlight=False)
    else:
        shown = compare_table(flagged, key)
        shown.insert(len(shown.columns), "direction", ["worse" if w else "better" for w in flagged["worse"]])
        print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=FLAGGED_TITLE, keys=2)
    # A 404 reason that is 0 on both sides says nothing; it stays in --out.
    silent = (frame["before"] == 0) & (frame["after"] == 0)
    rest = frame[~silent]
    shown = compare_table(rest, key)
    shown["p Holm"] = [f"{p} *" if flag else p for p, flag in zip(shown["p Holm"], rest["flagged"], strict=True)]
    print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=ALL_TITLE, keys=2)
    stdout.print("* flagged." + (f" Not shown: {int(silent.sum()):,} rates that are 0 on both sides."
                                 if silent.any() else ""), highlight=False)


def compare_table(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The comparison as printed: shares in %, changes in percentage points, waits in human units and the p-value
    after Holm's correction."""
    rows: list[dict[str, Any]] = []
    for row in frame.to_dict("records"):
        wait = is_wait(row["metric"])
        value = seconds if wait else percent
        change = _signed_seconds(row["change"]) if wait else _points(row["change"])
        interval = "" if wait or pd.isna(row["ci_low"]) else \
            f"{row['ci_low'] * 100:+.1f}, {row['ci_high'] * 100:+.1f}"
        rows.append({key: row[key], "metric": row["metric"], "before": value(row["before"]),
                     "after": value(row["after"]), "change": change, "95% CI (pp)": interval,
                     "p Holm": _p(row["p_holm"])})
    return pd.DataFrame(rows, columns=[key, "metric", "before", "after", "change", "95% CI (pp)", "p Holm"])


def _points(value: Any) -> str:
    return "" if pd.isna(value) else f"{value * 100:+.1f} pp"


def _signed_seconds(value: Any) -> str:
    if pd.isna(value):
        return ""
    return ("-" if value < 0 else "+") + seconds(abs(value))


def _p(value: Any) -> str:
    if pd.isna(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"
