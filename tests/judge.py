"""Run both implementations on one dataset and return their judgements side by side.

Rule tests call :func:`judge` so every hand-built case checks the online
matcher *and* the SQL replay, and fails if they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from webhook_core import WebhookVersions, load_dataset, replay
from webhook_core.audit.online import run_online
from webhook_core.audit.replay import CALLBACK_ORDER


@dataclass(frozen=True)
class Judged:
    callbacks: list[dict[str, Any]]  # per callback in judging order (request_id, outcome, ...)
    leads: list[dict[str, Any]]      # per lead in dispatch order

    def outcomes(self) -> list[str]:
        return [row["outcome"] for row in self.callbacks]

    def by_request(self, request_id: str) -> dict[str, Any]:
        return next(row for row in self.callbacks if row["request_id"] == request_id)

    def lead(self, lead_id: str) -> dict[str, Any]:
        return next(row for row in self.leads if row["lead_id"] == lead_id)


def _none_if_nan(value: Any) -> Any:
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def sql_judgement(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions, *,
                  timeouts: dict[str | None, float] | None = None,
                  observation_end: datetime | None = None) -> Judged:
    result = replay(con, webhooks, timeouts=timeouts, observation_end=observation_end)
    callbacks = [
        {k: _none_if_nan(v) for k, v in row.items()} for row in result.callbacks().to_dict("records")
    ]
    # Not compared with the online matcher (it has no such columns): what the property test counts.
    extra = con.execute(f"SELECT is_interim, body_kind FROM callback_outcomes ORDER BY {CALLBACK_ORDER}").fetchall()
    for row, (is_interim, body_kind) in zip(callbacks, extra, strict=True):
        row["status_code"] = int(row["status_code"])
        row["is_interim"], row["body_kind"] = is_interim, body_kind
    leads = [{k: _none_if_nan(v) for k, v in row.items()} for row in result.leads().to_dict("records")]
    return Judged(callbacks, leads)


def online_judgement(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions, *,
                     timeouts: dict[str | None, float] | None = None,
                     observation_end: datetime | None = None) -> Judged:
    results, matcher = run_online(con, webhooks.with_timeouts(timeouts) if timeouts else webhooks)
    callbacks = []
    for result in results:
        ids = result.identifiers
        callbacks.append({
            "request_id": result.request.request_id,
            "received_at": result.request.received_at,
            "webhook_id": result.webhook_id,
            "conversion_id": ids.conversion_id if ids else None,
            "external_id": ids.external_id if ids else None,
            "advertiser_id": ids.advertiser_id if ids else None,
            "matched_by": result.matched_by.value if result.matched_by else None,
            "lead_id": result.lead.lead_id if result.lead else None,
            "outcome": result.outcome.value,
            "status_code": result.status_code,
            "wait_s": result.wait_s,
            "seq": result.request.seq,
        })
    leads = [{
        "lead_id": lead.lead.lead_id,
        "webhook_id": lead.lead.webhook_id,
        "created_at": lead.lead.created_at,
        "state": lead.state.value,
        "finished_at": lead.finished_at,
        "wait_s": lead.wait_s,
        "callbacks": lead.callbacks,
        "first_callback_s": lead.first_callback_s,
        "conversion_id": lead.lead.conversion_id,
        "deadline": lead.deadline,
    } for lead in matcher.lead_outcomes(observation_end)]
    return Judged(callbacks, leads)


COMPARED_CALLBACK = ("request_id", "webhook_id", "conversion_id", "external_id", "advertiser_id",
                     "matched_by", "lead_id", "outcome", "status_code", "wait_s", "seq")
COMPARED_LEAD = ("lead_id", "webhook_id", "state", "finished_at", "wait_s", "callbacks", "first_callback_s",
                 "deadline")


def judge(folder: Path, *, timeouts: dict[str | None, float] | None = None,
          observation_end: datetime | None = None) -> Judged:
    """Both implementations on ``folder``; asserts they agree and returns the SQL judgement.

    The SQL replay runs twice: on the loaded requests, and on the keys the loader computed as it
    read them (``keep_requests=False``, what ``webhook-audit replay`` without ``--database`` does).
    """
    requests_con = duckdb.connect()
    keys_con = duckdb.connect()
    try:
        webhooks = load_dataset(requests_con, folder).webhooks
        sql = sql_judgement(requests_con, webhooks, timeouts=timeouts, observation_end=observation_end)
        # The matcher reads the loaded tables, which the replay leaves as they were: a second load
        # of the same files would give the same tables (and cost a third of a small case's time).
        online = online_judgement(requests_con, webhooks, timeouts=timeouts, observation_end=observation_end)
        keys_webhooks = load_dataset(keys_con, folder, keep_requests=False).webhooks
        from_keys = sql_judgement(keys_con, keys_webhooks, timeouts=timeouts, observation_end=observation_end)
    finally:
        requests_con.close()
        keys_con.close()
    assert from_keys == sql, "the replay on keys computed while loading differs from the replay on requests"
    assert_agree(sql, online)
    return sql


def assert_agree(sql: Judged, online: Judged) -> None:
    sql_rows = [tuple(row[k] for k in COMPARED_CALLBACK) for row in sql.callbacks]
    online_rows = [tuple(row[k] for k in COMPARED_CALLBACK) for row in online.callbacks]
    assert len(sql_rows) == len(online_rows)
    for index, (a, b) in enumerate(zip(sql_rows, online_rows, strict=True)):
        assert a == b, (f"callback #{index} differs:\n  sql    {dict(zip(COMPARED_CALLBACK, a, strict=True))}"
                        f"\n  online {dict(zip(COMPARED_CALLBACK, b, strict=True))}")
    sql_leads = [tuple(_ts(row[k]) for k in COMPARED_LEAD) for row in sql.leads]
    online_leads = [tuple(_ts(row[k]) for k in COMPARED_LEAD) for row in online.leads]
    assert len(sql_leads) == len(online_leads)
    for index, (a, b) in enumerate(zip(sql_leads, online_leads, strict=True)):
        assert a == b, (f"lead #{index} differs:\n  sql    {dict(zip(COMPARED_LEAD, a, strict=True))}"
                        f"\n  online {dict(zip(COMPARED_LEAD, b, strict=True))}")


def _ts(value: Any) -> Any:
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value
