"""One lead's story: its waiting webhook, deadline, and every callback resolved to it.

The evidence an analyst sends an advertiser in a dispute: each callback with its
outcome, the answer the model gives, the answer production recorded, and the raw
request as captured.
"""

from __future__ import annotations

import pandas as pd

from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, CALLBACKS, DISPATCH_QUARANTINE, LEAD_OUTCOMES
from webhook_core.exceptions import ReplayError
from webhook_core.timeutil import human_duration

__all__ = ["lead_timeline"]


def lead_timeline(audit: Audit, lead: str) -> pd.DataFrame:
    """Events for the lead whose ``lead_id`` or ``conversion_id`` is ``lead``, in time order.

    Rows: ``created`` (the waiting webhook), one ``callback`` per callback resolved to it (and
    any ``wrong_webhook`` callback naming it from another webhook), and its state (W-rules):
    ``received`` at the instant the wait finished, ``timed_out`` at the deadline
    (``created_at + timeout``), ``waiting`` at the observation end. A lead that did not time out
    but waits with a timeout also gets a ``deadline`` row. ``since_created_s`` is each row's
    exact time from ``created_at`` (negative for an early callback); ``headers`` is JSON text,
    a list of ``{"name", "value"}`` objects; ``detail`` gives durations in words
    (:func:`webhook_core.timeutil.human_duration`).
    """
    con = audit.con
    found = con.execute(f"""
        SELECT "row" FROM {LEAD_OUTCOMES} WHERE lead_id = $lead OR conversion_id = $lead ORDER BY "row"
    """, {"lead": lead}).fetchall()
    if not found:
        raise ReplayError(f"no lead with lead_id or conversion_id {lead!r}{_quarantined_row(audit, lead)}")
    if len(found) > 1:
        raise ReplayError(f"{lead!r} names {len(found)} waiting webhooks (one lead sent to several webhooks); "
                          "give its conversion_id")
    frame = con.execute(f"""
        WITH lead AS (SELECT * FROM {LEAD_OUTCOMES} WHERE "row" = $row),
        events AS (
            SELECT created_at AS "time", 0 AS step, NULL::BIGINT AS seq, 'created' AS event, NULL AS outcome,
                   NULL AS status_code, NULL AS recorded_status, NULL AS request_id, NULL AS method, NULL AS url,
                   NULL AS headers, NULL AS body,
                   'waiting webhook ' || conversion_id || ' on ' || webhook_id AS detail
            FROM lead
            UNION ALL
            -- A timed-out lead's state row stands at its deadline instead (below): one row for one instant.
            SELECT deadline, 2, NULL, 'deadline', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   'the ping tree stops waiting after this instant'
            FROM lead WHERE deadline IS NOT NULL AND state <> 'timed_out'
            UNION ALL
            SELECT o.received_at, 1, o.seq, 'callback', o.outcome, o.status_code, o.recorded_status, o.request_id,
                   c.method, c.url, to_json(c.headers)::VARCHAR, c.body,
                   CASE WHEN o.outcome = 'wrong_webhook' THEN 'sent to ' || o.token || ', not to this lead''s webhook'
                        WHEN o.matched_by IS NOT NULL THEN 'paired by ' || o.matched_by END
            FROM {CALLBACK_OUTCOMES} o JOIN {CALLBACKS} c USING (seq)
            WHERE o.lead_row = $row
               OR (o.outcome = 'wrong_webhook' AND o.lead_id = (SELECT lead_id FROM lead)
                   AND o.conversion_id = (SELECT conversion_id FROM lead))
            UNION ALL
            -- W2 judges timed_out at the observation end, but the scenario failed at the deadline: the last
            -- instant a callback was in time (M5.3), so a callback at that instant is listed before this row.
            SELECT CASE state WHEN 'received' THEN finished_at WHEN 'timed_out' THEN deadline
                              ELSE observation_end END,
                   3, NULL, state, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
            FROM lead
        )
        SELECT "time", (epoch_us("time") - epoch_us((SELECT created_at FROM lead))) / 1e6 AS since_created_s,
               event, outcome, status_code, recorded_status, request_id, method, url, headers, body, detail
        FROM events ORDER BY "time", step, seq
    """, {"row": found[0][0]}).df()
    # Durations in words are written here, not in SQL, so the CLI and the notebooks print one format.
    is_state = frame.event.isin(["received", "timed_out", "waiting"])
    state, since = next(frame.loc[is_state, ["event", "since_created_s"]].itertuples(index=False, name=None))
    waited = human_duration(since)
    frame.loc[is_state, "detail"] = {
        "received": f"finished after {waited}",
        "timed_out": f"no callback in time; the scenario failed at the deadline, {waited} after created",
    }.get(state, "still waiting at the observation end")
    return frame


def _quarantined_row(audit: Audit, lead: str) -> str:
    """``: its dispatch … was quarantined …`` when a quarantined dispatch names ``lead``, else nothing: its
    callbacks are then ``not_found`` for the load's reason, not the advertiser's."""
    rows = audit.con.execute(f"""
        SELECT q.source_file, q.line, q.reason
        FROM {DISPATCH_QUARANTINE} q
        WHERE q.lead_id = $lead OR q.conversion_id = $lead
        ORDER BY q.source_file, q.line
    """, {"lead": lead}).fetchall()
    if not rows:
        return ""
    where = "; ".join(f"{path} line {line:,} ({reason})" for path, line, reason in rows[:3])
    return (f": its dispatch was quarantined, {where}; its callbacks are not_found for that reason "
            "(flagged lead_quarantined): fix the row and replay")
