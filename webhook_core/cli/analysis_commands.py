"""``summary``, ``wait-times``, ``timeouts``, ``pairing``, ``timeline``: the analysis API's figures as tables."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd

from webhook_core.analysis.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.analysis.rates import disagreements, lead_headline, rates
from webhook_core.analysis.survival import CURVE_COLUMNS, capture_curve, wait_summary
from webhook_core.analysis.timeline import lead_timeline
from webhook_core.analysis.timeouts import blocking_webhooks, timeout_advice, timeout_whatifs
from webhook_core.audit.filters import Filters
from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import percent, print_table, seconds, stdout, write_frame, write_json
from webhook_core.cli.params import (
    candidates_option,
    end_option,
    filter_options,
    out_option,
    quarantine_option,
    target_option,
    timestamp_format_option,
)
from webhook_core.cli.replay_commands import replayed
from webhook_core.timeutil import human_duration

__all__ = ["pairing_command", "summary_command", "timeline_command", "timeouts_command", "wait_times_command"]


@click.command("summary")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(["webhook", "advertiser"]), default="webhook", show_default=True,
              help="Group by webhook or by advertiser.")
@click.option("--per-day", is_flag=True, help="Callback tables: one row per group and UTC day.")
@out_option("Also write the full callback table (every reason, every count) here, and the per-lead "
            "headline beside it as STEM.leads.EXT.")
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def summary_command(dataset: Path, by: str, per_day: bool, out_file: Path | None,
                    observation_end: datetime | None,
                    max_quarantined: float, timestamp_format: str | None, filters: Filters) -> None:
    """Per lead: answered in time, timed out, still waiting, never called back. Then per callback: match,
    interim and 404 rates, 404s by reason, and agreement with production's answers."""
    with user_errors():
        audit = replayed(dataset, observation_end, max_quarantined, timestamp_format, filters)
        key = "webhook_id" if by == "webhook" else "advertiser_id"
        headline = lead_headline(audit, by=key)  # type: ignore[arg-type]
        frame = rates(audit, by=key, per_day=per_day)  # type: ignore[arg-type]
        _print_headline(headline, key)
        _print_callbacks(frame, [key, *(["day"] if per_day else [])])
        _print_attribution(frame, key)
        _print_lead_quarantined(frame, key)
        differ = disagreements(audit)
        if len(differ):
            stdout.print(f"{len(differ):,} callbacks where production's recorded answer differs from the model "
                         "(first 10):", highlight=False)
            head = differ.head(10)[["request_id", "received_at", "webhook_id", "outcome", "model_status",
                                    "recorded_status"]]
            # To the second: the request ID names the callback, and the table fits a 120-column terminal.
            head = head.assign(received_at=head["received_at"].dt.strftime("%Y-%m-%d %H:%M:%S")).rename(
                columns={"received_at": "received (UTC)"})
            print_table(head.itertuples(index=False, name=None), list(head.columns))
        else:
            stdout.print("Production's recorded answers agree with the model everywhere they were captured.")
        if out_file is not None:
            leads_file = out_file.with_name(f"{out_file.stem}.leads{out_file.suffix}")
            # The full table first: write_frame refuses a wrong --out extension before anything is written.
            write_frame(frame, out_file, announce=False)
            write_frame(headline, leads_file, announce=False)
            stdout.print(f"wrote {leads_file}\nwrote {out_file}", highlight=False)


#: The summary's table titles (tests find the tables by them).
HEADLINE_TITLE = "Leads: answered in time, timed out, still waiting, never called back"
CALLBACKS_TITLE = "Callbacks: matched, interim and answered 404 (shares adding up to 100 %); agreement with production"
REASONS_TITLE = "404s by reason (callbacks)"
ATTRIBUTION_TITLE = "Both sides: misrouted callbacks (wrong_webhook) and calls to a webhook's token while not live"
ATTRIBUTION_LEGEND = (
    "misrouted_out: wrong_webhook callbacks to this row's webhooks naming another's lead (its 404s)",
    "misrouted_in: wrong_webhook callbacks to another webhook naming this row's leads (its 404s)",
    "token_not_live: unknown_token callbacks to this row's webhooks while none was live (this row's 404s)",
)


def _print_headline(headline: pd.DataFrame, key: str) -> None:
    # Only what fits a 120-column terminal: the callback counts are the next table's, the rest is in --out.
    shown = headline[[key, "leads", "received", "timed_out", "waiting", "never_called_back", "answer_rate",
                      "404s_per_lead"]].copy()
    shown["answer_rate"] = shown["answer_rate"].map(percent)
    shown["404s_per_lead"] = shown["404s_per_lead"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=HEADLINE_TITLE)


def _print_callbacks(frame: pd.DataFrame, keys: list[str]) -> None:
    if "day" in keys:
        frame = frame.assign(day=pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d"))
    shown = frame.assign(interim_rate=frame["interim"] / frame["callbacks"].where(frame["callbacks"] > 0))
    for column in ("match_rate", "interim_rate", "rate_404", "agreement_rate"):
        shown[column] = shown[column].map(percent)
    shown = shown[[*keys, "callbacks", "match_rate", "interim_rate", "rate_404", "agreement_rate"]]
    print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=CALLBACKS_TITLE)
    reasons = frame[[*keys, *(c for c in frame.columns if c.startswith("404_"))]]
    reasons = reasons.rename(columns=lambda c: c.removeprefix("404_"))
    print_table(reasons.itertuples(index=False, name=None), list(reasons.columns), title=REASONS_TITLE)


def _print_attribution(frame: pd.DataFrame, key: str) -> None:
    """Only the groups concerned, over the whole observation (summed over days with --per-day)."""
    columns = ["misrouted_out", "misrouted_in", "token_not_live"]
    groups = frame[frame[key] != "(all)"].groupby(key, as_index=False)[columns].sum()
    concerned = groups[groups[columns].sum(axis=1) > 0]
    if concerned.empty:
        return
    total = pd.DataFrame([{key: "(all)", **{c: int(groups[c].sum()) for c in columns}}])
    shown = pd.concat([concerned, total], ignore_index=True)
    print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=ATTRIBUTION_TITLE)
    for line in ATTRIBUTION_LEGEND:
        stdout.print(line, highlight=False)


def _print_lead_quarantined(frame: pd.DataFrame, key: str) -> None:
    """The not_found 404s that are the load's doing, not the advertiser's: counted apart, by group."""
    flagged = frame[(frame[key] != "(all)") & (frame["lead_quarantined"] > 0)]
    groups = flagged.groupby(key, as_index=False).agg(lead_quarantined=("lead_quarantined", "sum"))
    for row in groups.itertuples(index=False):
        stdout.print(f"{getattr(row, key)}: {row.lead_quarantined:,} not_found callbacks name a dispatch the load "
                     "quarantined (flagged lead_quarantined): fix those rows before blaming the advertiser",
                     highlight=False)

@click.command("wait-times")
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("Also write the Kaplan-Meier table: webhook_id, t_s, at_risk, events, captured, ci_low, ci_high.")
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def wait_times_command(dataset: Path, out_file: Path | None, observation_end: datetime | None,
                       max_quarantined: float, timestamp_format: str | None, filters: Filters) -> None:
    """Time to first callback per webhook, Kaplan-Meier (leads still waiting count as censored)."""
    with user_errors():
        audit = replayed(dataset, observation_end, max_quarantined, timestamp_format, filters)
        curve = capture_curve(audit)
        summary = wait_summary(audit)
        shown = summary.copy()
        shown["captured_by_end"] = shown["captured_by_end"].map(percent)
        for column in ("km_p50_s", "km_p90_s", "observed_p50_s", "observed_p90_s", "observed_p99_s"):
            shown[column] = shown[column].map(seconds)
        shown = shown.rename(columns={"observed_p50_s": "observed_p50_s*", "observed_p90_s": "observed_p90_s*",
                                      "observed_p99_s": "observed_p99_s*"})
        print_table(shown.itertuples(index=False, name=None), list(shown.columns),
                     title="Time to first callback (Kaplan-Meier)")
        stdout.print("* plain percentiles over answered leads only: biased low, they ignore leads still waiting.")
        if out_file is not None:
            write_frame(curve[list(CURVE_COLUMNS)], out_file)


@click.command("timeouts")
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("Also write one row per waiting webhook and candidate timeout; the advice goes beside it as "
            "STEM.advice.EXT.")
@candidates_option
@target_option
@click.option("--max-timeout", "max_timeout", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Recommend no timeout longer than this many whole seconds; the advice then says what the cap "
                   "keeps.")
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def timeouts_command(dataset: Path, out_file: Path | None, candidates: tuple[float, ...], target: float,
                     max_timeout: int | None,
                     observation_end: datetime | None,
                     max_quarantined: float, timestamp_format: str | None, filters: Filters) -> None:
    """What each candidate timeout would have done, per webhook that waits, and the timeout that keeps a target
    share of the answers that finish a wait."""
    with user_errors():
        audit = replayed(dataset, observation_end, max_quarantined, timestamp_format, filters)
        frame = timeout_whatifs(audit, candidates)
        advice = timeout_advice(audit, target, max_timeout)
        _print_advice(advice, target)
        blocked = blocking_webhooks(audit)
        for row in blocked.itertuples(index=False):
            stdout.print(f"warning: {row.webhook_id} waits without a timeout and {row.never_answered:,} of "
                         f"{row.leads:,} leads never got an answer: the ping tree is blocked for them "
                         f"(longest {seconds(row.longest_block_s)}). Set a timeout.", highlight=False)
        if out_file is not None:
            write_frame(frame, out_file)
            write_frame(advice, out_file.with_name(f"{out_file.stem}.advice{out_file.suffix}"))


#: The advice table's title (tests find the table by it).
ADVICE_TITLE = "Timeout advice: the smallest whole second that keeps the target share of the answers that finish a wait"


def _print_advice(advice: pd.DataFrame, target: float) -> None:
    def timeout(value: Any) -> str:  # a setting to copy: exact seconds, not seconds()'s rounded minutes
        return f"{float(value):,g} s"

    rows = []
    for row in advice.itertuples(index=False):
        current = "no timeout" if pd.isna(row.current_timeout_s) else timeout(row.current_timeout_s)
        recommended = "no answer yet" if pd.isna(row.recommended_timeout_s) else timeout(row.recommended_timeout_s)
        rows.append((row.webhook_id, row.leads, row.answered, current, percent(row.current_capture_rate),
                     seconds(row.mean_block_s_current), recommended + (" (cap)" if row.capped else ""),
                     percent(row.recommended_capture_rate), seconds(row.mean_block_s_recommended)))
    print_table(rows, ["webhook_id", "leads", "answered", "current", "current_keeps", "current_mean_block",
                       "recommended", "recommended_keeps", "recommended_mean_block"],
                title=f"{ADVICE_TITLE} (target {target * 100:g}%)")
    stdout.print("answered: leads a callback finishes with no timeout; keeps: the share of them a timeout keeps; "
                 "mean_block: how long the ping tree waits per lead, on average.", highlight=False)
    for row in advice[advice.capped].itertuples(index=False):
        stdout.print(f"{row.webhook_id}: --max-timeout {timeout(row.recommended_timeout_s)} keeps "
                     f"{percent(row.recommended_capture_rate)} of the answers that finish a wait, short of the "
                     f"target {target * 100:g}%.", highlight=False)


@click.command("pairing")
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("Also write the validation table; discovery and near-misses go beside it as STEM.discovered.EXT "
            "and STEM.near_misses.EXT.")
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def pairing_command(dataset: Path, out_file: Path | None, observation_end: datetime | None,
                    max_quarantined: float, timestamp_format: str | None, filters: Filters) -> None:
    """Check Lead ID pairing: where each identifier is found, where else it hides, and near-misses."""
    with user_errors():
        audit = replayed(dataset, observation_end, max_quarantined, timestamp_format, filters)
        validation = pairing_validation(audit)
        found = discover_locations(audit)
        misses = near_misses(audit)
        shown = validation[(validation.present > 0) | (validation.source == "pairing")].copy()
        shown["precision"] = shown["precision"].map(percent)
        print_table(shown.itertuples(index=False, name=None), list(shown.columns),
                     title="Locations read by the replay (standard names shown only where present)")
        flagged = found[found.unmapped]
        for row in flagged.itertuples(index=False):
            stdout.print(f"proposal: {row.webhook_id} carries {row.identifier} in {row.location} "
                         f"({row.support:,} callbacks, precision {percent(row.precision)}), which no pairing "
                         "rule reads", highlight=False)
        rescued = misses[misses.rescued > 0]
        if len(rescued):
            print_table(rescued.itertuples(index=False, name=None), list(rescued.columns),
                         title="Near-misses: 404s a normalisation would rescue (not applied to the replay)")
        if out_file is not None:
            write_frame(validation, out_file)
            suffix = out_file.suffix
            write_frame(found, out_file.with_name(f"{out_file.stem}.discovered{suffix}"))
            write_frame(misses, out_file.with_name(f"{out_file.stem}.near_misses{suffix}"))


@click.command("timeline")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("lead")
@out_option("Also write the events (exact seconds, headers as JSON) here.", json=True)
@end_option
@quarantine_option
@timestamp_format_option
@filter_options
def timeline_command(dataset: Path, lead: str, out_file: Path | None, observation_end: datetime | None,
                     max_quarantined: float, timestamp_format: str | None, filters: Filters) -> None:
    """One lead's waiting webhook, every callback resolved to it and its state (LEAD: lead or conversion ID)."""
    with user_errors():
        audit = replayed(dataset, observation_end, max_quarantined, timestamp_format, filters)
        frame = lead_timeline(audit, lead)
        shown = frame.assign(since_created=frame.since_created_s.map(human_duration))[
            ["time", "since_created", "event", "outcome", "status_code", "recorded_status", "request_id", "method",
             "url", "body", "detail"]]
        print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=f"Lead {lead}")
        if out_file is not None and out_file.suffix == ".json":
            write_json(frame, out_file, json_columns=["headers"])
        elif out_file is not None:
            write_frame(frame, out_file)
