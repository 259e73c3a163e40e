"""The set-based replay: every captured callback judged at once, in DuckDB SQL.

It states the rules of docs/semantics.md ("Matching", "Lead states") as joins and
window functions over the loaded tables; the only state the online matcher
carries (whether a lead's wait has finished) becomes "the first callback that
could finish the wait, by ``(received_at, input order)``", a window minimum.
The online matcher in ``matching.py`` is the oracle this is tested against.

Tables written: ``callback_outcomes`` and ``lead_outcomes`` (columns in
docs/semantics.md, "Outputs").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from webhook_core.extraction import STANDARD_NAMES
from webhook_core.loading import write_webhook_versions
from webhook_core.locations import Location, LocationKind
from webhook_core.matching import NOT_FOUND_BODY, Outcome, to_us
from webhook_core.settings import IDENTIFIERS, WebhookVersions
from webhook_core.sql import json_pointer, location_sql, quote_literal, standard_sql

__all__ = ["CALLBACK_COLUMNS", "LEAD_COLUMNS", "ReplayResult", "replay"]

CALLBACK_COLUMNS = (
    "request_id", "received_at", "webhook_id", "conversion_id", "external_id", "advertiser_id",
    "matched_by", "lead_id", "outcome", "status_code", "wait_s", "recorded_status", "seq", "token",
)
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
            f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM callback_outcomes ORDER BY ord").df()

    def leads(self) -> pd.DataFrame:
        return self.con.execute(
            f"SELECT {', '.join(LEAD_COLUMNS)} FROM lead_outcomes ORDER BY \"row\"").df()

    def outcome_counts(self) -> pd.DataFrame:
        """Callbacks per webhook (``(unknown)`` for unknown tokens) and outcome, wide."""
        outcomes = [o.value for o in Outcome]
        columns = ", ".join(f"count(*) FILTER (outcome = '{o}') AS {o}" for o in outcomes)
        return self.con.execute(f"""
            SELECT coalesce(webhook_id, '(unknown)') AS webhook_id, count(*) AS callbacks, {columns}
            FROM callback_outcomes GROUP BY ALL ORDER BY webhook_id
        """).df()


def replay(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions, *,
           timeouts: Mapping[str | None, float] | None = None,
           observation_end: datetime | None = None) -> ReplayResult:
    """Judge every row of ``callbacks`` against ``dispatches`` and write the outcome tables.

    ``timeouts`` is a what-if: ``{None: 30}`` gives every webhook that waits a 30 s
    timeout, ``{"wh-acme": 60}`` one webhook (see ``WebhookVersions.with_timeouts``).
    """
    if timeouts:
        webhooks = webhooks.with_timeouts(timeouts)
    write_webhook_versions(con, webhooks, table="replay_versions")
    con.execute("DROP TABLE IF EXISTS request_values")  # pairing.py's values belong to one replay
    con.execute(_build_sql(webhooks))
    end_us = to_us(observation_end) if observation_end is not None else None
    con.execute(_LEADS_SQL.format(end=_end_sql(end_us)))
    end = con.execute("SELECT max(observation_end) FROM lead_outcomes").fetchone()
    resolved_end = observation_end
    if resolved_end is None and end is not None and end[0] is not None:
        resolved_end = end[0]
    return ReplayResult(con, resolved_end)


def _end_sql(end_us: int | None) -> str:
    if end_us is not None:
        return str(end_us)
    return """(SELECT max(t) FROM (SELECT max(epoch_us(created_at)) AS t FROM dispatches
                                  UNION ALL SELECT max(epoch_us(received_at)) FROM callbacks))"""


def _build_sql(webhooks: WebhookVersions) -> str:
    # Every distinct location any version reads is computed once per callback.
    locations: dict[Location, str] = {}

    def column(location: Location) -> str:
        return locations.setdefault(location, f"loc_{len(locations)}")

    identifier_cases = {}
    for identifier in IDENTIFIERS:
        branches = []
        for number, version in enumerate(webhooks.versions):
            configured = [column(loc) for loc in version.pairing_for(identifier)]
            if configured:
                branches.append(f"WHEN {number} THEN coalesce({', '.join(configured)}, std_{identifier})")
        body = " ".join(branches)
        identifier_cases[identifier] = (f"CASE version_no {body} ELSE std_{identifier} END"
                                        if branches else f"std_{identifier}")
    interim_branches = []
    for number, version in enumerate(webhooks.versions):
        if version.status_location is not None and version.interim_statuses:
            statuses = ", ".join(quote_literal(s) for s in sorted(version.interim_statuses))
            status = column(version.status_location)
            interim_branches.append(f"WHEN {number} THEN coalesce({status} IN ({statuses}), false)")
    interim_case = (f"CASE version_no {' '.join(interim_branches)} ELSE false END"
                    if interim_branches else "false")

    # Every JSON value any location reads comes from one json_extract (one parse) per body.
    pointers = [json_pointer((name,)) for name in STANDARD_NAMES.values()]
    pointers += [json_pointer(loc.path) for loc in locations if loc.kind is LocationKind.JSON]
    slots = {pointer: index for index, pointer in enumerate(dict.fromkeys(pointers), 1)}
    json_list = ", ".join(quote_literal(pointer) for pointer in slots)
    location_columns = "".join(
        f",\n            {location_sql(loc, slots)} AS {name}" for loc, name in locations.items())
    standard_columns = "".join(
        f",\n            {standard_sql(name, slots)} AS std_{identifier}" for identifier, name in STANDARD_NAMES.items()
    )
    not_found = quote_literal(NOT_FOUND_BODY.decode())
    return f"""
    CREATE OR REPLACE TEMP TABLE replay_parsed AS
    WITH base AS (
        SELECT seq, request_id, received_at, epoch_us(received_at) AS us, url, headers, body, recorded_status,
               wa_token(url) AS token,
               wa_parse_pairs(wa_query(url)) AS query_pairs,
               CASE WHEN body IS NULL OR body = '' THEN NULL ELSE try_cast(body AS JSON) END AS body_json
        FROM callbacks
    ),
    kinds AS (
        SELECT *,
            CASE
                WHEN body IS NULL OR body = '' THEN 'empty'
                WHEN body_json IS NOT NULL THEN 'json'
                WHEN ltrim(body, ' \t\r\n')[1] IN ('{{', '[')
                     OR contains(wa_ascii_lower(coalesce(wa_header(headers, 'content-type'), '')), 'json')
                    THEN 'invalid_json'
                ELSE 'form'
            END AS body_kind
        FROM base
    ),
    located AS (
        SELECT kinds.*,
            CASE WHEN body_kind = 'form' THEN wa_parse_pairs(body) ELSE [] END AS form_pairs,
            CASE WHEN body_kind = 'json' THEN json_extract(body_json, [{json_list}]) END AS json_vals
        FROM kinds
    )
    SELECT seq, request_id, received_at, us, recorded_status, token, body_kind, version_no,
           v.webhook_id AS webhook_id, v.advertiser_id AS version_advertiser{location_columns}{standard_columns}
    FROM located
    LEFT JOIN replay_versions v
      ON v.webhook_id = located.token
     AND (v.active_from_us IS NULL OR v.active_from_us <= located.us)
     AND (v.active_to_us IS NULL OR located.us < v.active_to_us);

    CREATE OR REPLACE TEMP TABLE replay_ids AS
    SELECT seq, request_id, received_at, us, recorded_status, token, body_kind, version_no, webhook_id,
           {identifier_cases['conversion_id']} AS conversion_id,
           {identifier_cases['external_id']} AS external_id,
           coalesce({identifier_cases['advertiser_id']}, version_advertiser) AS advertiser_id,
           {interim_case} AS is_interim,
           row_number() OVER (ORDER BY us, seq) AS ord
    FROM replay_parsed
    WHERE webhook_id IS NOT NULL;

    CREATE OR REPLACE TEMP TABLE replay_leads AS
    SELECT d."row", d.lead_id, d.conversion_id, d.advertiser_id, d.external_id, d.webhook_id, d.created_at,
           epoch_us(d.created_at) AS created_us, v.wait AS waits,
           CASE WHEN v.wait AND v.timeout_us IS NOT NULL THEN epoch_us(d.created_at) + v.timeout_us END AS deadline_us
    FROM dispatches d
    JOIN replay_versions v
      ON v.webhook_id = d.webhook_id
     AND (v.active_from_us IS NULL OR v.active_from_us <= epoch_us(d.created_at))
     AND (v.active_to_us IS NULL OR epoch_us(d.created_at) < v.active_to_us);

    CREATE OR REPLACE TEMP TABLE replay_resolved AS
    WITH by_conversion AS (
        SELECT i.ord, l."row" AS lead_row, l.webhook_id = i.webhook_id AS own
        FROM replay_ids i JOIN replay_leads l ON l.conversion_id = i.conversion_id
    ),
    need_external AS (
        SELECT i.* FROM replay_ids i
        LEFT JOIN by_conversion c ON c.ord = i.ord AND c.own
        WHERE c.ord IS NULL AND i.external_id IS NOT NULL
    ),
    by_external AS (
        SELECT ord, lead_row FROM (
            SELECT n.ord, l."row" AS lead_row,
                   row_number() OVER (
                       PARTITION BY n.ord
                       ORDER BY CASE WHEN l.created_us <= n.us THEN 0 ELSE 1 END,
                                CASE WHEN l.created_us <= n.us THEN l.created_us END DESC,
                                CASE WHEN l.created_us <= n.us THEN l."row" END DESC,
                                l.created_us, l."row") AS pick
            FROM need_external n
            JOIN replay_leads l
              ON l.webhook_id = n.webhook_id AND l.advertiser_id = n.advertiser_id
             AND l.external_id = n.external_id
        ) WHERE pick = 1
    )
    SELECT i.*,
           CASE WHEN c.own THEN c.lead_row ELSE e.lead_row END AS lead_row,
           CASE WHEN c.own THEN 'conversion_id' WHEN e.lead_row IS NOT NULL THEN 'external_id' END AS matched_by,
           CASE WHEN NOT c.own THEN c.lead_row END AS other_lead_row
    FROM replay_ids i
    LEFT JOIN by_conversion c ON c.ord = i.ord
    LEFT JOIN by_external e ON e.ord = i.ord;

    CREATE OR REPLACE TABLE callback_outcomes AS
    WITH judged AS (
        SELECT r.*, l.lead_id, l.created_us, l.deadline_us,
               r.us < l.created_us AS is_early,
               l.deadline_us IS NOT NULL AND r.us > l.deadline_us AS is_late
        FROM replay_resolved r LEFT JOIN replay_leads l ON l."row" = r.lead_row
    ),
    finishing AS (
        SELECT *,
            min(CASE WHEN lead_row IS NOT NULL AND NOT is_early AND NOT is_late AND NOT is_interim THEN ord END)
                OVER (PARTITION BY lead_row) AS finish_ord
        FROM judged
    ),
    resolved AS (
        SELECT f.ord, f.seq, f.request_id, f.received_at, f.us, f.webhook_id, f.token, f.conversion_id,
               f.external_id, f.advertiser_id, f.matched_by, f.recorded_status, f.lead_row, f.created_us,
               f.is_interim, f.body_kind,
               coalesce(f.lead_id, o.lead_id) AS lead_id,
               CASE
                   WHEN f.conversion_id IS NULL AND f.external_id IS NULL THEN 'no_identifiers'
                   WHEN f.lead_row IS NULL AND f.other_lead_row IS NOT NULL THEN 'wrong_webhook'
                   WHEN f.lead_row IS NULL THEN 'not_found'
                   WHEN f.is_early THEN 'early'
                   WHEN f.ord > f.finish_ord THEN 'duplicate'
                   WHEN f.is_late THEN 'late'
                   WHEN f.is_interim THEN 'interim'
                   ELSE 'matched'
               END AS outcome
        FROM finishing f LEFT JOIN replay_leads o ON o."row" = f.other_lead_row
    ),
    unknown AS (
        SELECT seq, request_id, received_at, us, token, recorded_status, body_kind
        FROM replay_parsed WHERE webhook_id IS NULL
    ),
    everything AS (
        SELECT seq, request_id, received_at, us, webhook_id, token, conversion_id, external_id, advertiser_id,
               matched_by, lead_id, outcome, recorded_status, lead_row,
               CASE WHEN lead_row IS NOT NULL THEN (us - created_us) / 1e6 END AS wait_s, is_interim, body_kind
        FROM resolved
        UNION ALL
        SELECT seq, request_id, received_at, us, NULL, token, NULL, NULL, NULL,
               NULL, NULL, 'unknown_token', recorded_status, NULL, NULL, false, body_kind
        FROM unknown
    )
    SELECT row_number() OVER (ORDER BY us, seq) AS ord, seq, request_id, received_at, webhook_id, token,
           conversion_id, external_id, advertiser_id, matched_by, lead_id, outcome,
           CASE WHEN outcome IN ('matched', 'interim') THEN 200 ELSE 404 END AS status_code,
           CASE WHEN outcome IN ('matched', 'interim') THEN NULL ELSE {not_found} END AS response_body,
           wait_s, recorded_status, lead_row, us, is_interim, body_kind
    FROM everything
    ORDER BY ord;

    DROP TABLE replay_parsed; DROP TABLE replay_ids; DROP TABLE replay_resolved;
    """


_LEADS_SQL = """
    CREATE OR REPLACE TABLE lead_outcomes AS
    WITH ends AS (SELECT {end} AS end_us),
    per_lead AS (
        SELECT lead_row,
               min(us) FILTER (outcome = 'matched') AS finished_us,
               count(*) FILTER (us <= (SELECT end_us FROM ends)) AS callbacks,
               min(us) FILTER (us >= created_us AND us <= (SELECT end_us FROM ends)) AS first_us
        FROM callback_outcomes c JOIN replay_leads l ON l."row" = c.lead_row
        GROUP BY lead_row
    )
    SELECT l."row", l.lead_id, l.webhook_id, l.created_at,
           CASE
               WHEN p.finished_us <= e.end_us THEN 'received'
               WHEN l.deadline_us IS NOT NULL AND e.end_us > l.deadline_us THEN 'timed_out'
               ELSE 'waiting'
           END AS state,
           CASE WHEN p.finished_us <= e.end_us THEN make_timestamptz(p.finished_us) END AS finished_at,
           CASE WHEN p.finished_us <= e.end_us THEN (p.finished_us - l.created_us) / 1e6 END AS wait_s,
           coalesce(p.callbacks, 0) AS callbacks,
           (p.first_us - l.created_us) / 1e6 AS first_callback_s,
           l.conversion_id,
           make_timestamptz(l.deadline_us) AS deadline,
           make_timestamptz(e.end_us) AS observation_end
    FROM replay_leads l
    CROSS JOIN ends e
    LEFT JOIN per_lead p ON p.lead_row = l."row"
    ORDER BY l."row";
"""
