"""Costs that must not grow with the number of webhook versions, checked by their shape, not by a clock.

A webhooks.json of 40,002 versions once took 49 s and 1 GB to load three dispatches: the versions were
inserted one statement each (twice: load and replay), every version with a pairing rule added a copy of
the standard names' SQL to the judging query, and the online matcher scanned every version per lookup.
Timings are in the report of that change; these tests pin the shapes that fixed them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import duckdb

from webhook_core import WebhookVersions, connect, parse_webhooks
from webhook_core.load.schema import write_webhook_versions
from webhook_core.rules.keys import keys_sql


def versions(count: int) -> WebhookVersions:
    """``count`` webhooks, each with pairing rules and interim statuses (every per-version SQL branch)."""
    return parse_webhooks([
        {"webhook_id": f"wh-{i}", "advertiser_id": f"adv-{i}", "wait": True, "timeout_s": 30,
         "pairing": [{"identifier": "conversion_id", "location": "json.data.ref"},
                     {"identifier": "external_id", "location": "query.ext"}],
         "status_location": "json.status", "interim_statuses": ["pending"]}
        for i in range(count)])


class CountingConnection:
    """A DuckDB connection that counts the statements run through it (``executemany`` counts each row)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.statements = 0

    def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
        self.statements += 1
        return self.con.execute(sql, *args)

    def executemany(self, sql: str, parameters: list[Any]) -> duckdb.DuckDBPyConnection:
        self.statements += len(parameters)
        return self.con.executemany(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_writing_the_versions_takes_the_same_statements_for_any_count() -> None:
    con = connect()
    counted = []
    for count in (10, 2_000):
        counting = CountingConnection(con)
        write_webhook_versions(cast(duckdb.DuckDBPyConnection, counting), versions(count))
        assert con.execute("SELECT count(*) FROM webhook_versions").fetchone() == (count,)
        counted.append(counting.statements)
    assert counted[0] == counted[1] <= 3
    con.close()


def test_judging_sql_grows_by_a_few_bytes_per_version() -> None:
    """Versions reading the same locations share one branch; each adds only its entries to a few lists."""
    small, large = (len(keys_sql(versions(count), "callback_rows")) for count in (200, 400))
    assert (large - small) / 200 < 200


class WatchedTuple(tuple[Any, ...]):
    """A tuple that counts how often it is iterated."""

    iterations = 0

    def __iter__(self) -> Iterator[Any]:
        WatchedTuple.iterations += 1
        return super().__iter__()


def test_looking_up_the_live_version_does_not_scan_every_version() -> None:
    webhooks = WebhookVersions(WatchedTuple(versions(1_000).versions))
    WatchedTuple.iterations = 0
    at = datetime(2026, 11, 20, tzinfo=UTC)
    assert [webhooks.live(f"wh-{i}", at).webhook_id for i in (0, 500, 999)] == ["wh-0", "wh-500", "wh-999"]
    assert webhooks.live("wh-unknown", at) is None
    assert WatchedTuple.iterations == 0
