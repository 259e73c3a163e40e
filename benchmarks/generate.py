"""Generate a synthetic dataset folder (docs/semantics.md, section I) with DuckDB, set-based.

``python -m benchmarks.generate DIR --n 1000000`` writes ``DIR/webhooks.json``,
``DIR/dispatches.csv`` (N leads) and ``DIR/callbacks.jsonl`` (N callbacks).
No Python loop per row: every file is one ``COPY (SELECT ... FROM range(N))``.

The mix (per mille of callbacks, by a hash of the callback number):

* 5 unknown token, 5 not_found (a pcid no lead has), 2 no identifiers,
  2 wrong webhook (the lead's pcid sent to another webhook's token);
* 50 duplicates (a second callback for the previous lead, which then gets none);
* 10 early (received before the lead was created), 20 late (after the timeout);
* the rest answered 0.2 s to ~100 s after the lead was created.

Leads are spread over ten webhooks. Most callbacks carry ``pcid`` in the query
string; others are paired by ``json.data.ref``, ``header.X-Lead-Id``,
``query.ref``, a top-level JSON ``pcid``, a form body, or ``external_id``
(``query.click_id``); ``wh-04`` reads its status from ``json.status`` and treats
``pending`` / ``processing`` as interim; ``wh-09`` has two versions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb

GENERATOR_VERSION = 1
HOST = "https://hooks.paldock.example/webhooks/"
BASE = "2026-03-01 00:00:00"        # first lead, UTC
SPAN_US = 30 * 86_400 * 1_000_000   # leads are spread over 30 days
SPLIT = "2026-03-16T00:00:00Z"      # wh-09 is recreated here

# (webhook, share of leads in %, settings)
WEBHOOKS: list[tuple[str, int, dict]] = [
    ("wh-00", 35, {"wait": True, "timeout_s": 3600}),
    ("wh-01", 5, {"wait": True, "timeout_s": 600,
                  "pairing": [{"identifier": "conversion_id", "location": "json.data.ref"}]}),
    ("wh-02", 4, {"wait": True,
                  "pairing": [{"identifier": "conversion_id", "location": "header.X-Lead-Id"}]}),
    ("wh-03", 5, {"wait": True, "timeout_s": 900,
                  "pairing": [{"identifier": "conversion_id", "location": "query.ref"}]}),
    ("wh-04", 10, {"wait": True, "timeout_s": 7200, "status_location": "json.status",
                   "interim_statuses": ["pending", "processing"]}),
    ("wh-05", 8, {"wait": True, "timeout_s": 3600,
                  "pairing": [{"identifier": "external_id", "location": "query.click_id"}]}),
    ("wh-06", 5, {"wait": True, "timeout_s": 1800}),
    ("wh-07", 3, {"wait": True, "timeout_s": 300}),
    ("wh-08", 15, {"wait": True}),
    ("wh-09", 10, {"wait": False}),
]


def webhooks_json() -> list[dict]:
    entries = []
    for number, (webhook, _, settings) in enumerate(WEBHOOKS):
        entry = {"webhook_id": webhook, "advertiser_id": f"adv-{number:02d}", **settings}
        if webhook == "wh-09":  # deleted and recreated mid-way, now waiting a day
            entries.append({**entry, "active_to": SPLIT})
            entry = {**entry, "wait": True, "timeout_s": 86400, "active_from": SPLIT}
        entries.append(entry)
    return entries


def _bucket_case() -> str:
    """SQL: webhook number from a 0..99 bucket ``b``."""
    branches, upper = [], 0
    for number, (_, share, _) in enumerate(WEBHOOKS):
        upper += share
        branches.append(f"WHEN b < {upper} THEN {number}")
    assert upper == 100
    return "CASE " + " ".join(branches) + " END"


def generate(folder: Path, n: int, *, threads: int | None = None) -> dict[str, float]:
    """Write the three files; return seconds per file."""
    folder.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    (folder / "webhooks.json").write_text(json.dumps(webhooks_json(), indent=1), encoding="utf-8")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    step = max(SPAN_US // max(n, 1), 1)
    timeouts = {w: s.get("timeout_s") for w, _, s in WEBHOOKS}
    timeout_case = "CASE wh " + " ".join(
        f"WHEN '{w}' THEN {int(t * 1_000_000)}" for w, t in timeouts.items() if t) + " ELSE NULL END"

    # Leads: one row per i; kept in memory for the callbacks' join.
    con.execute(f"""
        CREATE TABLE leads AS
        SELECT i,
               'lead-' || i AS lead_id,
               md5(CAST(i AS VARCHAR))[1:8] || printf('%08x', i) AS cid,
               'wh-' || lpad(CAST(w AS VARCHAR), 2, '0') AS wh,
               'adv-' || lpad(CAST(w AS VARCHAR), 2, '0') AS adv,
               CASE WHEN w = 5 OR hash(i, 2) % 100 < 30 THEN 'X' || lpad(CAST(i AS VARCHAR), 10, '0') END AS ext,
               epoch_us(TIMESTAMP '{BASE}') + i * {step} + CAST(hash(i, 3) % {step} AS BIGINT) AS created_us
        FROM (SELECT i, {_bucket_case()} AS w FROM (SELECT range AS i, hash(range, 1) % 100 AS b FROM range({n})))
    """)
    con.execute(f"""
        COPY (
            SELECT lead_id, cid AS conversion_id, adv AS advertiser_id, ext AS external_id, wh AS webhook_id,
                   strftime(make_timestamp(created_us), '%Y-%m-%dT%H:%M:%S.%fZ') AS created_at
            FROM leads ORDER BY i
        ) TO '{folder / "dispatches.csv"}' (FORMAT csv, HEADER true)
    """)
    timings["dispatches.csv"] = time.perf_counter() - start

    start = time.perf_counter()
    con.execute(f"""
        COPY (
        WITH cb AS (
            SELECT j, r,
                   CASE WHEN r BETWEEN 14 AND 63 AND j > 0 THEN j - 1 ELSE j END AS t,
                   CASE WHEN r < 5 THEN 'unknown_token' WHEN r < 10 THEN 'not_found'
                        WHEN r < 12 THEN 'no_ids' WHEN r < 14 THEN 'wrong_webhook'
                        WHEN r < 64 THEN 'duplicate' WHEN r < 74 THEN 'early' WHEN r < 94 THEN 'late'
                        ELSE 'normal' END AS kind,
                   hash(j, 5) AS h
            FROM (SELECT range AS j, hash(range, 4) % 1000 AS r FROM range({n}))
        ),
        timed AS (
            SELECT cb.*, l.cid, l.wh, l.ext, l.created_us,
                   l.created_us + CASE
                       WHEN kind = 'early' THEN -1000000 - CAST(h % 60000000 AS BIGINT)
                       WHEN kind = 'late' THEN coalesce({timeout_case}, 2 * 86400000000)
                                               + 1000000 + CAST(h % 3600000000 AS BIGINT)
                       WHEN kind = 'duplicate' THEN 200000 + CAST(h % 300000000 AS BIGINT)
                       ELSE 200000 + CAST(power(CAST(h % 100000 AS DOUBLE), 2) / 100 AS BIGINT)
                   END AS received_us
            FROM cb JOIN leads l ON l.i = cb.t
        ),
        shaped AS (
            SELECT *,
                   CASE kind WHEN 'unknown_token' THEN 'wh-retired-' || (j % 3)
                             WHEN 'wrong_webhook' THEN CASE WHEN wh = 'wh-00' THEN 'wh-08' ELSE 'wh-00' END
                             ELSE wh END AS token,
                   CASE kind WHEN 'not_found' THEN 'ffff' || printf('%012x', j) ELSE cid END AS id
            FROM timed
        )
        SELECT
            CASE WHEN j % 20 = 7
                 THEN strftime(make_timestamp(received_us) + INTERVAL 2 HOUR, '%Y-%m-%dT%H:%M:%S.%f+02:00')
                 ELSE strftime(make_timestamp(received_us), '%Y-%m-%dT%H:%M:%S.%fZ') END AS received_at,
            '{HOST}' || token || CASE
                WHEN kind = 'no_ids' THEN '?status=approved'
                WHEN kind IN ('not_found', 'wrong_webhook', 'unknown_token') THEN '?pcid=' || id || '&status=approved'
                WHEN wh IN ('wh-00', 'wh-08', 'wh-09') THEN '?pcid=' || id || '&status=approved&payout=1.50'
                WHEN wh = 'wh-04' THEN '?pcid=' || id
                WHEN wh = 'wh-03' THEN '?ref=' || id || '&src=crm'
                WHEN wh = 'wh-05' THEN '?click_id=' || ext || '&status=approved'
                ELSE '' END AS url,
            CASE WHEN wh = 'wh-08' AND kind NOT IN ('no_ids', 'not_found') THEN 'GET' ELSE 'POST' END AS method,
            CASE WHEN wh = 'wh-02' AND kind NOT IN ('no_ids', 'not_found', 'wrong_webhook', 'unknown_token')
                 THEN json_array(json_array('Content-Type', 'text/plain'), json_array('X-Lead-Id', id),
                                 json_array('User-Agent', 'lead-crm/4.2'))
                 ELSE json_object('Content-Type',
                                  CASE WHEN wh IN ('wh-01', 'wh-04', 'wh-06') THEN 'application/json'
                                       ELSE 'application/x-www-form-urlencoded' END,
                                  'User-Agent', 'AdvertiserBot/2.1', 'X-Request-Start', CAST(received_us AS VARCHAR))
            END AS headers,
            CASE
                WHEN kind IN ('no_ids', 'not_found', 'wrong_webhook', 'unknown_token') THEN ''
                WHEN wh = 'wh-08' THEN NULL
                WHEN wh = 'wh-01' THEN '{{"event":"lead.sold","data":{{"ref":"' || id || '","price":12.5}}}}'
                WHEN wh = 'wh-04' THEN '{{"status":"' || CASE WHEN h % 4 = 0 THEN 'pending' ELSE 'approved' END
                                       || '","lead":{{"score":7}}}}'
                WHEN wh = 'wh-06' THEN '{{"pcid":"' || id || '","status":"ok"}}'
                WHEN wh = 'wh-02' THEN 'ok'
                WHEN wh = 'wh-07' THEN 'pcid=' || id || '&status=sold'
                ELSE ''
            END AS body,
            'req-' || j AS request_id,
            CASE WHEN kind = 'normal' THEN 200 ELSE 404 END AS response_status
        FROM shaped
        ORDER BY j
        ) TO '{folder / "callbacks.jsonl"}' (FORMAT json)
    """)
    timings["callbacks.jsonl"] = time.perf_counter() - start
    con.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(generate(args.folder, args.n)))  # seconds per file; read by replay.py


if __name__ == "__main__":
    main()
