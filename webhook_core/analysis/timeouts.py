"""Timeout what-ifs: what each candidate timeout would have done, all candidates in one pass.

For a webhook that waits, a timeout T changes only two things in the replay
(docs/semantics.md M5, W2): which callbacks are ``late`` (after
``created_at + T``), and therefore which callback finishes each wait and which
later ones are ``duplicate``. Resolution, ``early`` and ``interim`` do not depend
on T. So the replay's resolved callbacks are crossed with the candidates and
judged again with the same window rule, per ``(candidate, lead)``: the figures
equal a separate ``replay(timeouts={webhook: T})`` for every T (tested).

Per webhook that waits and candidate ``timeout_s``:

* ``matched``, ``late``: callbacks with that outcome; ``timed_out``, ``received``:
  leads in that state at the observation end;
* ``capture_rate`` = leads received within T ÷ leads **ever answered** (received
  with no timeout at all): the share of the answers that eventually come that T keeps;
* ``mean_block_s``: mean time the ping tree waits per lead, ``min(wait, T)``, where
  ``wait`` is the time to the callback that would finish the lead with no
  timeout (infinite if none), and a lead still inside its window at the
  observation end counts the time it has waited so far;
* ``recommended``: true on the smallest candidate whose Kaplan–Meier ``captured(T)``
  (survival.py: time to the *first* callback) reaches ``target × captured`` at the
  last event time. On a webhook that sends interim statuses the first callback is
  usually an interim update, so read ``capture_rate`` (finishing callbacks) beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from webhook_core.analysis.survival import capture_curve_sql
from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, LEAD_OUTCOMES
from webhook_core.quoting import quote_literal
from webhook_core.rules.settings import WebhookSettings, WebhookVersions
from webhook_core.timeutil import seconds_to_us

__all__ = ["DEFAULT_CANDIDATES", "blocking_webhooks", "timeout_whatifs"]

DEFAULT_CANDIDATES = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


def timeout_whatifs(audit: Audit, candidates: Sequence[float] = DEFAULT_CANDIDATES,
                    target: float = 0.95) -> pd.DataFrame:
    """One row per waiting webhook and candidate, from the audit's stored outcomes (no second replay)."""
    if not candidates:
        raise ValueError("give at least one candidate timeout")
    if any(not (c > 0 and math.isfinite(c)) for c in candidates):
        raise ValueError("candidate timeouts must be positive numbers of seconds")
    if not 0 < target <= 1:
        raise ValueError("target must be in (0, 1]")
    values = ", ".join(f"({float(c)!r}, {seconds_to_us(c)})" for c in sorted(set(candidates)))
    current = ", ".join(
        f"({quote_literal(v.webhook_id)}, {v.timeout_s if v.timeout_s is not None else 'NULL'})"
        for v in _latest_versions(audit.webhooks))
    return audit.con.execute(f"""
        WITH candidates(timeout_s, timeout_us) AS (VALUES {values}),
        ends AS (SELECT max(epoch_us(observation_end)) AS end_us FROM {LEAD_OUTCOMES}),
        leads AS (SELECT "row", webhook_id, epoch_us(created_at) AS created_us FROM {LEAD_OUTCOMES} WHERE waits),
        resolved AS (
            SELECT c.ord, c.lead_row, c.us, c.is_interim, c.us < l.created_us AS is_early, l.created_us,
                   l.webhook_id
            FROM {CALLBACK_OUTCOMES} c JOIN leads l ON l."row" = c.lead_row
        ),
        crossed AS (
            SELECT r.*, k.timeout_s, r.us > r.created_us + k.timeout_us AS is_late
            FROM resolved r CROSS JOIN candidates k
        ),
        finishing AS (
            SELECT *, min(CASE WHEN NOT is_early AND NOT is_late AND NOT is_interim THEN ord END)
                          OVER (PARTITION BY timeout_s, lead_row) AS finish_ord
            FROM crossed
        ),
        judged AS (
            SELECT *, CASE WHEN is_early THEN 'early'
                           WHEN ord > finish_ord THEN 'duplicate'
                           WHEN is_late THEN 'late'
                           WHEN is_interim THEN 'interim'
                           ELSE 'matched' END AS outcome
            FROM finishing
        ),
        callback_counts AS (
            SELECT webhook_id, timeout_s,
                   count(*) FILTER (outcome = 'matched') AS matched,
                   count(*) FILTER (outcome = 'late') AS late
            FROM judged GROUP BY ALL
        ),
        finishes AS (
            SELECT timeout_s, lead_row, min(us) FILTER (outcome = 'matched') AS finish_us
            FROM judged GROUP BY ALL
        ),
        untimed AS (
            SELECT lead_row, min(us) FILTER (NOT is_early AND NOT is_interim) AS finish_us
            FROM resolved GROUP BY lead_row
        ),
        lead_states AS (
            SELECT l.webhook_id, k.timeout_s,
                   f.finish_us <= e.end_us AS received,
                   coalesce(f.finish_us <= e.end_us, false) = false
                       AND e.end_us > l.created_us + k.timeout_us AS timed_out,
                   u.finish_us <= e.end_us AS ever_answered,
                   least(coalesce(u.finish_us - l.created_us, 9223372036854775807), k.timeout_us,
                         greatest(e.end_us - l.created_us, 0)) AS block_us
            FROM leads l CROSS JOIN candidates k CROSS JOIN ends e
            LEFT JOIN finishes f ON f.lead_row = l."row" AND f.timeout_s = k.timeout_s
            LEFT JOIN untimed u ON u.lead_row = l."row"
        ),
        lead_counts AS (
            SELECT webhook_id, timeout_s, count(*) AS leads,
                   count(*) FILTER (received) AS received,
                   count(*) FILTER (timed_out) AS timed_out,
                   count(*) FILTER (ever_answered) AS ever_answered,
                   avg(block_us) / 1e6 AS mean_block_s
            FROM lead_states GROUP BY ALL
        ),
        curve AS ({capture_curve_sql()}),
        km AS (
            SELECT webhook_id, k.timeout_s,
                   coalesce(max(c.captured) FILTER (c.t_s <= k.timeout_s), 0) AS km_captured,
                   max(c.captured) AS km_captured_final
            FROM curve c CROSS JOIN candidates k GROUP BY ALL
        ),
        current(webhook_id, current_timeout_s) AS (VALUES {current}),
        combined AS (
            SELECT lc.webhook_id, lc.timeout_s, coalesce(cc.matched, 0) AS matched, coalesce(cc.late, 0) AS late,
                   lc.leads, lc.received, lc.timed_out, lc.ever_answered,
                   lc.received / nullif(lc.ever_answered, 0) AS capture_rate,
                   lc.mean_block_s,
                   coalesce(km.km_captured, 0) AS km_captured,
                   -- 1e-12: the KM product lands a hair off exact fractions.
                   coalesce(km.km_captured >= {float(target)!r} * km.km_captured_final - 1e-12, false)
                       AS reaches_target,
                   cur.current_timeout_s
            FROM lead_counts lc
            LEFT JOIN callback_counts cc USING (webhook_id, timeout_s)
            LEFT JOIN km USING (webhook_id, timeout_s)
            LEFT JOIN current cur USING (webhook_id)
        )
        SELECT *,
               coalesce(timeout_s = min(timeout_s) FILTER (reaches_target) OVER (PARTITION BY webhook_id), false)
                   AS recommended
        FROM combined
        ORDER BY webhook_id, timeout_s
    """).df()


def blocking_webhooks(audit: Audit) -> pd.DataFrame:
    """Webhooks that wait without a timeout while some leads never got an answer.

    The ping tree is blocked for each such lead; the platform warns against waiting
    without a timeout unless the advertiser always answers.
    """
    return audit.con.execute(f"""
        SELECT webhook_id, count(*) AS leads,
               count(*) FILTER (state = 'waiting' AND first_callback_s IS NULL) AS never_answered,
               max((epoch_us(observation_end) - epoch_us(created_at)) / 1e6)
                   FILTER (state = 'waiting' AND first_callback_s IS NULL) AS longest_block_s
        FROM {LEAD_OUTCOMES}
        WHERE waits AND deadline IS NULL
        GROUP BY webhook_id
        HAVING count(*) FILTER (state = 'waiting' AND first_callback_s IS NULL) > 0
        ORDER BY webhook_id
    """).df()


def _latest_versions(webhooks: WebhookVersions) -> list[WebhookSettings]:
    """Per webhook, the version that starts last (the one live now, if any), whatever the file's order."""
    latest: dict[str, WebhookSettings] = {}
    for version in sorted(webhooks.versions, key=lambda v: (v.active_from is not None, v.active_from)):
        latest[version.webhook_id] = version
    return list(latest.values())
