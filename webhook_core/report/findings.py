"""What a report says in words: the per-advertiser KPI table with its red flags, and each page's two or
three findings, every number computed from the audit (docs/analysis.md, "Report: KPIs and findings").

A finding is a sentence a reader can check against the page's tables; none is written when its
figures are empty (no webhook that waits, no answer yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from webhook_core.analysis.pairing import discover_locations, near_misses
from webhook_core.analysis.rates import lead_headline, rates
from webhook_core.analysis.timeouts import timeout_advice
from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import DISPATCH_QUARANTINE, LOAD_REPORT
from webhook_core.timeutil import human_duration

__all__ = ["FLAGS", "PAGE_FINDINGS", "Flag", "advertiser_kpis", "findings"]


@dataclass(frozen=True, slots=True)
class Flag:
    """A KPI's red flag: ``column`` compared with ``limit`` (``above``: a larger value is worse)."""

    column: str
    limit: float
    above: bool
    words: str

    def raised(self, value: float | None) -> bool:
        if value is None or pd.isna(value):
            return False
        return value > self.limit if self.above else value < self.limit


#: When a KPI turns red. Chosen for an advertiser-facing review, not fitted: change them to taste.
FLAGS = (
    Flag("answer_rate", 0.90, above=False, words="fewer than 90 % of leads answered in time"),
    Flag("timed_out_share", 0.05, above=True, words="more than 5 % of leads timed out"),
    Flag("misrouted", 0.0, above=True, words="any callback sent to the wrong webhook"),
    Flag("quarantined", 0.0, above=True, words="any dispatch or flagged callback lost to the quarantine"),
    Flag("disagreement_rate", 0.01, above=True, words="production answered differently from the model on more "
                                                      "than 1 % of recorded answers"),
)


def advertiser_kpis(audit: Audit) -> pd.DataFrame:
    """Per advertiser (and an ``(all)`` row): ``leads, answer_rate, timed_out_share, misrouted`` (callbacks sent
    to another webhook than their lead's, either side), ``quarantined`` (dispatches quarantined, plus callbacks
    flagged ``lead_quarantined``), ``disagreement_rate`` (recorded answers production gave otherwise), and one
    boolean ``flag_<column>`` per :data:`FLAGS`."""
    leads = lead_headline(audit, by="advertiser_id").set_index("advertiser_id")
    callbacks = rates(audit, by="advertiser_id").set_index("advertiser_id")
    lost = audit.con.execute(f"""
        SELECT coalesce(advertiser_id, '(unknown)'), count(*) FROM {DISPATCH_QUARANTINE} GROUP BY ALL
    """).fetchall()
    dispatches_lost = pd.Series(dict(lost), dtype="int64")
    frame = pd.DataFrame({
        "leads": leads["leads"],
        "answer_rate": leads["answer_rate"],
        "timed_out_share": leads["timed_out"] / leads["leads"].where(leads["leads"] > 0),
        "misrouted": callbacks["misrouted_out"].reindex(leads.index).fillna(0)
        + callbacks["misrouted_in"].reindex(leads.index).fillna(0),
        "quarantined": callbacks["lead_quarantined"].reindex(leads.index).fillna(0)
        + dispatches_lost.reindex(leads.index).fillna(0),
        "disagreement_rate": callbacks["disagree"].reindex(leads.index)
        / callbacks["recorded"].reindex(leads.index).where(lambda n: n > 0),
    })
    frame.loc["(all)", "quarantined"] = frame.drop(index="(all)")["quarantined"].sum()
    frame.loc["(all)", "misrouted"] = callbacks.loc["(all)", "misrouted_out"] if "(all)" in callbacks.index else 0
    for flag in FLAGS:
        frame[f"flag_{flag.column}"] = frame[flag.column].map(flag.raised)
    # Unknown tokens have callbacks and no leads: not an advertiser.
    frame = frame.drop(index="(unknown)", errors="ignore")
    frame[["misrouted", "quarantined"]] = frame[["misrouted", "quarantined"]].astype("int64")
    return frame.reset_index(names="advertiser_id")


def _load_findings(audit: Audit) -> list[str]:
    files = audit.con.execute(f"SELECT source_file, read, loaded, quarantined FROM {LOAD_REPORT} "
                              "ORDER BY table_name DESC").fetchall()
    said = ["; ".join(f"{path}: {loaded:,} of {read:,} rows loaded"
                      + (f", {quarantined:,} quarantined" if quarantined else "")
                      for path, read, loaded, quarantined in files) + "."]
    headline = lead_headline(audit).set_index("webhook_id")
    if "(all)" in headline.index and headline.loc["(all)", "leads"]:
        total = headline.loc["(all)"]
        said.append(f"Of {int(total['leads']):,} leads, {total['answer_rate']:.1%} were answered in time, "
                    f"{int(total['timed_out']):,} timed out and {int(total['waiting']):,} are still waiting.")
    return said


def _rates_findings(audit: Audit) -> list[str]:
    headline = lead_headline(audit)
    webhooks = headline[(headline["webhook_id"] != "(all)") & (headline["leads"] > 0)]
    said = []
    if len(webhooks):
        worst = webhooks.sort_values(["answer_rate", "webhook_id"]).iloc[0]
        said.append(f"{worst['webhook_id']} answers the fewest leads in time: {worst['answer_rate']:.1%} "
                    f"({int(worst['received']):,} of {int(worst['leads']):,}).")
    table = rates(audit)
    # (unknown) is every callback to a token no webhook has: all 404 by definition, said on the page.
    charged = table[~table["webhook_id"].isin(["(all)", "(unknown)"]) & (table["callbacks"] > 0)]
    if len(charged) and charged["answered_404"].sum():
        noisiest = charged.sort_values(["rate_404", "webhook_id"], ascending=[False, True]).to_dict("records")[0]
        reasons = {c.removeprefix("404_"): int(noisiest[c]) for c in table.columns if c.startswith("404_")}
        reason, count = max(reasons.items(), key=lambda item: (item[1], item[0]))
        said.append(f"{noisiest['webhook_id']} has the highest 404 rate, {noisiest['rate_404']:.1%} of its "
                    f"callbacks; the commonest reason is {reason} ({count:,}).")
    misrouted = table[(table["webhook_id"] != "(all)") & (table["misrouted_in"] > 0)]
    for row in misrouted.sort_values("misrouted_in", ascending=False).to_dict("records")[:1]:
        said.append(f"{int(row['misrouted_in']):,} callbacks naming {row['webhook_id']}'s leads were sent to "
                    "another webhook's URL (wrong_webhook).")
    return said


def _timeout_findings(audit: Audit) -> list[str]:
    advice = timeout_advice(audit)
    advice = advice[advice["answered"] > 0]
    if advice.empty:
        return []
    worst = advice.sort_values(["current_capture_rate", "webhook_id"]).to_dict("records")[0]
    current = ("no timeout" if pd.isna(worst["current_timeout_s"])
               else f"current {_timeout(worst['current_timeout_s'])} timeout")
    said = [f"{worst['webhook_id']}'s {current} keeps {worst['current_capture_rate']:.1%} of the answers that "
            f"finish a wait; {_timeout(worst['recommended_timeout_s'])} would keep "
            f"{worst['recommended_capture_rate']:.1%}."]
    for row in advice[advice["current_timeout_s"].isna()].to_dict("records")[:1]:
        said.append(f"{row['webhook_id']} waits without a timeout: the ping tree waits "
                    f"{human_duration(float(row['mean_block_s_current']))} per lead on average; a "
                    f"{_timeout(row['recommended_timeout_s'])} timeout would cut that to "
                    f"{human_duration(float(row['mean_block_s_recommended']))}.")
    return said


def _timeout(seconds: float) -> str:
    """A timeout as configured, in whole seconds (``60 s``), with its length in words past two minutes."""
    text = f"{float(seconds):,.0f} s"
    return text if seconds < 120 else f"{text} ({human_duration(float(seconds))})"


def _pairing_findings(audit: Audit) -> list[str]:
    said = []
    found = discover_locations(audit)
    for row in found[found["unmapped"]].itertuples(index=False):
        said.append(f"{row.webhook_id} sends its {row.identifier} in {row.location} ({row.support:,} callbacks), "
                    "which no pairing rule reads: map it with Lead ID pairing.")
        break
    misses = near_misses(audit)
    rescued = misses[misses["rescued"] > 0].sort_values(["rescued", "webhook_id"], ascending=[False, True])
    if len(rescued):
        best = rescued.to_dict("records")[0]
        said.append(f"{int(best['rescued']):,} of {best['webhook_id']}'s 404s would pair after {best['transform']} "
                    "(not applied to the figures).")
    return said


#: Each report page's findings, by notebook name.
PAGE_FINDINGS: dict[str, Callable[[Audit], list[str]]] = {
    "01_load_and_replay": _load_findings,
    "02_match_and_404_rates": _rates_findings,
    "03_wait_times_and_timeouts": _timeout_findings,
    "04_pairing_keys": _pairing_findings,
}


def findings(audit: Audit, page: str) -> list[str]:
    """The page's findings (at most three), in words, from ``audit``."""
    return [sentence for sentence in PAGE_FINDINGS[page](audit) if sentence][:3]
