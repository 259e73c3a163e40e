"""Match rates, 404 rates and their reasons, per webhook or advertiser, overall or per day.

All figures are read from the replay's tables (``callback_outcomes``,
``lead_outcomes``) in one SQL statement each. Definitions (docs/analysis.md):

* ``match_rate`` = matched callbacks ÷ callbacks; ``rate_404`` = callbacks answered
  404 ÷ callbacks (``match_rate + interim share + rate_404 = 1``);
* ``404s`` are split by outcome: the reason codes of docs/semantics.md;
* lead columns count leads by their state at the observation end;
* production agreement compares ``recorded_status`` (as captured) with the
  model's ``status_code``; callbacks without a recorded answer are not compared;
* a ``refused`` line (the receiver answered it without judging it) is no callback
  judged: it is in none of these figures;
* a callback is charged to the webhook live for its token, else (``unknown_token``) to the
  configured webhook its token names (``token_not_live``), else to ``(unknown)``: once each, so
  every count of the ``(all)`` row is the sum of the group rows; ``misrouted_in`` counts a
  ``wrong_webhook`` callback again, on the group whose lead it named;
* :func:`lead_headline` counts leads first: ``answer_rate`` = leads answered in time ÷
  leads; ``never_called_back`` = leads to which no callback at all (any outcome: early,
  late, duplicate, interim included) was resolved by the observation end (W4 ``callbacks = 0``);
  ``404s_per_lead`` = 404s of the callbacks charged to the group ÷ the group's leads.

Per day, callbacks count on the UTC day they were received and leads on the UTC
day they were created.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from webhook_core.audit.audit import Audit
from webhook_core.audit.replay import CALLBACK_ORDER
from webhook_core.audit.schema import CALLBACK_OUTCOMES, DISPATCHES, LEAD_OUTCOMES, REPLAY_VERSIONS
from webhook_core.domain import REASONS_404, Outcome
from webhook_core.quoting import quote_identifier

__all__ = ["disagreements", "lead_headline", "rates"]


Grouping = Literal["webhook_id", "advertiser_id"]

_UNKNOWN = "(unknown)"


def _keyed_callbacks(by: Grouping) -> str:
    """Each judged callback with ``key``, the group it is charged to, and ``owner_key``, the group whose lead a
    ``wrong_webhook`` callback named (NULL otherwise)."""
    # Charged to the webhook live for the token, else to the configured webhook the token names (a callback to
    # it while no version was live), else to (unknown): every callback to exactly one group.
    charged = "coalesce(c.webhook_id, c.token_webhook_id)"
    key = f"coalesce({charged}, '{_UNKNOWN}')" if by == "webhook_id" else f"coalesce(a.advertiser_id, '{_UNKNOWN}')"
    owner_key = "c.owner_webhook_id" if by == "webhook_id" else "o.advertiser_id"
    advertisers = f"""(SELECT webhook_id,
                              arg_max(advertiser_id, coalesce(active_from_us, -9223372036854775808)) AS advertiser_id
                       FROM {REPLAY_VERSIONS} GROUP BY webhook_id)"""
    return f"""
        SELECT {key} AS key, {owner_key} AS owner_key, c.*
        FROM {CALLBACK_OUTCOMES} c
        LEFT JOIN {advertisers} a ON a.webhook_id = {charged}
        LEFT JOIN {advertisers} o ON o.webhook_id = c.owner_webhook_id
        WHERE c.outcome <> '{Outcome.REFUSED.value}'
    """


def _keyed_leads(by: Grouping) -> str:
    key = "l.webhook_id" if by == "webhook_id" else "d.advertiser_id"
    return f"""
        SELECT {key} AS key, l.*
        FROM {LEAD_OUTCOMES} l JOIN {DISPATCHES} d ON d."row" = l."row"
    """


def rates(audit: Audit, *, by: Grouping = "webhook_id", per_day: bool = False) -> pd.DataFrame:
    """One row per ``by`` value (and UTC day with ``per_day``), plus an ``(all)`` row when not per day."""
    _check_grouping(by)
    day_c = ", CAST(received_at AS DATE) AS day" if per_day else ""
    day_l = ", CAST(created_at AS DATE) AS day" if per_day else ""
    group = "key, day" if per_day else "key"
    reasons = ", ".join(f"count(*) FILTER (outcome = '{r}') AS \"404_{r}\"" for r in REASONS_404)
    totals = "" if per_day else "GROUPING SETS ((key), ())"
    group_clause = f"GROUP BY {totals}" if totals else f"GROUP BY {group}"
    key_select = "coalesce(key, '(all)') AS key" if not per_day else "key"
    column = quote_identifier(by)
    frame = audit.con.execute(f"""
        WITH c AS (SELECT *{day_c} FROM ({_keyed_callbacks(by)})),
        l AS (SELECT *{day_l} FROM ({_keyed_leads(by)})),
        cb AS (
            SELECT {key_select}{", day" if per_day else ""},
                   count(*) AS callbacks,
                   count(*) FILTER (outcome = 'matched') AS matched,
                   count(*) FILTER (outcome = 'interim') AS interim,
                   count(*) FILTER (status_code = 404) AS answered_404,
                   {reasons},
                   count(recorded_status) AS recorded,
                   count(*) FILTER (recorded_status = status_code) AS agree,
                   count(*) FILTER (recorded_status <> status_code) AS disagree,
                   count(*) FILTER (lead_quarantined) AS lead_quarantined,
                   count(*) FILTER (outcome = '{Outcome.WRONG_WEBHOOK.value}') AS misrouted_out,
                   count(*) FILTER (token_webhook_id IS NOT NULL) AS token_not_live
            FROM c {group_clause}
        ),
        -- Keyed by the group whose lead was named, not the one charged: told to both sides.
        mi AS (
            SELECT {key_select}{", day" if per_day else ""}, count(*) AS misrouted_in
            FROM (SELECT owner_key AS key{", day" if per_day else ""} FROM c WHERE owner_key IS NOT NULL)
            {group_clause}
        ),
        ld AS (
            SELECT {key_select}{", day" if per_day else ""},
                   count(*) AS leads,
                   count(*) FILTER (state = 'received') AS received,
                   count(*) FILTER (state = 'timed_out') AS timed_out,
                   count(*) FILTER (state = 'waiting') AS waiting
            FROM l {group_clause}
        )
        SELECT coalesce(cb.key, ld.key, mi.key) AS {column}
               {", coalesce(cb.day, ld.day, mi.day) AS day" if per_day else ""},
               coalesce(cb.callbacks, 0) AS callbacks,
               coalesce(cb.matched, 0) AS matched,
               coalesce(cb.interim, 0) AS interim,
               coalesce(cb.answered_404, 0) AS answered_404,
               cb.matched / nullif(cb.callbacks, 0) AS match_rate,
               cb.answered_404 / nullif(cb.callbacks, 0) AS rate_404,
               {", ".join(f'coalesce(cb."404_{r}", 0) AS "404_{r}"' for r in REASONS_404)},
               coalesce(ld.leads, 0) AS leads,
               coalesce(ld.received, 0) AS received,
               coalesce(ld.timed_out, 0) AS timed_out,
               coalesce(ld.waiting, 0) AS waiting,
               coalesce(cb.recorded, 0) AS recorded,
               coalesce(cb.agree, 0) AS agree,
               coalesce(cb.disagree, 0) AS disagree,
               coalesce(cb.lead_quarantined, 0) AS lead_quarantined,
               cb.agree / nullif(cb.recorded, 0) AS agreement_rate,
               coalesce(cb.misrouted_out, 0) AS misrouted_out,
               coalesce(mi.misrouted_in, 0) AS misrouted_in,
               coalesce(cb.token_not_live, 0) AS token_not_live
        FROM cb FULL JOIN ld ON cb.key = ld.key {"AND cb.day = ld.day" if per_day else ""}
        FULL JOIN mi ON mi.key = coalesce(cb.key, ld.key) {"AND mi.day = coalesce(cb.day, ld.day)" if per_day else ""}
        ORDER BY {column} = '(all)', {column}{", day" if per_day else ""}
    """).df()
    return frame


def _check_grouping(by: str) -> None:
    if by not in ("webhook_id", "advertiser_id"):
        raise ValueError(f"by must be 'webhook_id' or 'advertiser_id', not {by!r}")


def lead_headline(audit: Audit, *, by: Grouping = "webhook_id") -> pd.DataFrame:
    """Leads first, then callbacks: one row per ``by`` value and an ``(all)`` row (docs/analysis.md).

    A retry storm multiplies callbacks, not leads: ``answer_rate`` (leads answered in time ÷ leads) is
    what an advertiser delivered; the callback rates beside it say how noisily. Leads are grouped by
    their webhook (or its dispatch's advertiser), callbacks by the webhook their token names, so
    ``(unknown)`` (tokens no webhook has) has callbacks and no leads: its lead figures are empty.
    """
    _check_grouping(by)
    column = quote_identifier(by)
    return audit.con.execute(f"""
        WITH cb AS (
            SELECT coalesce(key, '(all)') AS key,
                   count(*) AS callbacks,
                   count(*) FILTER (outcome = '{Outcome.MATCHED.value}') AS matched,
                   count(*) FILTER (outcome = '{Outcome.INTERIM.value}') AS interim,
                   count(*) FILTER (status_code = 404) AS answered_404
            FROM ({_keyed_callbacks(by)}) GROUP BY GROUPING SETS ((key), ())
        ),
        ld AS (
            SELECT coalesce(key, '(all)') AS key,
                   count(*) AS leads,
                   count(*) FILTER (state = 'received') AS received,
                   count(*) FILTER (state = 'timed_out') AS timed_out,
                   count(*) FILTER (state = 'waiting') AS waiting,
                   -- W4: callbacks resolved to the lead, any outcome, by the observation end
                   count(*) FILTER (callbacks = 0) AS never_called_back,
                   count(*) FILTER (callbacks = 0 AND state = 'timed_out') AS never_called_back_timed_out
            FROM ({_keyed_leads(by)}) GROUP BY GROUPING SETS ((key), ())
        )
        SELECT coalesce(ld.key, cb.key) AS {column},
               coalesce(ld.leads, 0) AS leads,
               coalesce(ld.received, 0) AS received,
               coalesce(ld.timed_out, 0) AS timed_out,
               coalesce(ld.waiting, 0) AS waiting,
               coalesce(ld.never_called_back, 0) AS never_called_back,
               coalesce(ld.never_called_back_timed_out, 0) AS never_called_back_timed_out,
               ld.received / nullif(ld.leads, 0) AS answer_rate,
               coalesce(cb.callbacks, 0) AS callbacks,
               coalesce(cb.matched, 0) AS matched,
               coalesce(cb.interim, 0) AS interim,
               coalesce(cb.answered_404, 0) AS answered_404,
               cb.matched / nullif(cb.callbacks, 0) AS match_rate,
               cb.interim / nullif(cb.callbacks, 0) AS interim_rate,
               cb.answered_404 / nullif(cb.callbacks, 0) AS rate_404,
               coalesce(cb.answered_404, 0) / nullif(ld.leads, 0) AS "404s_per_lead"
        FROM ld FULL JOIN cb ON cb.key = ld.key
        ORDER BY {column} = '(all)', {column}
    """).df()


def disagreements(audit: Audit) -> pd.DataFrame:
    """Callbacks whose captured answer differs from the model's, in judging order."""
    return audit.con.execute(f"""
        SELECT request_id, received_at, webhook_id, token, conversion_id, external_id, lead_id, outcome,
               status_code AS model_status, recorded_status
        FROM {CALLBACK_OUTCOMES}
        WHERE recorded_status IS NOT NULL AND recorded_status <> status_code
        ORDER BY {CALLBACK_ORDER}
    """).df()
