"""Timeout what-ifs (what each candidate timeout would have done, all candidates in one pass) and timeout
advice (the smallest whole second that keeps a target share of the answers that finish a wait).

For a webhook that waits, a timeout T changes only two things in the replay
(docs/semantics.md M5, W2): which callbacks are ``late`` (after
``created_at + T``), and therefore which callback finishes each wait and which
later ones are ``duplicate``. Resolution, ``early`` and ``interim`` do not depend
on T. Judging order is ``received_at`` first, so under T a wait finishes at the
callback that finishes it with no timeout when that came within T, and otherwise
never: a lead is ``received`` under T when its finishing wait is ``<= T``, and a
callback is ``late`` under T exactly when ``T < min(its wait, the lead's finishing
wait)``. Every candidate is then a threshold on two numbers per lead and callback,
not a judging pass of its own; the figures equal a separate
``replay(timeouts={webhook: T})`` for every T (tested).

Per webhook that waits and candidate ``timeout_s``:

* ``matched``, ``late``: callbacks with that outcome; ``timed_out``, ``received``:
  leads in that state at the observation end;
* ``capture_rate`` = leads received within T ÷ leads **ever answered** (received
  with no timeout at all): the share of the answers that eventually come that T keeps;
* ``mean_block_s``: mean time the ping tree waits per lead, ``min(wait, T)``, where
  ``wait`` is the time to the callback that would finish the lead with no
  timeout (infinite if none), and a lead still inside its window at the
  observation end counts the time it has waited so far;
* ``km_first_callback``: Kaplan–Meier share of leads with a *first* callback by T
  (survival.py), interim updates included: a description of the curve, no advice.

The advice (:func:`timeout_advice`) reads no candidate grid: per webhook that waits it
sorts the leads' *finishing waits* (survival.finishing_waits_sql: the time to the callback
that would be ``matched`` with no timeout) and takes the smallest whole second that keeps
``target`` of them, exactly; ``capture_rate`` and ``mean_block_s`` there are the what-ifs'
(tested equal at the same T).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import pandas as pd

from webhook_core.analysis.survival import capture_curve_sql, finishing_waits_sql
from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, LEAD_OUTCOMES
from webhook_core.quoting import quote_literal
from webhook_core.rules.settings import WebhookSettings, WebhookVersions
from webhook_core.timeutil import seconds_to_us

__all__ = ["ADVICE_COLUMNS", "DEFAULT_CANDIDATES", "blocking_webhooks", "timeout_advice", "timeout_whatifs"]

DEFAULT_CANDIDATES = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


ADVICE_COLUMNS = ("webhook_id", "leads", "answered", "current_timeout_s", "current_capture_rate",
                  "recommended_timeout_s", "recommended_capture_rate", "capped", "mean_block_s_current",
                  "mean_block_s_recommended")

#: Longer than any wait: ``least()``'s stand-in for "no timeout" and "never finished" (BIGINT's largest).
_FOREVER_US = 9223372036854775807


def timeout_whatifs(audit: Audit, candidates: Sequence[float] = DEFAULT_CANDIDATES) -> pd.DataFrame:
    """One row per waiting webhook and candidate, from the audit's stored outcomes (no second replay)."""
    if not candidates:
        raise ValueError("give at least one candidate timeout")
    if any(not (c > 0 and math.isfinite(c)) for c in candidates):
        raise ValueError("candidate timeouts must be positive numbers of seconds")
    values = ", ".join(f"({float(c)!r}, {seconds_to_us(c)})" for c in sorted(set(candidates)))
    current = ", ".join(
        f"({quote_literal(v.webhook_id)}, {v.timeout_s if v.timeout_s is not None else 'NULL'})"
        for v in _latest_versions(audit.webhooks))
    return audit.con.execute(f"""
        WITH candidates(timeout_s, timeout_us) AS (VALUES {values}),
        ends AS (SELECT max(epoch_us(observation_end)) AS end_us FROM {LEAD_OUTCOMES}),
        leads AS (SELECT "row", webhook_id, epoch_us(created_at) AS created_us FROM {LEAD_OUTCOMES} WHERE waits),
        resolved AS (
            SELECT c.lead_row, c.us, c.is_interim, c.us < l.created_us AS is_early, l.created_us, l.webhook_id
            FROM {CALLBACK_OUTCOMES} c JOIN leads l ON l."row" = c.lead_row
        ),
        -- The callback that finishes the wait with no timeout: judging order is received_at first.
        untimed AS (
            SELECT lead_row, min(us) FILTER (NOT is_early AND NOT is_interim) AS finish_us
            FROM resolved GROUP BY lead_row
        ),
        -- Under a timeout T a lead's wait finishes at that same callback if it came within T, else never
        -- (every later callback came later still). So a callback is late under T exactly when
        -- T < min(its wait, the lead's finishing wait): no candidate needs its own judging pass.
        late_below AS (
            SELECT r.webhook_id, least(r.us - r.created_us, coalesce(u.finish_us - r.created_us, {_FOREVER_US}))
                       AS late_below_us
            FROM resolved r LEFT JOIN untimed u USING (lead_row)
            WHERE NOT r.is_early
        ),
        finish_waits AS (
            SELECT l.webhook_id, l.created_us, u.finish_us, u.finish_us - l.created_us AS finish_wait_us
            FROM leads l LEFT JOIN untimed u ON u.lead_row = l."row"
        ),
        callback_counts AS (
            SELECT f.webhook_id, k.timeout_s, count(*) AS matched, NULL::BIGINT AS late
            FROM finish_waits f JOIN candidates k ON f.finish_wait_us <= k.timeout_us
            GROUP BY ALL
            UNION ALL
            SELECT b.webhook_id, k.timeout_s, NULL, count(*)
            FROM late_below b JOIN candidates k ON b.late_below_us > k.timeout_us
            GROUP BY ALL
        ),
        lead_states AS (
            SELECT f.webhook_id, k.timeout_s,
                   f.finish_wait_us <= k.timeout_us AND f.finish_us <= e.end_us AS received,
                   coalesce(f.finish_wait_us <= k.timeout_us AND f.finish_us <= e.end_us, false) = false
                       AND e.end_us > f.created_us + k.timeout_us AS timed_out,
                   f.finish_us <= e.end_us AS ever_answered,
                   least(coalesce(f.finish_wait_us, {_FOREVER_US}), k.timeout_us,
                         greatest(e.end_us - f.created_us, 0)) AS block_us
            FROM finish_waits f CROSS JOIN candidates k CROSS JOIN ends e
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
                   coalesce(max(c.captured) FILTER (c.t_s <= k.timeout_s), 0) AS km_first_callback
            FROM curve c CROSS JOIN candidates k GROUP BY ALL
        ),
        current(webhook_id, current_timeout_s) AS (VALUES {current})
        SELECT lc.webhook_id, lc.timeout_s, coalesce(cc.matched, 0) AS matched, coalesce(cc.late, 0) AS late,
               lc.leads, lc.received, lc.timed_out, lc.ever_answered,
               lc.received / nullif(lc.ever_answered, 0) AS capture_rate,
               lc.mean_block_s,
               coalesce(km.km_first_callback, 0) AS km_first_callback,
               cur.current_timeout_s
        FROM lead_counts lc
        LEFT JOIN (SELECT webhook_id, timeout_s, max(matched) AS matched, max(late) AS late
                   FROM callback_counts GROUP BY ALL) cc USING (webhook_id, timeout_s)
        LEFT JOIN km USING (webhook_id, timeout_s)
        LEFT JOIN current cur USING (webhook_id)
        ORDER BY webhook_id, timeout_s
    """).df()


def timeout_advice(audit: Audit, target: float = 0.95, max_timeout_s: float | None = None) -> pd.DataFrame:
    """Per webhook that waits: the current timeout and the smallest whole second that keeps ``target`` of the
    answers that finish a wait, each with what it keeps and how long the ping tree waits per lead.

    ``capture_rate(T)`` = leads whose finishing wait is ``<= T`` ÷ ``answered`` (leads that have one);
    ``recommended_timeout_s`` is the smallest whole second ``T >= 1`` with ``capture_rate(T) >= target``,
    bounded by ``max_timeout_s``, whole seconds too (``capped`` says it was: the cap is the recommendation, its
    capture rate what the cap keeps, short of the target). A webhook that waits without a timeout has no
    ``current_timeout_s``; it keeps every answer (``current_capture_rate`` 1) and waits ``min(finishing wait,
    time waited so far)``. A webhook none of whose leads was answered gets no recommendation. Columns:
    :data:`ADVICE_COLUMNS`.
    """
    if not 0 < target <= 1:
        raise ValueError("target must be in (0, 1]")
    # Whole seconds like the recommendation, so that a capped one is always short of the target.
    if max_timeout_s is not None and not (max_timeout_s >= 1 and float(max_timeout_s).is_integer()):
        raise ValueError("max_timeout_s must be a whole number of seconds, at least 1")
    # target as written (0.1 is 1/10, not the binary fraction a hair above it), so that the answers needed,
    # ceil(target × answered), is exact in integers: 0.07 × 100 in floating point is 7.000000000000001.
    share = Fraction(repr(float(target)))
    numerator, denominator = int(share.numerator), int(share.denominator)
    cap_s = "NULL" if max_timeout_s is None else str(int(max_timeout_s))
    versions = _latest_versions(audit.webhooks)
    current = ("SELECT * FROM (VALUES " + ", ".join(
        f"({quote_literal(v.webhook_id)}, {v.timeout_s if v.timeout_s is not None else 'NULL'}, "
        f"{seconds_to_us(v.timeout_s) if v.timeout_s is not None else 'NULL'})" for v in versions) + ")"
        if versions else "SELECT NULL, NULL, NULL WHERE false")
    return audit.con.execute(f"""
        WITH waits AS ({finishing_waits_sql()}),
        current(webhook_id, current_timeout_s, current_us) AS ({current}),
        ranked AS (
            SELECT webhook_id, wait_us, row_number() OVER (PARTITION BY webhook_id ORDER BY wait_us) AS rank
            FROM waits WHERE wait_us IS NOT NULL
        ),
        counts AS (
            SELECT webhook_id, count(*) AS leads, count(wait_us) AS answered,
                   -- ceil(numerator × answered / denominator), in integers
                   (CAST(count(wait_us) AS HUGEINT) * {numerator} + {denominator - 1}) // {denominator} AS needed
            FROM waits GROUP BY webhook_id
        ),
        needed AS (
            -- The needed-th smallest finishing wait, rounded up to whole seconds: no shorter whole second keeps
            -- as many; none when nothing was answered (greatest() would take 1 over a NULL).
            SELECT c.*, CASE WHEN r.wait_us IS NOT NULL THEN greatest((r.wait_us + 999999) // 1000000, 1) END
                       AS needed_s
            FROM counts c LEFT JOIN ranked r ON r.webhook_id = c.webhook_id AND r.rank = c.needed
        ),
        advice AS (
            SELECT n.webhook_id, n.leads, n.answered, cur.current_timeout_s, cur.current_us,
                   coalesce(n.needed_s > {cap_s}, false) AS capped,
                   -- least() skips NULLs: no cap leaves needed_s; no needed_s must stay NULL
                   CASE WHEN n.needed_s IS NOT NULL THEN least(n.needed_s, {cap_s}) END AS recommended_timeout_s
            FROM needed n LEFT JOIN current cur USING (webhook_id)
        ),
        kept AS (
            SELECT w.webhook_id,
                   count(*) FILTER (w.wait_us <= coalesce(a.current_us, {_FOREVER_US})) AS kept_current,
                   count(*) FILTER (w.wait_us <= a.recommended_timeout_s * 1000000) AS kept_recommended,
                   avg(least(coalesce(w.wait_us, {_FOREVER_US}), coalesce(a.current_us, {_FOREVER_US}),
                             greatest(w.end_us - w.created_us, 0))) / 1e6 AS mean_block_s_current,
                   avg(CASE WHEN a.recommended_timeout_s IS NOT NULL THEN
                       least(coalesce(w.wait_us, {_FOREVER_US}), a.recommended_timeout_s * 1000000,
                             greatest(w.end_us - w.created_us, 0)) END) / 1e6 AS mean_block_s_recommended
            FROM waits w JOIN advice a USING (webhook_id)
            GROUP BY w.webhook_id
        )
        SELECT a.webhook_id, a.leads, a.answered, CAST(a.current_timeout_s AS DOUBLE) AS current_timeout_s,
               k.kept_current / nullif(a.answered, 0) AS current_capture_rate,
               CAST(a.recommended_timeout_s AS DOUBLE) AS recommended_timeout_s,
               k.kept_recommended / nullif(a.answered, 0) AS recommended_capture_rate,
               a.capped, k.mean_block_s_current, k.mean_block_s_recommended
        FROM advice a JOIN kept k USING (webhook_id)
        ORDER BY a.webhook_id
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
