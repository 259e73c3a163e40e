"""Evidence for an advertiser: each callback answered 404 as it was captured, why, and what to change.

:func:`evidence` lists the raw requests (method, URL, headers, body) with the rules' outcome, a
``reason`` in plain words computed from the data ("arrived 12 min 3.0 s after the 30 s timeout"), a
``hint`` saying what the advertiser should change ("the lead belongs to wh-fastpay: call
/webhooks/wh-fastpay") and, where a near-miss transform of the pairing analysis rescues the callback,
``near_miss`` ("your pcid is 'PC-123 ' with a trailing space: send it trimmed"). The wording of each
outcome is defined in docs/analysis.md ("Evidence").

A filter selects the rows; a row's facts about its lead (its deadline, the callback that answered it
first, the webhook that owns it) are read from the whole audit, so they do not change with the window.
Near-misses are the pairing analysis's (:func:`webhook_core.analysis.pairing.near_miss_rescues`), over
the leads the filter keeps, as ``webhook-audit pairing`` reports them.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from webhook_core.analysis.pairing import NEAR_MISS_TRANSFORMS, near_miss_rescues
from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, CALLBACKS, LEAD_OUTCOMES, REPLAY_VERSIONS
from webhook_core.domain import REASONS_404, Outcome
from webhook_core.quoting import quote_identifier, quote_literal

__all__ = ["EVIDENCE_COLUMNS", "GENERAL_HINTS", "SUMMARY_COLUMNS", "evidence", "evidence_summary"]

EVIDENCE_COLUMNS = ("received_at", "request_id", "webhook_id", "advertiser_id", "method", "url", "headers", "body",
                    "outcome", "lead_quarantined", "reason", "hint", "near_miss")
SUMMARY_COLUMNS = ("advertiser_id", "webhook_id", "outcome", "lead_quarantined", "callbacks", "near_misses", "hint")

#: A callback to a token no webhook ever had is charged to no advertiser (as in ``rates(by="advertiser_id")``).
UNKNOWN_ADVERTISER = "(unknown)"

#: Per outcome, the hint of :func:`evidence_summary` where a group's rows do not all share one.
GENERAL_HINTS = {
    "not_found": "send the pcid (or external ID) exactly as we sent it with the lead, to the webhook the lead came "
                 "from",
    "no_identifiers": "no pcid: send pcid in the query string, or map your field with Lead ID pairing",
    "wrong_webhook": "call the webhook the lead belongs to (named in each row)",
    "late": "call back before the webhook's timeout (each row names it)",
    "early": "call back only after the lead reaches you",
    "duplicate": "send one final callback per lead; stop retrying once it is answered 200",
    "unknown_token": "call /webhooks/WEBHOOK_ID with the ID of one of your webhooks that is live",
    "refused": "none from the rules: the receiver refused the request before judging it (capture log)",
}

#: ``identifier`` of the pairing analysis as the advertiser knows it.
_IDENTIFIER_WORDS = "CASE {} WHEN 'conversion_id' THEN 'pcid' ELSE 'external ID' END"


def _quoted(column: str) -> str:
    """SQL: ``'value'`` in single quotes, for a reader (not SQL quoting)."""
    return f"'''' || {column} || ''''"


def _duration(column: str) -> str:
    """SQL: a non-negative duration in microseconds as ``12 min 3.0 s``, the format of
    :func:`webhook_core.timeutil.human_duration`, exact: rounded half up to the tenth of a second in integers."""
    tenths = f"(({column}) + 50000) // 100000"
    return f"""(CASE WHEN {tenths} >= 36000 THEN ({tenths} // 36000)::VARCHAR || ' h '
                                                || ({tenths} % 36000 // 600)::VARCHAR || ' min '
                     WHEN {tenths} >= 600 THEN ({tenths} // 600)::VARCHAR || ' min ' ELSE '' END
                || ({tenths} % 600 // 10)::VARCHAR || '.' || ({tenths} % 10)::VARCHAR || ' s')"""


def _setting(column: str) -> str:
    """SQL: a timeout in microseconds as written in webhooks.json: ``30 s``, ``3,600 s``, ``0.5 s``."""
    return f"""(CASE WHEN ({column}) % 1000000 = 0 THEN format('{{:,}}', ({column}) // 1000000)
                     ELSE format('{{:g}}', ({column}) / 1e6) END || ' s')"""


def _moment(column: str) -> str:
    """SQL: an instant in microseconds as ``2026-11-20 10:00:10 UTC`` (a fraction only where there is one)."""
    return f"""(strftime(make_timestamp({column}), '%Y-%m-%d %H:%M:%S')
                || CASE WHEN ({column}) % 1000000 <> 0
                        THEN '.' || rtrim(lpad((({column}) % 1000000)::VARCHAR, 6, '0'), '0') ELSE '' END || ' UTC')"""


def _spaces(column: str) -> str:
    """SQL: where a value's spaces are, in words (a value the ``trim`` transform rescues has some)."""
    return f"""CASE WHEN ltrim({column}) = {column}
                    THEN CASE WHEN length({column}) - length(rtrim({column})) = 1 THEN 'a trailing space'
                              ELSE 'trailing spaces' END
                    WHEN rtrim({column}) = {column}
                    THEN CASE WHEN length({column}) - length(ltrim({column})) = 1 THEN 'a leading space'
                              ELSE 'leading spaces' END
                    ELSE 'spaces around it' END"""


def _near_miss_text() -> str:
    """SQL over one row of ``near_miss_rescues``: the rescue in words, with what to send instead."""
    ident = _IDENTIFIER_WORDS.format("identifier")
    your = f"'your ' || {ident} || ' is ' || {_quoted('value')}"
    theirs = f"' where the lead''s is ' || {_quoted('lead_key')}"
    return f"""CASE transform
        WHEN 'trim' THEN {your} || ' with ' || {_spaces('value')} || ': send it trimmed'
        WHEN 'case_fold' THEN {your} || {theirs} || ': send it in the same case'
        WHEN 'url_decode' THEN {your} || ', still URL-encoded: encode it once, so that it reads '
                               || {_quoted('lead_key')}
        WHEN 'leading_zeros' THEN {your} || {theirs} || ': keep the leading zeros as we sent them'
        WHEN 'numeric' THEN {your} || ', a number written differently from the lead''s ' || {_quoted('lead_key')}
                            || ': send it exactly as we sent it'
        ELSE 'your ' || {ident} || ' ' || {_quoted('value')} || ' is in ' || location || ', which '
             || webhook_id || ' does not read: send it as '
             || CASE identifier WHEN 'conversion_id' THEN 'pcid' ELSE 'external_id' END
             || ', or map ' || location || ' with Lead ID pairing'
        END"""


def _main(con: duckdb.DuckDBPyConnection) -> str:
    """The database's own schema: its relations, not the temporary views a filter puts before them."""
    (database,) = con.execute("SELECT current_database()").fetchone() or ("memory",)
    return f"{quote_identifier(str(database))}.main"


def evidence(audit: Audit, *, all_callbacks: bool = False, examples_per_reason: int | None = None) -> pd.DataFrame:
    """Every callback answered 404 (``all_callbacks``: every callback, ``matched``, ``interim`` and
    ``refused`` included), as captured, with its outcome, ``reason``, ``hint`` and ``near_miss``
    (:data:`EVIDENCE_COLUMNS`), ordered by advertiser, webhook and ``received_at``.

    ``webhook_id`` is the webhook the callback is charged to: the one live for its token, else
    (``unknown_token``) the configured webhook the token names, else empty. ``advertiser_id`` is that
    webhook's advertiser (its latest version's), ``(unknown)`` for a token no webhook ever had.
    ``headers`` is JSON text (a list of ``{"name", "value"}`` objects); ``body`` is the text captured.
    ``examples_per_reason`` keeps only the first that many callbacks (by ``received_at``) of each webhook and
    outcome: examples to send, bounded however large the capture (the report's packs).
    """
    con = audit.con
    main = _main(con)
    present = {column[0] for column in con.execute(f"SELECT * FROM {CALLBACK_OUTCOMES} LIMIT 0").description}
    # A database written before these columns were stored: the same facts from the lead and the settings.
    if "owner_webhook_id" in present:
        owner, owner_join = "o.owner_webhook_id", ""
    else:
        owner = "named.webhook_id"
        owner_join = (f"LEFT JOIN {main}.{LEAD_OUTCOMES} named ON o.outcome = 'wrong_webhook' "
                      "AND named.lead_id = o.lead_id AND named.conversion_id = o.conversion_id")
    token_webhook = ("o.token_webhook_id" if "token_webhook_id" in present else
                     f"CASE WHEN o.outcome = 'unknown_token' AND o.token IN (SELECT webhook_id FROM {REPLAY_VERSIONS})"
                     " THEN o.token END")
    selection = "true" if all_callbacks else f"o.outcome IN ({', '.join(quote_literal(r) for r in REASONS_404)})"
    transforms = ", ".join(f"('{t}', {i})" for i, t in enumerate([*NEAR_MISS_TRANSFORMS, "unmapped_location"]))
    webhook = "coalesce(r.webhook_id, '')"
    conversion = f"'pcid ' || {_quoted('r.conversion_id')}"
    external = f"'external ID ' || {_quoted('r.external_id')} || ' for advertiser ' || {_quoted('r.sent_advertiser')}"
    named = f"concat_ws(' or ', {conversion}, CASE WHEN r.external_id IS NOT NULL THEN {external} END)"
    timeout = _setting("l.deadline_us - l.created_us")
    limit = "" if examples_per_reason is None else (
        f"QUALIFY row_number() OVER (PARTITION BY coalesce(o.webhook_id, {token_webhook}, o.token), o.outcome "
        f"ORDER BY o.us, o.seq) <= {int(examples_per_reason)}")
    frame = con.execute(f"""
        WITH picked AS (
            SELECT o.seq, o.us, o.received_at, o.request_id, o.outcome, o.status_code, o.token, o.lead_row,
                   o.lead_id, o.conversion_id, o.external_id, o.advertiser_id AS sent_advertiser, o.lead_quarantined,
                   coalesce(o.webhook_id, {token_webhook}) AS webhook_id, o.webhook_id AS live_webhook_id,
                   {owner} AS owner_webhook_id
            FROM {CALLBACK_OUTCOMES} o {owner_join}
            WHERE {selection}
            {limit}
        ),
        advertisers AS (
            SELECT webhook_id,
                   arg_max(advertiser_id, coalesce(active_from_us, -9223372036854775808)) AS advertiser_id
            FROM {REPLAY_VERSIONS} GROUP BY webhook_id
        ),
        leads AS (
            SELECT "row", epoch_us(created_at) AS created_us, epoch_us(deadline) AS deadline_us
            FROM {main}.{LEAD_OUTCOMES} WHERE "row" IN (SELECT lead_row FROM picked)
        ),
        answered AS (
            SELECT lead_row, us, request_id FROM {main}.{CALLBACK_OUTCOMES}
            WHERE outcome = 'matched' AND lead_row IN (SELECT lead_row FROM picked WHERE outcome = 'duplicate')
        ),
        transforms(transform, position) AS (VALUES {transforms}),
        rescues AS (
            SELECT seq, {_near_miss_text()} AS near_miss
            FROM ({near_miss_rescues(audit)}) JOIN transforms USING (transform)
            WHERE seq IN (SELECT seq FROM picked)
            QUALIFY row_number() OVER (PARTITION BY seq ORDER BY position, identifier, lead_key, location) = 1
        )
        SELECT * FROM (
        SELECT r.seq, r.us, r.received_at, r.request_id, r.webhook_id,
               coalesce(a.advertiser_id, {quote_literal(UNKNOWN_ADVERTISER)}) AS advertiser_id,
               c.method, c.url, to_json(c.headers)::VARCHAR AS headers, c.body, r.outcome,
               coalesce(r.lead_quarantined, false) AS lead_quarantined,
               CASE r.outcome
                   WHEN 'not_found' THEN 'no waiting webhook of ' || {webhook} || ' has ' || {named}
                        || CASE WHEN r.lead_quarantined
                                THEN ': its dispatch was quarantined when the data was loaded' ELSE '' END
                   WHEN 'no_identifiers' THEN 'neither a pcid nor an external ID where ' || {webhook} || ' reads them'
                   WHEN 'wrong_webhook' THEN {conversion} || ' names lead ' || {_quoted('r.lead_id')} || ' of '
                        || r.owner_webhook_id || ', not a lead of ' || {webhook}
                   WHEN 'late' THEN 'arrived ' || {_duration('r.us - l.deadline_us')} || ' after the '
                        || {timeout} || ' timeout'
                   WHEN 'early' THEN 'arrived ' || {_duration('l.created_us - r.us')}
                        || ' before the lead was sent (' || {_moment('l.created_us')} || ')'
                   WHEN 'duplicate' THEN 'another callback had already finished this lead''s wait'
                   WHEN 'unknown_token' THEN CASE
                        WHEN r.webhook_id IS NOT NULL THEN r.webhook_id || ' was not live at this time'
                        ELSE 'no webhook has the token ' || {_quoted('r.token')} END
                   WHEN 'matched' THEN 'finished the lead''s wait after ' || {_duration('r.us - l.created_us')}
                   WHEN 'interim' THEN 'an interim status: the lead keeps waiting'
                   WHEN 'refused' THEN 'not judged: the receiver answered it '
                        || coalesce(r.status_code::VARCHAR, 'nothing') || ' before judging it'
               END AS reason,
               CASE
                   WHEN r.outcome = 'not_found' AND r.lead_quarantined
                   THEN 'our side: the lead''s dispatch was quarantined; not your fault'
                   WHEN r.outcome = 'not_found' AND r.conversion_id IS NOT NULL
                   THEN 'send the pcid exactly as we sent it with the lead, to the webhook the lead came from'
                   WHEN r.outcome = 'not_found'
                   THEN 'send the external ID exactly as in the lead we sent you, with your advertiser ID'
                   WHEN r.outcome = 'wrong_webhook'
                   THEN 'the lead belongs to ' || r.owner_webhook_id || ': call /webhooks/' || r.owner_webhook_id
                   WHEN r.outcome = 'late'
                   THEN 'call back within ' || {timeout} || ' of receiving the lead (' || r.live_webhook_id
                        || '''s timeout)'
                   WHEN r.outcome = 'early'
                   THEN 'call back only after the lead reaches you: a callback before the lead was sent pairs with '
                        || 'nothing (a reused pcid, or a clock that is off?)'
                   WHEN r.outcome = 'duplicate'
                   THEN 'the lead was already answered at ' || {_moment('d.us')} || ' (request '
                        || {_quoted('d.request_id')} || '): send one final callback per lead'
                   WHEN r.outcome = 'unknown_token' AND r.webhook_id IS NOT NULL
                   THEN 'call a webhook that is live: ' || r.webhook_id || ' was not at this time'
                   ELSE {_general_hint('r.outcome')}
               END AS hint,
               n.near_miss
        FROM picked r
        JOIN {CALLBACKS} c USING (seq)
        LEFT JOIN advertisers a ON a.webhook_id = r.webhook_id
        LEFT JOIN leads l ON l."row" = r.lead_row
        LEFT JOIN answered d ON d.lead_row = r.lead_row
        LEFT JOIN rescues n ON n.seq = r.seq
        ) ORDER BY advertiser_id = {quote_literal(UNKNOWN_ADVERTISER)}, advertiser_id, webhook_id NULLS LAST, us, seq
    """).df()
    return frame[list(EVIDENCE_COLUMNS)]


def _general_hint(column: str) -> str:
    """SQL: the outcome in ``column``'s :data:`GENERAL_HINTS`."""
    whens = " ".join(f"WHEN {quote_literal(o)} THEN {quote_literal(h)}" for o, h in GENERAL_HINTS.items())
    return f"CASE {column} {whens} END"


def evidence_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per advertiser, webhook, outcome and ``lead_quarantined`` (our side's ``not_found``s apart from the
    advertiser's) of an :func:`evidence` frame: ``callbacks``, ``near_misses`` (of them, those a near-miss
    rescues) and ``hint``: the rows' own when they all share one, else the outcome's :data:`GENERAL_HINTS`
    (:data:`SUMMARY_COLUMNS`)."""
    order = {outcome.value: position for position, outcome in enumerate(Outcome)}
    keys = ["advertiser_id", "webhook_id", "outcome", "lead_quarantined"]
    # Groups in the frame's order (advertiser, then webhook, a callback to no webhook last), outcomes in the
    # order of docs/semantics.md within each.
    if frame.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in SUMMARY_COLUMNS})
    rows = frame.assign(webhook_id=frame["webhook_id"].fillna(""))
    rows["group"] = pd.factorize(pd.MultiIndex.from_frame(rows[["advertiser_id", "webhook_id"]]))[0]
    summary = rows.groupby([*keys, "group"], sort=False).agg(
        callbacks=("outcome", "size"), near_misses=("near_miss", "count"), hints=("hint", "nunique"),
        hint=("hint", "first")).reset_index()
    summary["hint"] = summary["hint"].where(summary["hints"] <= 1, summary["outcome"].map(GENERAL_HINTS))
    summary = summary.assign(position=summary["outcome"].map(order)).sort_values(
        ["group", "position", "lead_quarantined"])
    return summary[list(SUMMARY_COLUMNS)].reset_index(drop=True)
