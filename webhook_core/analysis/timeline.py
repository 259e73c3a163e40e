"""One lead's story: its waiting webhook, deadline, and every callback resolved to it.

The evidence an analyst sends an advertiser in a dispute: each callback with its
outcome, the answer the model gives, the answer production recorded, and the raw
request as captured.
"""

from __future__ import annotations

import pandas as pd

from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, CALLBACKS, LEAD_OUTCOMES
from webhook_core.exceptions import ReplayError

__all__ = ["lead_timeline"]


def lead_timeline(audit: Audit, lead: str) -> pd.DataFrame:
    """Events for the lead whose ``lead_id`` or ``conversion_id`` is ``lead``, in time order.

    Rows: ``created`` (the waiting webhook), ``deadline`` (if its webhook waits with a
    timeout), one ``callback`` per callback resolved to it (and any ``wrong_webhook``
    callback naming it from another webhook), and its state (W-rules): ``received`` at
    the instant the wait finished, or ``timed_out`` / ``waiting`` at the observation end.
    """
    con = audit.con
    found = con.execute(f"""
        SELECT "row" FROM {LEAD_OUTCOMES} WHERE lead_id = $lead OR conversion_id = $lead ORDER BY "row"
    """, {"lead": lead}).fetchall()
    if not found:
        raise ReplayError(f"no lead with lead_id or conversion_id {lead!r}")
    if len(found) > 1:
        raise ReplayError(f"{lead!r} names {len(found)} waiting webhooks (one lead sent to several webhooks); "
                          "give its conversion_id")
    return con.execute(f"""
        WITH lead AS (SELECT * FROM {LEAD_OUTCOMES} WHERE "row" = $row),
        events AS (
            SELECT created_at AS "time", 0 AS step, 'created' AS event, NULL AS outcome, NULL AS status_code,
                   NULL AS recorded_status, NULL AS request_id, NULL AS method, NULL AS url,
                   NULL AS headers, NULL AS body,
                   'waiting webhook ' || conversion_id || ' on ' || webhook_id AS detail
            FROM lead
            UNION ALL
            SELECT deadline, 2, 'deadline', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   'the ping tree stops waiting after this instant'
            FROM lead WHERE deadline IS NOT NULL
            UNION ALL
            SELECT o.received_at, 1, 'callback', o.outcome, o.status_code, o.recorded_status, o.request_id,
                   c.method, c.url, CAST(c.headers AS VARCHAR), c.body,
                   CASE WHEN o.outcome = 'wrong_webhook' THEN 'sent to ' || o.token || ', not to this lead''s webhook'
                        WHEN o.matched_by IS NOT NULL THEN 'paired by ' || o.matched_by END
            FROM {CALLBACK_OUTCOMES} o JOIN {CALLBACKS} c USING (seq)
            WHERE o.lead_row = $row
               OR (o.outcome = 'wrong_webhook' AND o.lead_id = (SELECT lead_id FROM lead)
                   AND o.conversion_id = (SELECT conversion_id FROM lead))
            UNION ALL
            SELECT coalesce(finished_at, observation_end), 3, state, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   CASE state WHEN 'received' THEN 'finished after ' || wait_s || ' s'
                              WHEN 'timed_out' THEN 'no callback in time; the scenario failed'
                              ELSE 'still waiting at the observation end' END
            FROM lead
        )
        SELECT "time", event, outcome, status_code, recorded_status, request_id, method, url, headers, body, detail
        FROM events ORDER BY "time", step
    """, {"row": found[0][0]}).df()
