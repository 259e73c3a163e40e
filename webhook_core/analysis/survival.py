"""Wait times that account for the leads still waiting: Kaplan–Meier, in SQL.

The time to first callback of a lead is ``first_callback_s`` of ``lead_outcomes``
(W4: the first callback resolved to it with ``received_at >= created_at``, any
outcome but early, at or before the observation end). A lead with none is
*right-censored* at the observation end: all we know is that it waited at least
that long. Plain percentiles of the observed waits ignore those leads and so
understate waits; the Kaplan–Meier estimate does not.

For each webhook and each distinct event time ``t``: ``at_risk`` = leads whose
time (event or censoring) is ``>= t``; ``events`` = leads first answered at
``t``; survival ``S(t) = Π (1 − events/at_risk)``; ``captured = 1 − S``. The 95 %
band is Greenwood's variance on the log(−log) scale (the "exponential Greenwood"
interval, as lifelines computes it): with ``v = ln S`` and
``g = Σ events / (at_risk·(at_risk − events))``,
``S_± = exp(−exp(ln(−v) ∓ z·√g / v))``. Where ``S`` reaches 0 (every lead still at
risk was answered) the log(−log) scale has no room left: the band is the point
itself, ``[1, 1]`` in ``captured``, as lifelines gives it.

The same estimate of the *finishing wait* (:func:`finishing_curve`): for a lead of a webhook that
waits, the time to the callback that would be ``matched`` with no timeout at all (M5: the first one
neither early nor interim), at or before the observation end; a lead with none is censored as above.
On a webhook that sends interim statuses the first callback is usually an interim update, which
finishes nothing: the finishing wait is what a timeout cuts (timeouts.py).
"""

from __future__ import annotations

import pandas as pd

from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, LEAD_OUTCOMES

__all__ = [
    "CURVE_COLUMNS",
    "Z_95",
    "capture_curve",
    "finishing_curve",
    "finishing_waits_sql",
    "thinned_sql",
    "wait_summary",
]

#: The standard normal quantile for a two-sided 95 % interval.
Z_95 = 1.959963984540054

CURVE_COLUMNS = ("webhook_id", "t_s", "at_risk", "events", "captured", "ci_low", "ci_high")

_DURATIONS = f"""
    SELECT webhook_id,
           coalesce(first_callback_s, (epoch_us(observation_end) - epoch_us(created_at)) / 1e6) AS t,
           first_callback_s IS NOT NULL AS event
    FROM {LEAD_OUTCOMES}
    WHERE created_at <= observation_end
"""


def finishing_waits_sql() -> str:
    """Per lead of a webhook that waits: ``row, webhook_id, created_us, end_us`` and ``wait_us``, its finishing
    wait in microseconds, NULL when no callback that could finish it came by the observation end."""
    return f"""
        WITH leads AS (
            SELECT "row", webhook_id, epoch_us(created_at) AS created_us, epoch_us(observation_end) AS end_us
            FROM {LEAD_OUTCOMES} WHERE waits
        ),
        finishes AS (
            -- The first callback neither early (M5.1) nor interim (M5.4) is the one matched with no timeout;
            -- no callback before it finished the wait, so it is no duplicate either.
            SELECT c.lead_row, min(c.us) AS finish_us
            FROM {CALLBACK_OUTCOMES} c JOIN leads l ON l."row" = c.lead_row
            WHERE c.us >= l.created_us AND NOT c.is_interim AND c.us <= l.end_us
            GROUP BY c.lead_row
        )
        SELECT l."row", l.webhook_id, l.created_us, l.end_us, f.finish_us - l.created_us AS wait_us
        FROM leads l LEFT JOIN finishes f ON f.lead_row = l."row"
    """


def _finishing_durations() -> str:
    return f"""
        SELECT webhook_id, coalesce(wait_us, end_us - created_us) / 1e6 AS t, wait_us IS NOT NULL AS event
        FROM ({finishing_waits_sql()}) WHERE created_us <= end_us
    """


def capture_curve_sql(z: float = Z_95) -> str:
    """The Kaplan–Meier table as one SQL query over ``lead_outcomes``."""
    return _kaplan_meier_sql(_DURATIONS, z)


def finishing_curve_sql(z: float = Z_95) -> str:
    """The Kaplan–Meier table of the finishing wait, per webhook that waits, as one SQL query."""
    return _kaplan_meier_sql(_finishing_durations(), z)


def _kaplan_meier_sql(source: str, z: float) -> str:
    """``source``: one row per lead, ``webhook_id, t, event``."""
    return f"""
        WITH durations AS ({source}),
        grouped AS (
            SELECT webhook_id, t, count(*) FILTER (event) AS events, count(*) AS leaving
            FROM durations GROUP BY webhook_id, t
        ),
        at_risk AS (
            SELECT *, sum(leaving) OVER (PARTITION BY webhook_id ORDER BY t DESC
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS at_risk
            FROM grouped
        ),
        running AS (
            SELECT webhook_id, t, at_risk, events,
                   sum(CASE WHEN events < at_risk THEN ln(1 - events / at_risk) END) OVER w AS log_survival,
                   sum(CASE WHEN events = at_risk THEN 1 ELSE 0 END) OVER w AS exhausted,
                   sum(CASE WHEN events < at_risk THEN events / (at_risk * (at_risk - events)) END) OVER w
                       AS greenwood
            FROM at_risk WHERE events > 0
            WINDOW w AS (PARTITION BY webhook_id ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        ),
        estimate AS (
            SELECT *, CASE WHEN exhausted > 0 THEN 0.0 ELSE exp(coalesce(log_survival, 0)) END AS survival
            FROM running
        ),
        banded AS (
            -- S is 1 after an event only where 1 - events/at_risk rounds to 1 (past 2^53 leads at risk).
            SELECT *,
                CASE WHEN survival = 0 THEN 0.0 WHEN survival = 1 THEN 1.0 ELSE
                    exp(-exp(ln(-ln(survival)) + {z} * sqrt(greenwood) / ln(survival))) END AS s_a,
                CASE WHEN survival = 0 THEN 0.0 WHEN survival = 1 THEN 1.0 ELSE
                    exp(-exp(ln(-ln(survival)) - {z} * sqrt(greenwood) / ln(survival))) END AS s_b
            FROM estimate
        )
        SELECT webhook_id, t AS t_s, CAST(at_risk AS BIGINT) AS at_risk, events, 1 - survival AS captured,
               1 - greatest(s_a, s_b) AS ci_low, 1 - least(s_a, s_b) AS ci_high
        FROM banded
        ORDER BY webhook_id, t
    """


def capture_curve(audit: Audit, *, max_steps: int | None = None) -> pd.DataFrame:
    """Kaplan–Meier share of leads answered by ``t_s`` per webhook, one row per event time.

    ``max_steps`` thins the table for drawing (:func:`thinned_sql`): a curve of a million leads has
    about a million steps, a picture needs hundreds, and the thinning happens before pandas holds them.
    """
    return audit.con.execute(thinned_sql(capture_curve_sql(), max_steps)).df()


def finishing_curve(audit: Audit, *, max_steps: int | None = None) -> pd.DataFrame:
    """Kaplan–Meier share of leads whose wait is finished by ``t_s``, per webhook that waits, one row per
    event time; the columns of :func:`capture_curve`, and ``max_steps`` as there."""
    return audit.con.execute(thinned_sql(finishing_curve_sql(), max_steps)).df()


def thinned_sql(curve_sql: str, max_steps: int | None) -> str:
    """``curve_sql`` (a Kaplan–Meier table) with at most about ``max_steps`` steps per webhook: the last step in
    each of that many log-spaced time bins (over all webhooks' times), when the table has more rows than
    ``max_steps`` per webhook; ``None`` keeps every step. The band and the estimate are the curve's own at the
    steps kept."""
    if max_steps is None:
        return curve_sql
    steps = int(max_steps)
    if steps < 1:
        raise ValueError("max_steps must be at least 1")
    return f"""
        WITH curve AS ({curve_sql}),
        logs AS (SELECT *, log10(greatest(t_s, 1e-3)) AS lg FROM curve),
        span AS (SELECT min(lg) AS lo, max(lg) AS hi, count(*) AS n, count(DISTINCT webhook_id) AS webhooks
                 FROM logs),
        binned AS (
            SELECT l.*, CAST(floor((l.lg - s.lo) / greatest(s.hi - s.lo, 1e-9) * {steps}) AS BIGINT) AS bin,
                   s.n > {steps} * greatest(s.webhooks, 1) AS thin
            FROM logs l CROSS JOIN span s
        )
        SELECT * EXCLUDE (lg, bin, thin) FROM binned
        QUALIFY NOT thin OR row_number() OVER (PARTITION BY webhook_id, bin ORDER BY t_s DESC) = 1
        ORDER BY webhook_id, t_s
    """


def wait_summary(audit: Audit) -> pd.DataFrame:
    """Per webhook: answered and censored leads, Kaplan–Meier quantiles, and the biased plain percentiles.

    ``km_p50_s`` / ``km_p90_s`` are the first event times where ``captured`` reaches
    0.5 / 0.9 (empty when it never does). ``observed_p50_s`` … ``observed_p99_s`` are
    plain percentiles over answered leads only: **biased low by censoring**, shown
    for comparison.
    """
    return audit.con.execute(f"""
        WITH durations AS ({_DURATIONS}),
        curve AS ({capture_curve_sql()}),
        km AS (
            SELECT webhook_id,
                   -- A product of float factors lands a hair off exact fractions (1/2 as 0.4999…9).
                   min(t_s) FILTER (captured >= 0.5 - 1e-12) AS km_p50_s,
                   min(t_s) FILTER (captured >= 0.9 - 1e-12) AS km_p90_s,
                   max(captured) AS captured_by_end
            FROM curve GROUP BY webhook_id
        ),
        plain AS (
            SELECT webhook_id, count(*) AS leads, count(*) FILTER (event) AS answered,
                   count(*) FILTER (NOT event) AS censored,
                   quantile_cont(t, 0.5) FILTER (event) AS observed_p50_s,
                   quantile_cont(t, 0.9) FILTER (event) AS observed_p90_s,
                   quantile_cont(t, 0.99) FILTER (event) AS observed_p99_s
            FROM durations GROUP BY webhook_id
        )
        SELECT p.webhook_id, leads, answered, censored, coalesce(captured_by_end, 0) AS captured_by_end,
               km_p50_s, km_p90_s, observed_p50_s, observed_p90_s, observed_p99_s
        FROM plain p LEFT JOIN km USING (webhook_id)
        ORDER BY p.webhook_id
    """).df()
