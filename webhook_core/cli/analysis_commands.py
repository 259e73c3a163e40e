"""``summary``, ``wait-times``, ``timeouts``, ``pairing``, ``timeline``: the analysis API's figures as tables."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import click

from webhook_core.analysis.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.analysis.rates import disagreements, rates
from webhook_core.analysis.survival import CURVE_COLUMNS, capture_curve, wait_summary
from webhook_core.analysis.timeline import lead_timeline
from webhook_core.analysis.timeouts import DEFAULT_CANDIDATES, blocking_webhooks, timeout_whatifs
from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import percent, print_table, seconds, stdout, write_frame
from webhook_core.cli.params import end_option, out_option
from webhook_core.cli.replay_commands import replayed

__all__ = ["pairing_command", "summary_command", "timeline_command", "timeouts_command", "wait_times_command"]


@click.command("summary")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(["webhook", "advertiser"]), default="webhook", show_default=True,
              help="Group by webhook or by advertiser.")
@click.option("--per-day", is_flag=True, help="One row per group and UTC day.")
@out_option("Also write the full table (every reason, every count) here.")
@end_option
def summary_command(dataset: Path, by: str, per_day: bool, out_file: Path | None,
                    observation_end: datetime | None) -> None:
    """Match rate, 404 rate and 404s by reason, lead states, and agreement with production's answers."""
    with user_errors():
        audit = replayed(dataset, observation_end)
        key = "webhook_id" if by == "webhook" else "advertiser_id"
        frame = rates(audit, by=key, per_day=per_day)  # type: ignore[arg-type]
        shown = frame.copy()
        shown["match_rate"] = shown["match_rate"].map(percent)
        shown["rate_404"] = shown["rate_404"].map(percent)
        shown["agreement_rate"] = shown["agreement_rate"].map(percent)
        reasons = [c for c in frame.columns if c.startswith("404_")]
        columns = [key, *(["day"] if per_day else []), "callbacks", "match_rate", "rate_404", *reasons,
                   "received", "timed_out", "waiting", "agreement_rate"]
        shown = shown[columns].rename(columns={c: c.removeprefix("404_") for c in reasons})
        print_table(shown.itertuples(index=False, name=None), list(shown.columns),
                     title="Callbacks (rates) and 404s by reason; leads by state")
        differ = disagreements(audit)
        if len(differ):
            stdout.print(f"{len(differ):,} callbacks where production's recorded answer differs from the model "
                         "(first 10):", highlight=False)
            head = differ.head(10)[["request_id", "received_at", "webhook_id", "outcome", "model_status",
                                    "recorded_status"]]
            print_table(head.itertuples(index=False, name=None), list(head.columns))
        else:
            stdout.print("Production's recorded answers agree with the model everywhere they were captured.")
        if out_file is not None:
            write_frame(frame, out_file)


@click.command("wait-times")
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("The Kaplan-Meier table: webhook_id, t_s, at_risk, events, captured, ci_low, ci_high.", required=True)
@end_option
def wait_times_command(dataset: Path, out_file: Path, observation_end: datetime | None) -> None:
    """Time to first callback per webhook, Kaplan-Meier (leads still waiting count as censored)."""
    with user_errors():
        audit = replayed(dataset, observation_end)
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
        write_frame(curve[list(CURVE_COLUMNS)], out_file)


@click.command("timeouts")
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("One row per waiting webhook and candidate timeout.", required=True)
@click.option("--candidates", default=",".join(f"{c:g}" for c in DEFAULT_CANDIDATES), show_default=True,
              help="Candidate timeouts in seconds, comma-separated.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
              help="Recommend the smallest timeout by which this share of the leads that ever get a callback "
                   "have had their first one (Kaplan-Meier).")
@end_option
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
        audit = replayed(dataset, observation_end)
        frame = timeout_whatifs(audit, values, target)
        chosen = frame[frame.recommended][["webhook_id", "current_timeout_s", "timeout_s", "capture_rate",
                                           "mean_block_s"]]
        rows = []
        for webhook_id in frame.webhook_id.unique():
            pick = chosen[chosen.webhook_id == webhook_id]
            current = frame[frame.webhook_id == webhook_id].current_timeout_s.iloc[0]
            if len(pick):
                row = pick.iloc[0]
                rows.append((webhook_id, seconds(current), seconds(row.timeout_s), percent(row.capture_rate),
                             seconds(row.mean_block_s)))
            else:
                rows.append((webhook_id, seconds(current), "none reaches the target", "", ""))
        print_table(rows, ["webhook_id", "current", "recommended", "capture_rate", "mean_block"],
                     title=f"Recommended timeouts (target {target:.0%} of the answers that come)")
        blocked = blocking_webhooks(audit)
        for row in blocked.itertuples(index=False):
            stdout.print(f"warning: {row.webhook_id} waits without a timeout and {row.never_answered:,} of "
                         f"{row.leads:,} leads never got an answer: the ping tree is blocked for them "
                         f"(longest {seconds(row.longest_block_s)}). Set a timeout.", highlight=False)
        write_frame(frame, out_file)


@click.command("pairing")
@click.argument("dataset", type=click.Path(path_type=Path))
@out_option("Validation table; discovery and near-misses go beside it as STEM.discovered.EXT and "
             "STEM.near_misses.EXT.", required=True)
@end_option
def pairing_command(dataset: Path, out_file: Path, observation_end: datetime | None) -> None:
    """Check Lead ID pairing: where each identifier is found, where else it hides, and near-misses."""
    with user_errors():
        audit = replayed(dataset, observation_end)
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
        write_frame(validation, out_file)
        suffix = out_file.suffix
        write_frame(found, out_file.with_name(f"{out_file.stem}.discovered{suffix}"))
        write_frame(misses, out_file.with_name(f"{out_file.stem}.near_misses{suffix}"))


@click.command("timeline")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("lead")
@out_option("Also write the events here.")
@end_option
def timeline_command(dataset: Path, lead: str, out_file: Path | None, observation_end: datetime | None) -> None:
    """One lead's waiting webhook, deadline and every callback resolved to it (LEAD: lead or conversion ID)."""
    with user_errors():
        audit = replayed(dataset, observation_end)
        frame = lead_timeline(audit, lead)
        shown = frame[["time", "event", "outcome", "status_code", "recorded_status", "request_id", "method",
                       "url", "body", "detail"]]
        print_table(shown.itertuples(index=False, name=None), list(shown.columns), title=f"Lead {lead}")
        if out_file is not None:
            write_frame(frame, out_file)
