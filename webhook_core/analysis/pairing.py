"""Lead ID pairing: is each advertiser's ID where its settings say, and where else is it?

Three reports, all set-based over the replay's tables:

* :func:`pairing_validation` — for every webhook, identifier and location it reads
  (configured pairing rules, then the standard names): callbacks, how many carry a
  value there, how many of those values name a lead of this webhook, and how many
  name a lead of another webhook.
* :func:`discover_locations` — every location present in the captured requests
  (query and form parameters, JSON leaf paths, headers) whose values equal a
  conversion ID or external ID of that webhook's leads: ``support`` (callbacks
  whose value there names a lead) and ``precision`` (support ÷ callbacks carrying
  the location). ``unmapped`` marks a location that is neither configured nor a
  standard name: the replay does not read it, so it needs a pairing rule.
* :func:`near_misses` — how many ``not_found`` / ``no_identifiers`` callbacks would
  resolve after a normalisation (trimming, case-folding, URL-decoding again,
  leading zeros, numeric value) or by reading an unmapped location. Reported per
  transform; never applied to the replay.

Values are read by the rules of docs/semantics.md (L1–L6): the first non-empty
occurrence; JSON paths as dot paths (array indexes as numbers); header names in
lower case.
"""

from __future__ import annotations

import pandas as pd

from webhook_core.audit.audit import Audit
from webhook_core.audit.schema import CALLBACK_OUTCOMES, CALLBACKS, DISPATCHES
from webhook_core.quoting import quote_literal
from webhook_core.rules.extraction import STANDARD_NAMES
from webhook_core.rules.settings import IDENTIFIERS, WebhookVersions

__all__ = ["EVERY_VALUE", "NEAR_MISS_TRANSFORMS", "discover_locations", "near_miss_rescues", "near_misses",
           "pairing_validation"]

#: Transform name → (SQL applied to the callback's value, SQL applied to the lead's key); ``{}`` is the column.
NEAR_MISS_TRANSFORMS = {
    "trim": ("trim({})", "{}"),
    "case_fold": ("lower({})", "lower({})"),
    "url_decode": ("wa_pct_decode(replace({}, '+', ' '))", "{}"),
    "leading_zeros": ("ltrim({}, '0')", "ltrim({}, '0')"),
    "numeric": ("try_cast({} AS DECIMAL(38, 6))", "try_cast({} AS DECIMAL(38, 6))"),
}


#: ``(seq, webhook_id, location, value)``: every value of every live callback, a temporary table of
#: this module's own (beside a read-only database too).
_REQUEST_VALUES = "pairing_request_values"
#: The same for the unresolved callbacks alone (``not_found``, ``no_identifiers``): all that the near misses
#: read, a small share of the callbacks, so the evidence of 404s does not pay for discovery.
_UNRESOLVED_VALUES = "pairing_unresolved_values"
_UNRESOLVED = "('not_found', 'no_identifiers')"


def _every_value(unresolved_only: bool) -> str:
    """SQL: ``(seq, webhook_id, location, value, pos)`` for every value of every live callback (or only of the
    unresolved ones) — query and form pairs, headers, JSON leaves — each occurrence, blank ones included."""
    return f"""
        WITH live AS (
            SELECT c.seq, o.webhook_id, c.url, c.headers, c.body, o.body_kind
            FROM {CALLBACKS} c JOIN {CALLBACK_OUTCOMES} o USING (seq)
            WHERE o.webhook_id IS NOT NULL {f"AND o.outcome IN {_UNRESOLVED}" if unresolved_only else ""}
        ),
        query_values AS (
            SELECT seq, webhook_id, 'query.' || p.k AS location, p.v AS value, p.pos AS pos
            FROM (SELECT seq, webhook_id,
                         unnest(list_transform(wa_parse_pairs(wa_query(url)),
                                               lambda x, i: {{'k': x.k, 'v': x.v, 'pos': i}})) AS p
                  FROM live)
        ),
        form_values AS (
            SELECT seq, webhook_id, 'form.' || p.k, p.v, p.pos
            FROM (SELECT seq, webhook_id,
                         unnest(list_transform(wa_parse_pairs(body),
                                               lambda x, i: {{'k': x.k, 'v': x.v, 'pos': i}})) AS p
                  FROM live WHERE body_kind = 'form')
        ),
        header_values AS (
            SELECT seq, webhook_id, 'header.' || wa_ascii_lower(h.name), h.value, h.pos
            FROM (SELECT seq, webhook_id,
                         unnest(list_transform(headers, lambda x, i: {{'name': x.name, 'value': x.value, 'pos': i}}))
                             AS h
                  FROM live)
        ),
        json_values AS (
            SELECT l.seq, l.webhook_id,
                   'json.' || regexp_replace(regexp_replace(t.fullkey, '^\\$\\.?', ''), '\\[([0-9]+)\\]', '.\\1', 'g'),
                   wa_json_text(t.value), t.id
            FROM (SELECT *, CAST(body AS JSON) AS j FROM live WHERE body_kind = 'json') l, json_tree(l.j) t
            WHERE t.type NOT IN ('OBJECT', 'ARRAY') AND strpos(t.fullkey, '"') = 0 AND t.fullkey <> '$'
        ),
        everything AS (
            SELECT * FROM query_values UNION ALL SELECT * FROM form_values
            UNION ALL SELECT * FROM header_values UNION ALL SELECT * FROM json_values
        )
        SELECT * FROM everything
    """


#: Every value of every live callback (:func:`_every_value`). Discovery reads them all: the floor of its work
#: (``benchmarks/pairing_floor.py`` times it alone).
EVERY_VALUE = _every_value(False)


def _request_values(audit: Audit, *, unresolved_only: bool = False) -> str:
    """The table of request values (the first non-empty value per location, L1–L6), written once per audit
    and shared by the reports below: :data:`_REQUEST_VALUES`, or with ``unresolved_only`` (unless that one
    is written already) :data:`_UNRESOLVED_VALUES`."""
    if audit.cache.get(_REQUEST_VALUES):
        return _REQUEST_VALUES
    table = _UNRESOLVED_VALUES if unresolved_only else _REQUEST_VALUES
    if not audit.cache.get(table):
        audit.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {table} AS
            SELECT seq, webhook_id, location, arg_min(value, pos) AS value
            FROM ({_every_value(unresolved_only)})
            WHERE value IS NOT NULL AND value <> ''
            GROUP BY seq, webhook_id, location
        """)
        audit.cache[table] = True
    return table


def _expected_locations(webhooks: WebhookVersions) -> str:
    """VALUES of (webhook_id, identifier, location, source, rank): what the replay reads, in order."""
    rows: dict[tuple[str, str, str], tuple[str, int]] = {}
    for version in webhooks.versions:
        for identifier in IDENTIFIERS:
            rank = 0
            for location in version.pairing_for(identifier):
                text = str(location) if location.kind.value != "header" else f"header.{location.name.lower()}"
                rows.setdefault((version.webhook_id, identifier, text), ("pairing", rank))
                rank += 1
            name = STANDARD_NAMES[identifier]
            for kind in ("query", "form", "json"):
                rows.setdefault((version.webhook_id, identifier, f"{kind}.{name}"), ("standard", rank))
                rank += 1
    return ", ".join(
        f"({quote_literal(w)}, {quote_literal(i)}, {quote_literal(loc)}, {quote_literal(src)}, {rank})"
        for (w, i, loc), (src, rank) in rows.items())


_LEAD_KEYS = f"""
    SELECT webhook_id, 'conversion_id' AS identifier, conversion_id AS k FROM {DISPATCHES}
    UNION ALL
    SELECT webhook_id, 'external_id', external_id FROM {DISPATCHES} WHERE external_id IS NOT NULL
    UNION ALL
    SELECT DISTINCT webhook_id, 'advertiser_id', advertiser_id FROM {DISPATCHES}
"""


def pairing_validation(audit: Audit) -> pd.DataFrame:
    """Per webhook, identifier and location the replay reads: callbacks, values there, and where they lead."""
    _request_values(audit)
    return audit.con.execute(f"""
        WITH expected(webhook_id, identifier, location, source, rank) AS (
            VALUES {_expected_locations(audit.webhooks)}),
        per_webhook AS (
            SELECT webhook_id, count(*) AS callbacks FROM {CALLBACK_OUTCOMES}
            WHERE webhook_id IS NOT NULL GROUP BY webhook_id
        ),
        keys AS ({_LEAD_KEYS}),
        found AS (
            SELECT e.webhook_id, e.identifier, e.location, v.seq, v.value,
                   EXISTS (SELECT 1 FROM keys k WHERE k.webhook_id = e.webhook_id AND k.identifier = e.identifier
                                                 AND k.k = v.value) AS here,
                   EXISTS (SELECT 1 FROM keys k WHERE k.webhook_id <> e.webhook_id AND k.identifier = e.identifier
                                                 AND k.k = v.value) AS elsewhere
            FROM expected e JOIN {_REQUEST_VALUES} v ON v.webhook_id = e.webhook_id AND v.location = e.location
        )
        SELECT e.webhook_id, e.identifier, e.location, e.source, coalesce(p.callbacks, 0) AS callbacks,
               count(f.seq) AS present,
               count(f.seq) FILTER (f.here) AS resolves_here,
               count(f.seq) FILTER (f.elsewhere AND NOT f.here) AS resolves_elsewhere,
               count(f.seq) FILTER (f.here) / nullif(count(f.seq), 0) AS precision
        FROM expected e
        LEFT JOIN per_webhook p USING (webhook_id)
        LEFT JOIN found f USING (webhook_id, identifier, location)
        GROUP BY e.webhook_id, e.identifier, e.location, e.source, e.rank, p.callbacks
        ORDER BY e.webhook_id, e.identifier, e.rank
    """).df()


def discover_locations(audit: Audit, *, min_support: int = 1) -> pd.DataFrame:
    """Locations whose values name this webhook's leads, best supported first per webhook and identifier."""
    _request_values(audit)
    return audit.con.execute(f"""
        WITH expected(webhook_id, identifier, location, source, rank) AS (
            VALUES {_expected_locations(audit.webhooks)}),
        keys AS ({_LEAD_KEYS}),
        carried AS (SELECT webhook_id, location, count(*) AS present FROM {_REQUEST_VALUES} GROUP BY ALL),
        hits AS (
            SELECT v.webhook_id, k.identifier, v.location, count(DISTINCT v.seq) AS support
            FROM {_REQUEST_VALUES} v
            JOIN (SELECT DISTINCT webhook_id, identifier, k FROM keys WHERE identifier <> 'advertiser_id') k
              ON k.webhook_id = v.webhook_id AND k.k = v.value
            GROUP BY ALL
        )
        SELECT h.webhook_id, h.identifier, h.location, h.support, c.present,
               h.support / c.present AS precision,
               coalesce(e.source, 'unmapped') AS configured_as,
               e.source IS NULL AS unmapped
        FROM hits h JOIN carried c USING (webhook_id, location)
        LEFT JOIN expected e USING (webhook_id, identifier, location)
        WHERE h.support >= {int(min_support)}
        ORDER BY h.webhook_id, h.identifier, h.support DESC, h.location
    """).df()


def near_miss_rescues(audit: Audit) -> str:
    """SQL: one row per ``not_found`` / ``no_identifiers`` callback and way a near-miss rescues it.

    Columns ``seq, webhook_id, transform`` (a :data:`NEAR_MISS_TRANSFORMS` name or ``unmapped_location``),
    ``identifier``, ``value`` (the callback's), ``lead_key`` (the lead's value it equals once transformed;
    NULL for ``unmapped_location``) and ``location`` (where an unmapped value was found; NULL otherwise).
    The per-callback form of :func:`near_misses` (``webhook_core.analysis.evidence`` names each rescue).
    """
    values = _request_values(audit, unresolved_only=True)
    branches = []
    for name, (value_sql, key_sql) in NEAR_MISS_TRANSFORMS.items():
        # An equi-join on the transformed value: a hash join, never misses × leads.
        branches.append(f"""
            SELECT DISTINCT m.seq, m.webhook_id, '{name}' AS transform, m.identifier, m.v AS value,
                   l.k AS lead_key, NULL::VARCHAR AS location
            FROM (SELECT *, {value_sql.format("v")} AS tv FROM misses) m
            JOIN (SELECT *, {key_sql.format("k")} AS tk FROM keyed_leads) l
              ON l.webhook_id = m.webhook_id AND l.identifier = m.identifier AND l.tk = m.tv
            WHERE m.v <> l.k AND (m.identifier = 'conversion_id' OR l.advertiser_id = m.advertiser_id)""")
    union = " UNION ALL ".join(branches)
    return f"""
        WITH keys AS ({_LEAD_KEYS}),
        keyed_leads AS (
            SELECT webhook_id, advertiser_id, 'conversion_id' AS identifier, conversion_id AS k FROM {DISPATCHES}
            UNION ALL
            SELECT webhook_id, advertiser_id, 'external_id', external_id FROM {DISPATCHES}
            WHERE external_id IS NOT NULL
        ),
        expected(webhook_id, identifier, location, source, rank) AS (
            VALUES {_expected_locations(audit.webhooks)}),
        candidates AS (
            SELECT seq, webhook_id, outcome FROM {CALLBACK_OUTCOMES}
            WHERE outcome IN {_UNRESOLVED}
        ),
        misses AS (
            SELECT seq, webhook_id, 'conversion_id' AS identifier, conversion_id AS v, advertiser_id
            FROM {CALLBACK_OUTCOMES} WHERE outcome = 'not_found' AND conversion_id IS NOT NULL
            UNION ALL
            SELECT seq, webhook_id, 'external_id', external_id, advertiser_id
            FROM {CALLBACK_OUTCOMES} WHERE outcome = 'not_found' AND external_id IS NOT NULL
        )
        {union}
        UNION ALL
        SELECT DISTINCT c.seq, c.webhook_id, 'unmapped_location', k.identifier, v.value, NULL, v.location
        FROM candidates c
        JOIN {values} v ON v.seq = c.seq
        JOIN keys k ON k.webhook_id = c.webhook_id AND k.k = v.value AND k.identifier <> 'advertiser_id'
        WHERE NOT EXISTS (SELECT 1 FROM expected e WHERE e.webhook_id = c.webhook_id
                                                    AND e.identifier = k.identifier AND e.location = v.location)
    """


def near_misses(audit: Audit) -> pd.DataFrame:
    """Per webhook and transform: ``not_found`` / ``no_identifiers`` callbacks it would rescue.

    An external ID only names a lead together with the callback's advertiser ID (M3),
    here as in the replay. ``unmapped_location`` counts values at locations the replay
    does *not* read for that identifier.
    """
    return audit.con.execute(f"""
        WITH rescued AS ({near_miss_rescues(audit)}),
        candidates AS (
            SELECT seq, webhook_id, outcome FROM {CALLBACK_OUTCOMES}
            WHERE outcome IN {_UNRESOLVED}
        ),
        totals AS (
            SELECT webhook_id, count(*) FILTER (outcome = 'not_found') AS not_found,
                   count(*) FILTER (outcome = 'no_identifiers') AS no_identifiers
            FROM candidates GROUP BY webhook_id
        ),
        transforms(transform, position) AS (
            VALUES {", ".join(f"('{t}', {i})" for i, t in enumerate([*NEAR_MISS_TRANSFORMS, "unmapped_location"]))}
        )
        SELECT t.webhook_id, x.transform, t.not_found, t.no_identifiers,
               count(DISTINCT r.seq) AS rescued,
               count(DISTINCT r.seq) / (t.not_found + t.no_identifiers) AS rescued_share
        FROM totals t CROSS JOIN transforms x
        LEFT JOIN rescued r ON r.webhook_id = t.webhook_id AND r.transform = x.transform
        GROUP BY t.webhook_id, x.transform, x.position, t.not_found, t.no_identifiers
        ORDER BY t.webhook_id, x.position
    """).df()
