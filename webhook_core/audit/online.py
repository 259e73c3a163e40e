"""Running the online matcher over a loaded dataset (the oracle for the SQL replay).

Loading is shared: the matcher reads the same ``dispatches`` and ``callbacks``
tables the replay reads, so timestamps and headers are parsed once, by the loader.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb

from webhook_core.rules.matching import MatchResult, OnlineMatcher, WaitingWebhook
from webhook_core.rules.requests import CapturedRequest
from webhook_core.rules.settings import WebhookVersions

__all__ = ["callbacks_from_table", "matcher_from_tables", "run_online"]

_BATCH = 50_000


def matcher_from_tables(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions) -> OnlineMatcher:
    """A matcher with every row of ``dispatches`` registered."""
    matcher = OnlineMatcher(webhooks)
    cursor = con.execute("""
        SELECT lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at, "row"
        FROM dispatches ORDER BY "row"
    """)
    while rows := cursor.fetchmany(_BATCH):
        matcher.register_all(WaitingWebhook(*row) for row in rows)
    return matcher


def callbacks_from_table(con: duckdb.DuckDBPyConnection) -> Iterator[CapturedRequest]:
    """Every row of ``callbacks`` in ``(received_at, seq)`` order."""
    cursor = con.execute("""
        SELECT request_id, received_at, url, method, headers, body, seq, recorded_status, refused
        FROM callbacks ORDER BY received_at, seq
    """)
    while rows := cursor.fetchmany(_BATCH):
        for request_id, received_at, url, method, headers, body, seq, recorded, refused in rows:
            yield CapturedRequest(
                request_id=request_id, received_at=received_at, url=url, method=method,
                headers=tuple((h["name"], h["value"]) for h in headers), body=body, seq=seq,
                recorded_status=recorded, refused=refused,
            )


def run_online(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions) -> tuple[list[MatchResult], OnlineMatcher]:
    """Judge every loaded callback; lead states come from the returned matcher's ``lead_outcomes``."""
    matcher = matcher_from_tables(con, webhooks)
    results = [matcher.match(request) for request in callbacks_from_table(con)]
    return results, matcher
