"""The set-based replay: every captured callback judged at once, in DuckDB SQL.

It states the rules of docs/semantics.md ("Matching", "Lead states") as joins and
window functions over the loaded tables; the only state the online matcher
carries (whether a lead's wait has finished) becomes "the first callback that
could finish the wait, by ``(received_at, input order)``", a minimum per lead.
The online matcher in ``matching.py`` is the oracle this is tested against.

Written: ``callback_outcomes`` and ``lead_outcomes`` (columns in docs/semantics.md,
"Outputs"), views over ``callback_outcome_rows`` and ``lead_outcome_rows``, which store
only what the views do not compute from their other columns, and names as one-byte codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import duckdb
import pandas as pd

from webhook_core.audit.schema import (
    CALLBACK_OUTCOME_ROWS,
    CALLBACK_OUTCOMES,
    CALLBACK_ROWS,
    CALLBACKS,
    DISPATCH_QUARANTINE,
    DISPATCHES,
    LEAD_OUTCOME_ROWS,
    LEAD_OUTCOMES,
    REPLAY_VERSIONS,
)
from webhook_core.domain import NOT_FOUND_BODY, LeadState, MatchedBy, Outcome
from webhook_core.exceptions import ReplayError
from webhook_core.load.schema import write_webhook_versions
from webhook_core.quoting import quote_identifier, quote_literal
from webhook_core.rules.extraction import BodyKind
from webhook_core.rules.keys import keys_fingerprint, keys_sql
from webhook_core.rules.settings import WebhookVersions
from webhook_core.timeutil import to_us

__all__ = ["CALLBACK_COLUMNS", "CALLBACK_ORDER", "LEAD_COLUMNS", "TOKEN_NEVER_CONFIGURED", "TOKEN_NOT_LIVE",
           "ReplayResult", "replay"]

CALLBACK_COLUMNS = (
    "request_id", "received_at", "webhook_id", "conversion_id", "external_id", "advertiser_id",
    "matched_by", "lead_id", "outcome", "status_code", "wait_s", "recorded_status", "seq", "token",
)
#: ``ORDER BY`` of ``callback_outcomes`` in judging order: the order of ``ord``, whose two parts
#: sort faster as plain columns than ``ord`` computed as one 16-byte key (docs/benchmarks.md).
CALLBACK_ORDER = "us, seq"
#: ``callback_outcomes.token_status`` of an ``unknown_token`` callback (M1), in words.
TOKEN_NOT_LIVE = "not live at received_at"  # the token is a configured webhook's: it was, or will be, live
TOKEN_NEVER_CONFIGURED = "never configured"  # no version in webhooks.json has this token
LEAD_COLUMNS = (
    "lead_id", "webhook_id", "created_at", "state", "finished_at", "wait_s", "callbacks",
    "first_callback_s", "conversion_id", "deadline",
)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Where the replay wrote its tables, and the observation end it used."""

    con: duckdb.DuckDBPyConnection
    observation_end: datetime | None

    def callbacks(self) -> pd.DataFrame:
        return self.con.execute(
            f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM {CALLBACK_OUTCOMES} ORDER BY {CALLBACK_ORDER}").df()

    def leads(self) -> pd.DataFrame:
        return self.con.execute(
            f"SELECT {', '.join(LEAD_COLUMNS)} FROM {LEAD_OUTCOMES} ORDER BY \"row\"").df()

    def outcome_counts(self) -> pd.DataFrame:
        """Callbacks per webhook (``(unknown)`` for unknown tokens) and outcome, wide."""
        outcomes = [o.value for o in Outcome]
        columns = ", ".join(f"count(*) FILTER (outcome = '{o}') AS {o}" for o in outcomes)
        return self.con.execute(f"""
            SELECT coalesce(webhook_id, '(unknown)') AS webhook_id, count(*) AS callbacks, {columns}
            FROM {CALLBACK_OUTCOMES} GROUP BY ALL ORDER BY webhook_id
        """).df()


def replay(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions, *,
           timeouts: Mapping[str | None, float] | None = None,
           observation_end: datetime | None = None, release_inputs: bool = False) -> ReplayResult:
    """Judge every row of ``callbacks`` against ``dispatches`` and write the outcome tables.

    After ``load_dataset(..., keep_requests=False)`` the callbacks are read from the keys the
    loader computed (``callback_keys``); ``webhooks`` must then have the load's pairing, status
    and active times (a :class:`ReplayError` says so otherwise).

    ``timeouts`` is a what-if: ``{None: 30}`` gives every webhook that waits a 30 s
    timeout, ``{"wh-acme": 60}`` one webhook (see ``WebhookVersions.with_timeouts``).
    ``release_inputs`` drops ``callbacks`` (or ``callback_keys``) and ``dispatches`` as soon as the replay has
    read them, and its own ``replay_leads`` once the outcome tables are written, for a
    one-shot run that only writes the outcomes (``webhook-audit replay`` without
    ``--database``): on large inputs their memory is what the later joins and sorts need.
    """
    keys_loaded = _keys_loaded(con, webhooks)
    if timeouts:
        webhooks = webhooks.with_timeouts(timeouts)
    write_webhook_versions(con, webhooks, table=REPLAY_VERSIONS)
    # A database written before the outcome tables became views holds them as tables.
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name IN (?, ?)",
                               [CALLBACK_OUTCOMES, LEAD_OUTCOMES]).fetchall():
        con.execute(f"DROP TABLE {quote_identifier(name)}")
    # Every table written here carries its own order (ord, row): DuckDB need not keep insertion
    # order, which lets it stream and spill with far less memory on large inputs.
    (preserve,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() or (True,)
    con.execute("SET preserve_insertion_order = false")
    try:
        end_us = to_us(observation_end) if observation_end is not None else _latest_us(con, keys_loaded)
        end_sql = "CAST(NULL AS BIGINT)" if end_us is None else str(end_us)
        quarantine_loaded = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                                        [DISPATCH_QUARANTINE]).fetchone() != (0,)
        con.execute(_build_sql(webhooks, end=end_sql, keys_loaded=keys_loaded, release_inputs=release_inputs,
                               quarantine_loaded=quarantine_loaded))
        con.execute(_LEADS_SQL.format(end=end_sql))
        if release_inputs:
            con.execute("DROP TABLE replay_leads")
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(preserve)}")
    end = con.execute(f"SELECT max(observation_end) FROM {LEAD_OUTCOMES}").fetchone()
    resolved_end = observation_end
    if resolved_end is None and end is not None and end[0] is not None:
        resolved_end = end[0]
    return ReplayResult(con, resolved_end)


#: Each lead with the settings it was dispatched under: the replay's own, a temporary table (what the
#: analyses need of it, ``waits`` and ``deadline``, ``lead_outcomes`` carries).
_REPLAY_LEADS_SQL = f"""
    CREATE OR REPLACE TEMP TABLE replay_leads AS
    SELECT d."row", d.lead_id, d.conversion_id, d.advertiser_id, d.external_id, d.webhook_id, d.created_at,
           epoch_us(d.created_at) AS created_us, v.wait AS waits,
           CASE WHEN v.wait AND v.timeout_us IS NOT NULL THEN epoch_us(d.created_at) + v.timeout_us END AS deadline_us
    FROM {DISPATCHES} d
    JOIN {REPLAY_VERSIONS} v
      ON v.webhook_id = d.webhook_id
     AND (v.active_from_us IS NULL OR v.active_from_us <= epoch_us(d.created_at))
     AND (v.active_to_us IS NULL OR epoch_us(d.created_at) < v.active_to_us);
"""


def _keys_loaded(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions) -> bool:
    """Whether the loader computed the callbacks' keys (``keep_requests=False``), for these settings."""
    row = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'callback_keys'").fetchone()
    if row is None:
        return False
    if row[0] != keys_fingerprint(webhooks):
        raise ReplayError("the callbacks were loaded with keep_requests=False for other webhook settings "
                          "(pairing, status or active times); load the dataset again with these settings, "
                          "or with keep_requests=True")
    return True


def _latest_us(con: duckdb.DuckDBPyConnection, keys_loaded: bool) -> int | None:
    """The default observation end: the latest timestamp in the data (W-rules)."""
    callbacks = ("SELECT max(us) FROM callback_keys" if keys_loaded
                 else f"SELECT max(epoch_us(received_at)) FROM {CALLBACK_ROWS}")
    row = con.execute(f"""
        SELECT max(t) FROM (SELECT max(epoch_us(created_at)) AS t FROM {DISPATCHES} UNION ALL {callbacks})
    """).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _build_sql(webhooks: WebhookVersions, *, end: str, keys_loaded: bool, release_inputs: bool = False,
               quarantine_loaded: bool = True) -> str:
    """SQL writing ``callback_outcomes`` (and, for ``_LEADS_SQL``, ``replay_leads`` and
    ``replay_lead_calls``); ``end`` is SQL for the observation end in epoch microseconds."""
    # The loader may have computed the callbacks' keys already (load_dataset(keep_requests=False)).
    parsed = "callback_keys" if keys_loaded else "replay_parsed"
    make_parsed = "" if keys_loaded else f"""
    CREATE OR REPLACE TEMP TABLE replay_parsed AS {keys_sql(webhooks, CALLBACK_ROWS)};
    """
    if keys_loaded:
        drop_parsed = "DROP TABLE callback_keys;" if release_inputs else ""
    else:
        drop_parsed = "DROP TABLE replay_parsed;"
    release = (f"DROP VIEW IF EXISTS {CALLBACKS}; DROP TABLE IF EXISTS {CALLBACK_ROWS}; DROP TABLE {DISPATCHES};"
               if release_inputs else "")
    not_found = quote_literal(NOT_FOUND_BODY.decode())
    # A callback that names no lead because its lead's dispatch was quarantined: the load's fault, not the
    # advertiser's. Its outcome stays the rules' (docs/analysis.md, "Quarantined leads").
    lead_quarantined = f"""coalesce(r.lead_row IS NULL AND r.webhook_id IS NOT NULL AND (
        r.conversion_id IN (SELECT conversion_id FROM {DISPATCH_QUARANTINE} WHERE conversion_id IS NOT NULL)
        OR (r.external_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM {DISPATCH_QUARANTINE} q
            WHERE q.external_id = r.external_id AND q.advertiser_id = r.advertiser_id))), false)""" \
        if quarantine_loaded else "false"
    return f"""
    {make_parsed}
    {_REPLAY_LEADS_SQL}
    {release}

    -- Conversion IDs are unique among leads (Q3): a callback's conversion ID names at most one lead.
    CREATE OR REPLACE TEMP TABLE replay_by_conversion AS
    SELECT i.*, l."row" AS c_row, l.lead_id AS c_lead_id, l.created_us AS c_created_us,
           l.deadline_us AS c_deadline_us, l.webhook_id AS c_webhook_id,
           coalesce(l.webhook_id = i.webhook_id, false) AS own
    FROM {parsed} i LEFT JOIN replay_leads l
      ON l.conversion_id = i.conversion_id AND i.webhook_id IS NOT NULL;
    {drop_parsed}

    -- The few callbacks it does not resolve on their own webhook try the external ID (M3), apart.
    CREATE OR REPLACE TEMP TABLE replay_by_external AS
    SELECT seq, lead_row, lead_id, created_us, deadline_us FROM (
        SELECT n.seq, l."row" AS lead_row, l.lead_id, l.created_us, l.deadline_us,
               row_number() OVER (
                   PARTITION BY n.seq
                   ORDER BY CASE WHEN l.created_us <= n.us THEN 0 ELSE 1 END,
                            CASE WHEN l.created_us <= n.us THEN l.created_us END DESC,
                            CASE WHEN l.created_us <= n.us THEN l."row" END DESC,
                            l.created_us, l."row") AS pick
        FROM (SELECT seq, us, webhook_id, advertiser_id, external_id FROM replay_by_conversion
              WHERE webhook_id IS NOT NULL AND external_id IS NOT NULL AND NOT own) n
        JOIN (SELECT * FROM replay_leads WHERE external_id IS NOT NULL) l
          ON l.webhook_id = n.webhook_id AND l.advertiser_id = n.advertiser_id AND l.external_id = n.external_id
    ) WHERE pick = 1;

    -- A view: both statements below read it, and joining the few resolved by external ID costs
    -- less than writing every callback once more.
    CREATE OR REPLACE TEMP VIEW replay_resolved AS
    SELECT *, {_ORD} AS ord, us < created_us AS is_early, deadline_us IS NOT NULL AND us > deadline_us AS is_late
    FROM (
        SELECT c.seq, c.request_id, c.us, c.recorded_status, c.refused, c.token, c.body_kind, c.webhook_id,
               c.conversion_id, c.external_id, c.advertiser_id, c.is_interim,
               CASE WHEN own THEN c_row ELSE e.lead_row END AS lead_row,
               CAST(CASE WHEN own THEN {_MATCHED_BY['conversion_id']}
                         WHEN e.lead_row IS NOT NULL THEN {_MATCHED_BY['external_id']} END AS UTINYINT) AS matched_by,
               -- wrong_webhook reports the other webhook's lead
               CASE WHEN own THEN c_lead_id ELSE coalesce(e.lead_id, c_lead_id) END AS lead_id,
               NOT own AND e.lead_row IS NULL AND c_row IS NOT NULL AS other_webhook,
               -- wrong_webhook: whose lead it named, so that webhook is told too (misrouted_in)
               CASE WHEN NOT own AND e.lead_row IS NULL THEN c_webhook_id END AS owner_webhook_id,
               CASE WHEN own THEN c_created_us ELSE e.created_us END AS created_us,
               CASE WHEN own THEN c_deadline_us ELSE e.deadline_us END AS deadline_us
        FROM replay_by_conversion c LEFT JOIN replay_by_external e ON e.seq = c.seq
    );

    -- Everything the outcome tables need to know of a lead's callbacks, in one pass. The wait finishes
    -- at the first callback that could finish it (the online matcher's only state); that callback is
    -- the lead's `matched` one, so its received_at is the least us among those that could.
    CREATE OR REPLACE TEMP TABLE replay_lead_calls AS
    SELECT lead_row,
           min(ord) FILTER (could_finish) AS finish_ord,
           min(us) FILTER (could_finish) AS finished_us,
           count(*) FILTER (us <= {end}) AS callbacks,
           -- us >= created_us is wait_s >= 0
           min(us) FILTER (us >= created_us AND us <= {end}) AS first_us
    FROM (SELECT lead_row, us, ord, created_us, NOT is_early AND NOT is_late AND NOT is_interim AS could_finish
          FROM replay_resolved WHERE lead_row IS NOT NULL)
    GROUP BY lead_row;

    -- Stored: what is not a function of the other columns (narrow rows spill less on large inputs).
    CREATE OR REPLACE TABLE {CALLBACK_OUTCOME_ROWS} AS
    SELECT r.seq, r.request_id, r.us, r.webhook_id, r.token, r.conversion_id, r.external_id, r.advertiser_id,
           r.matched_by, r.lead_id,
           CAST(CASE
               WHEN r.refused THEN {_OUTCOME['refused']}
               WHEN r.webhook_id IS NULL THEN {_OUTCOME['unknown_token']}
               WHEN r.conversion_id IS NULL AND r.external_id IS NULL THEN {_OUTCOME['no_identifiers']}
               WHEN r.other_webhook THEN {_OUTCOME['wrong_webhook']}
               WHEN r.lead_row IS NULL THEN {_OUTCOME['not_found']}
               WHEN r.is_early THEN {_OUTCOME['early']}
               WHEN r.ord > f.finish_ord THEN {_OUTCOME['duplicate']}
               WHEN r.is_late THEN {_OUTCOME['late']}
               WHEN r.is_interim THEN {_OUTCOME['interim']}
               ELSE {_OUTCOME['matched']}
           END AS UTINYINT) AS outcome,
           CASE WHEN r.lead_row IS NOT NULL THEN (r.us - r.created_us) / 1e6 END AS wait_s,
           r.recorded_status, r.lead_row, r.is_interim,
           CAST(CASE r.body_kind {_BODY_KIND_WHENS} END AS UTINYINT) AS body_kind,
           {lead_quarantined} AS lead_quarantined,
           r.owner_webhook_id,
           -- M1 with a configured webhook's token: a version of it was or will be live, not at received_at
           CASE WHEN NOT r.refused AND r.webhook_id IS NULL
                     AND r.token IN (SELECT webhook_id FROM {REPLAY_VERSIONS}) THEN r.token END AS token_webhook_id
    FROM replay_resolved r LEFT JOIN replay_lead_calls f ON f.lead_row = r.lead_row;

    DROP VIEW replay_resolved; DROP TABLE replay_by_external; DROP TABLE replay_by_conversion;
    """ + _CALLBACK_OUTCOMES_VIEW.format(not_found=not_found)


#: ``ord``, the judging order (received_at, file name, line) as one sortable key: seq (the file's rank
#: × 2^28 + its line, entry or row number; ``load/inputs.py``) is below 2^40.
_ORD = "CAST(us AS HUGEINT) * 1099511627776 + seq"

#: ``callback_outcome_rows`` stores the outcome, ``matched_by`` and ``body_kind`` as numbers (from 1,
#: UTINYINT): one byte instead of sixteen each.
def _codes(names: type[Enum]) -> dict[str, int]:
    """Each member's value and its code: its position in the enum, from 1."""
    return {member.value: code for code, member in enumerate(names, 1)}


_OUTCOME = _codes(Outcome)
_MATCHED_BY = _codes(MatchedBy)
_BODY_KIND = _codes(BodyKind)
_BODY_KIND_WHENS = " ".join(f"WHEN {quote_literal(kind)} THEN {code}" for kind, code in _BODY_KIND.items())


def _names(codes: dict[str, int]) -> str:
    """SQL: a list literal whose element ``code`` is its name."""
    return "[" + ", ".join(quote_literal(name) for name in codes) + "]"


#: The documented ``callback_outcomes`` over the stored rows.
_CALLBACK_OUTCOMES_VIEW = f"""
    CREATE OR REPLACE VIEW {CALLBACK_OUTCOMES} AS
    SELECT {_ORD} AS ord, seq, request_id, make_timestamptz(us) AS received_at,
           webhook_id, token, conversion_id, external_id, advertiser_id,
           {_names(_MATCHED_BY)}[matched_by] AS matched_by, lead_id, {_names(_OUTCOME)}[outcome] AS outcome,
           CASE WHEN outcome IN ({_OUTCOME['matched']}, {_OUTCOME['interim']}) THEN 200
                WHEN outcome = {_OUTCOME['refused']} THEN recorded_status ELSE 404 END AS status_code,
           CASE WHEN outcome NOT IN ({_OUTCOME['matched']}, {_OUTCOME['interim']}, {_OUTCOME['refused']})
                THEN {{not_found}} END AS response_body,
           wait_s, recorded_status, lead_row, us, is_interim, {_names(_BODY_KIND)}[body_kind] AS body_kind,
           lead_quarantined, owner_webhook_id, token_webhook_id,
           CASE WHEN outcome = {_OUTCOME['unknown_token']}
                THEN CASE WHEN token_webhook_id IS NOT NULL THEN {quote_literal(TOKEN_NOT_LIVE)}
                          ELSE {quote_literal(TOKEN_NEVER_CONFIGURED)} END END AS token_status
    FROM {CALLBACK_OUTCOME_ROWS};
"""


_STATE = _codes(LeadState)

#: ``lead_outcome_rows`` (the state as a one-byte code, times in epoch microseconds) and the
#: documented ``lead_outcomes`` over it; ``{end}`` is the observation end, SQL in epoch microseconds.
_LEADS_SQL = f"""
    CREATE OR REPLACE TABLE {LEAD_OUTCOME_ROWS} AS
    SELECT l."row", l.lead_id, l.webhook_id, l.created_us,
           CAST(CASE
               WHEN p.finished_us <= {{end}} THEN {_STATE['received']}
               WHEN l.deadline_us IS NOT NULL AND {{end}} > l.deadline_us THEN {_STATE['timed_out']}
               ELSE {_STATE['waiting']}
           END AS UTINYINT) AS state,
           CASE WHEN p.finished_us <= {{end}} THEN p.finished_us END AS finished_us,
           coalesce(p.callbacks, 0) AS callbacks, p.first_us, l.conversion_id, l.deadline_us, l.waits
    FROM replay_leads l LEFT JOIN replay_lead_calls p ON p.lead_row = l."row";
    DROP TABLE replay_lead_calls;

    CREATE OR REPLACE VIEW {LEAD_OUTCOMES} AS
    SELECT "row", lead_id, webhook_id, make_timestamptz(created_us) AS created_at,
           {_names(_STATE)}[state] AS state, make_timestamptz(finished_us) AS finished_at,
           (finished_us - created_us) / 1e6 AS wait_s, callbacks, (first_us - created_us) / 1e6 AS first_callback_s,
           conversion_id, make_timestamptz(deadline_us) AS deadline, make_timestamptz({{end}}) AS observation_end,
           waits
    FROM {LEAD_OUTCOME_ROWS};
"""
