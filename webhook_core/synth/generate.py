"""A realistic synthetic dataset: advertisers that behave the way real ones do.

``generate(folder, leads=N, seed=S)`` writes ``webhooks.json``, ``dispatches.csv``
and ``callbacks.jsonl`` (documented in data/README.md). Every draw comes from one
seeded NumPy generator and every column is built a whole array at a time, so
1M leads take seconds and the same seed gives the same bytes.

Every callback is planted with its outcome and lead (``GeneratedDataset.planted``),
worked out from how its profile sent it by the rules of docs/semantics.md, not by
running the replay: a test holds the replay to them. Production's recorded answers
are those outcomes' status codes, except in two planted incidents the analysis
should find: a day on which production answered 200 to duplicates, and scattered
502s from the gateway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from webhook_core.domain import NOT_FOUND_BODY, OK_BODY, Outcome
from webhook_core.quoting import quote_literal

__all__ = ["PROFILES", "GeneratedDataset", "generate"]

START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 7

#: webhook → share of leads. Each profile's behaviour is in its ``_profile_*`` function.
PROFILES = {
    "wh-fastpay": 0.30,   # fast and reliable: seconds, log-normal
    "wh-slowbank": 0.18,  # slow tail a 60 s timeout cuts off; deleted and recreated mid-week
    "wh-nightly": 0.12,   # daily batch sender: answers the next night
    "wh-refco": 0.15,     # own key json.data.ref (pairing), interim statuses, some unmapped keys
    "wh-extonly": 0.13,   # external ID only, with whitespace / case / leading-zero quirks
    "wh-retry": 0.12,     # retries after every 404: duplicate storms
}

WEBHOOKS: list[dict[str, Any]] = [
    {"webhook_id": "wh-fastpay", "advertiser_id": "fastpay", "wait": True, "timeout_s": 30},
    {"webhook_id": "wh-slowbank", "advertiser_id": "slowbank", "wait": True, "timeout_s": 60,
     "active_to": "2026-11-05T12:00:00Z"},
    {"webhook_id": "wh-slowbank", "advertiser_id": "slowbank", "wait": True, "timeout_s": 60,
     "active_from": "2026-11-05T12:30:00Z"},
    {"webhook_id": "wh-nightly", "advertiser_id": "nightly", "wait": False},
    {"webhook_id": "wh-refco", "advertiser_id": "refco", "wait": True,
     "pairing": [{"identifier": "conversion_id", "location": "json.data.ref"}],
     "status_location": "json.status", "interim_statuses": ["pending", "processing"]},
    {"webhook_id": "wh-extonly", "advertiser_id": "extco", "wait": True, "timeout_s": 300},
    {"webhook_id": "wh-retry", "advertiser_id": "retryco", "wait": True, "timeout_s": 20},
]
_ADVERTISER = {w["webhook_id"]: w["advertiser_id"] for w in WEBHOOKS}
_SLOWBANK_GAP = (pd.Timestamp("2026-11-05T12:00:00Z"), pd.Timestamp("2026-11-05T12:30:00Z"))
_DUPLICATE_BUG = (pd.Timestamp("2026-11-06T00:00:00Z"), pd.Timestamp("2026-11-07T00:00:00Z"))

JSON_HEADERS = [["Content-Type", "application/json"], ["User-Agent", "advertiser-callback/2.1"]]
FORM_HEADERS = [["Content-Type", "application/x-www-form-urlencoded"], ["User-Agent", "batch-sender/1.0"]]
PLAIN_HEADERS = [["User-Agent", "curl/8.5.0"]]


@dataclass(frozen=True, slots=True)
class GeneratedDataset:
    path: Path
    leads: int
    callbacks: int
    garbage_lines: int
    #: Per callback in request_id order: ``request_id``, the ``outcome`` and ``lead_id`` its profile planted
    #: (``lead_id`` as the replay reports it: the resolved lead, or the other webhook's for wrong_webhook).
    planted: pd.DataFrame = field(repr=False, compare=False, default_factory=pd.DataFrame)


def generate(folder: str | Path, *, leads: int = 3000, seed: int = 7) -> GeneratedDataset:
    """Write a dataset folder; deterministic for ``(leads, seed)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dispatches = _dispatches(rng, leads)
    parts = [
        _profile_fastpay(rng, dispatches[dispatches.webhook_id == "wh-fastpay"]),
        _profile_slowbank(rng, dispatches[dispatches.webhook_id == "wh-slowbank"]),
        _profile_nightly(rng, dispatches[dispatches.webhook_id == "wh-nightly"]),
        _profile_refco(rng, dispatches[dispatches.webhook_id == "wh-refco"]),
        _profile_extonly(rng, dispatches[dispatches.webhook_id == "wh-extonly"]),
        _profile_retry(rng, dispatches[dispatches.webhook_id == "wh-retry"]),
        _wrong_tokens(rng, dispatches),
    ]
    callbacks = pd.concat([p for p in parts if len(p)], ignore_index=True)
    callbacks = callbacks.sort_values("received_at", kind="stable", ignore_index=True)
    callbacks["request_id"] = [f"req-{i:07d}" for i in range(1, len(callbacks) + 1)]
    planted = callbacks[["request_id", "outcome", "lead_id"]].copy()

    (folder / "webhooks.json").write_text(json.dumps(WEBHOOKS, indent=2) + "\n", encoding="utf-8")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _write_dispatches(con, dispatches, folder / "dispatches.csv")
    callbacks = _record_production_answers(rng, callbacks)
    garbage = _write_callbacks(con, rng, callbacks, folder / "callbacks.jsonl")
    con.close()
    return GeneratedDataset(folder, len(dispatches), len(callbacks), garbage, planted)


# --------------------------------------------------------------------------- leads


def _dispatches(rng: np.random.Generator, count: int) -> pd.DataFrame:
    names = list(PROFILES)
    webhook = rng.choice(names, size=count, p=np.array(list(PROFILES.values())) / sum(PROFILES.values()))
    # Leads arrive mostly in business hours.
    day = rng.integers(0, DAYS, size=count)
    hour = np.clip(rng.normal(13, 3.5, size=count), 0, 23.999)
    offset_us = (day * 86_400 + hour * 3600).astype(np.int64) * 1_000_000 + rng.integers(0, 1_000_000, size=count)
    created = pd.to_datetime(START) + pd.to_timedelta(offset_us, unit="us")
    # Nobody sends leads to slowbank while its webhook is deleted.
    in_gap = (webhook == "wh-slowbank") & (created >= _SLOWBANK_GAP[0]) & (created < _SLOWBANK_GAP[1])
    created = created.where(~in_gap, created + pd.Timedelta(minutes=45))
    order = np.argsort(created.to_numpy(), kind="stable")
    webhook, created = webhook[order], created[order]
    numbers = np.arange(1, count + 1)
    external = np.where(
        webhook == "wh-extonly",
        np.where(numbers % 2 == 0, pd.Series(numbers).map("{:08d}".format), pd.Series(numbers).map("XA-{:06d}".format)),
        np.where(rng.random(count) < 0.5, pd.Series(numbers).map("EXT{:07d}".format), ""),
    )
    return pd.DataFrame({
        "lead_id": pd.Series(numbers).map("L{:07d}".format),
        "conversion_id": pd.Series(numbers * 7919 % 10_000_019 + 10_000_000).map("PC{:08d}".format),
        "advertiser_id": pd.Series(webhook).map(_ADVERTISER),
        "external_id": external,
        "webhook_id": webhook,
        "created_at": created,
    })


# --------------------------------------------------------------------------- profiles


def _frame(received: pd.Series | pd.DatetimeIndex, url: pd.Series | str, body: pd.Series | str,
           headers: list[list[str]], method: str = "POST") -> pd.DataFrame:
    n = len(received)

    def column(value: pd.Series | str) -> Any:
        return value if isinstance(value, str) else pd.Series(value).reset_index(drop=True).to_numpy(dtype=object)

    return pd.DataFrame({
        "received_at": pd.DatetimeIndex(received),
        "url": column(url),
        "method": method,
        "headers": [headers] * n,
        "body": column(body),
    }, index=range(n))


def _text(values: np.ndarray) -> pd.Series[str]:
    return pd.Series(values, dtype=str)


def _seconds(values: np.ndarray) -> pd.TimedeltaIndex:
    return pd.to_timedelta(np.round(values * 1_000_000).astype(np.int64), unit="us")


MATCHED, INTERIM, EARLY, DUPLICATE, LATE = (Outcome.MATCHED.value, Outcome.INTERIM.value, Outcome.EARLY.value,
                                            Outcome.DUPLICATE.value, Outcome.LATE.value)
NOT_FOUND, NO_IDENTIFIERS, WRONG_WEBHOOK, UNKNOWN_TOKEN = (Outcome.NOT_FOUND.value, Outcome.NO_IDENTIFIERS.value,
                                                           Outcome.WRONG_WEBHOOK.value, Outcome.UNKNOWN_TOKEN.value)


def _planted(frame: pd.DataFrame, outcome: Any, lead_id: Any) -> pd.DataFrame:
    """``frame`` with what its profile planted on each callback: its outcome and lead (or None)."""
    return frame.assign(outcome=outcome, lead_id=lead_id)


def _in_time(delay: np.ndarray, timeout_s: int) -> np.ndarray:
    """``late`` where a callback ``delay`` seconds after its lead (as ``_seconds`` rounds it) is past the
    timeout, else ``matched`` (M5: the deadline itself is in time)."""
    return np.where(_seconds(delay) > pd.Timedelta(seconds=timeout_s), LATE, MATCHED)


def _lead_or_none(leads: pd.DataFrame, resolved: Any) -> np.ndarray:
    """Each lead's ID where ``resolved``, else None."""
    ids = leads.lead_id.to_numpy(dtype=object)
    return np.where(resolved, ids, np.full(len(ids), None, dtype=object))


def _profile_fastpay(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    n = len(leads)
    answers = rng.random(n) < 0.97
    delay = rng.lognormal(np.log(3.0), 0.8, n)
    early = rng.random(n) < 0.03  # the race: the callback beats the waiting webhook
    delay = np.where(early, -rng.uniform(0.05, 1.0, n), delay)
    created = leads.created_at.reset_index(drop=True)
    url = "/webhooks/wh-fastpay?pcid=" + leads.conversion_id.reset_index(drop=True) + "&status=approved"
    every = _lead_or_none(leads, True)
    first = _planted(_frame(created + _seconds(delay), url, "", PLAIN_HEADERS),
                     np.where(early, EARLY, _in_time(delay, 30)), every)[answers]
    # After a 404 for an early callback, half of them try again a few seconds later: the first
    # callback that can finish the wait, and in time.
    retry = answers & early & (rng.random(n) < 0.5)
    again = _planted(_frame(created + _seconds(rng.uniform(1, 10, n)), url, "", PLAIN_HEADERS), MATCHED, every)[retry]
    return pd.concat([first, again])


def _profile_slowbank(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    n = len(leads)
    answers = rng.random(n) < 0.9
    delay = rng.lognormal(np.log(45.0), 1.6, n)  # a tail of minutes to hours
    created = leads.created_at.reset_index(drop=True)
    conversion = leads.conversion_id.reset_index(drop=True)
    body = '{"pcid":"' + conversion + '","result":"sold","amount":' + pd.Series(
        rng.integers(5, 80, n)).astype(str) + ".50}"
    received = created + _seconds(delay)
    # Sent while the webhook was deleted: no version is live for its token (M1).
    deleted = ((received >= _SLOWBANK_GAP[0]) & (received < _SLOWBANK_GAP[1])).to_numpy()
    return _planted(_frame(received, "/webhooks/wh-slowbank", body, JSON_HEADERS),
                    np.where(deleted, UNKNOWN_TOKEN, _in_time(delay, 60)), _lead_or_none(leads, ~deleted))[answers]


def _profile_nightly(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    n = len(leads)
    answers = rng.random(n) < 0.92
    created = leads.created_at.reset_index(drop=True)
    next_night = created.dt.floor("D") + pd.Timedelta(days=1, hours=2)
    received = next_night + _seconds(rng.uniform(0, 3600, n))
    body = "pcid=" + leads.conversion_id.reset_index(drop=True) + "&status=sold&batch=" + \
        next_night.dt.strftime("%Y%m%d")
    # The webhook does not wait: never late, and the one callback a lead gets is after it was created.
    return _planted(_frame(received, "/webhooks/wh-nightly", body, FORM_HEADERS), MATCHED,
                    _lead_or_none(leads, True))[answers]


def _profile_refco(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    n = len(leads)
    created = leads.created_at.reset_index(drop=True)
    conversion = leads.conversion_id.reset_index(drop=True)
    key = np.where(rng.random(n) < 0.08, "reference", "ref")  # an unmapped key on some callbacks
    interim_at = created + _seconds(rng.lognormal(np.log(20.0), 0.5, n))
    final_at = interim_at + _seconds(rng.lognormal(np.log(300.0), 1.0, n))
    final_status = np.where(rng.random(n) < 0.8, "approved", "rejected")

    def body(status: np.ndarray) -> pd.Series:
        return '{"data":{"' + _text(key) + '":"' + conversion + '"},"status":"' + _text(status) + '"}'

    # Under the unmapped key the conversion ID is read nowhere (M2); no timeout, so nothing is late.
    unmapped = key == "reference"
    interim_status = np.where(rng.random(n) < 0.5, "pending", "processing")
    interim = _planted(_frame(interim_at, "/webhooks/wh-refco", body(interim_status), JSON_HEADERS),
                       np.where(unmapped, NO_IDENTIFIERS, INTERIM),
                       _lead_or_none(leads, ~unmapped))[rng.random(n) < 0.7]
    final_body = body(final_status)
    broken = rng.random(n) < 0.03  # truncated in transit: malformed JSON
    final_body = final_body.where(~pd.Series(broken), final_body.str.slice(0, 25))
    # A truncated body is invalid JSON: matched on the query string and headers only, which carry no ID (B3).
    # Otherwise the final status finishes the wait the interim one (earlier) left open.
    unread = unmapped | broken
    final = _planted(_frame(final_at, "/webhooks/wh-refco", final_body, JSON_HEADERS),
                     np.where(unread, NO_IDENTIFIERS, MATCHED), _lead_or_none(leads, ~unread))[rng.random(n) < 0.93]
    return pd.concat([interim, final])


def _profile_extonly(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    n = len(leads)
    answers = rng.random(n) < 0.95
    created = leads.created_at.reset_index(drop=True)
    external = leads.external_id.reset_index(drop=True)
    quirk = rng.choice(["none", "space", "case", "zeros"], size=n, p=[0.91, 0.03, 0.03, 0.03])
    sent = external.copy()
    sent = sent.where(quirk != "space", "%20" + external)
    sent = sent.where(quirk != "case", external.str.lower())
    sent = sent.where(quirk != "zeros", external.str.lstrip("0"))
    with_advertiser = rng.random(n) < 0.5
    url = "/webhooks/wh-extonly?external_id=" + sent + _text(np.where(with_advertiser, "&advertiser_id=extco", ""))
    delay = rng.lognormal(np.log(40.0), 1.0, n)
    # A quirk that changes the ID finds no lead (external IDs are unique, compared exactly: M3).
    exact = (sent == external).to_numpy()
    return _planted(_frame(created + _seconds(delay), url, "", PLAIN_HEADERS, method="GET"),
                    np.where(exact, _in_time(delay, 300), NOT_FOUND), _lead_or_none(leads, exact))[answers]


def _profile_retry(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    n = len(leads)
    created = leads.created_at.reset_index(drop=True)
    conversion = leads.conversion_id.reset_index(drop=True)
    typo = rng.random(n) < 0.05
    sent = conversion.where(~pd.Series(typo), conversion.str.slice(0, -1) + "X")
    delay = rng.lognormal(np.log(8.0), 1.0, n)
    url = "/webhooks/wh-retry?pcid=" + sent
    answers = rng.random(n) < 0.96
    # A mistyped conversion ID names no lead (an X is no digit); otherwise late after the 20 s timeout.
    first_outcome = np.where(typo, NOT_FOUND, _in_time(delay, 20))
    lead = _lead_or_none(leads, ~typo)
    first = _planted(_frame(created + _seconds(delay), url, "", PLAIN_HEADERS), first_outcome, lead)
    # It retries whenever it gets a 404 (late or unknown ID), and some resend after a 200 anyway.
    storm = answers & ((delay > 20) | typo | (rng.random(n) < 0.04))
    sizes = np.where(storm, rng.integers(3, 7, n), 0)
    repeat_index = np.repeat(np.arange(n), sizes)
    gaps = rng.uniform(1, 5, len(repeat_index))
    # Seconds since the first attempt: a running sum of gaps that restarts with each storm.
    running = np.cumsum(gaps)
    before_storm = np.concatenate([[0.0], running])[np.cumsum(sizes) - sizes]
    step = running - np.repeat(before_storm, sizes)
    storms = _frame(created.iloc[repeat_index].reset_index(drop=True) + _seconds(delay[repeat_index] + step),
                    url.iloc[repeat_index].reset_index(drop=True), "", PLAIN_HEADERS)
    # Each later attempt: not found again, later than a late first one, or after the match (duplicate).
    storms = _planted(storms, np.where(first_outcome == MATCHED, DUPLICATE, first_outcome)[repeat_index],
                      lead[repeat_index])
    return pd.concat([first[answers], storms])


def _wrong_tokens(rng: np.random.Generator, leads: pd.DataFrame) -> pd.DataFrame:
    fastpay = leads[leads.webhook_id == "wh-fastpay"].reset_index(drop=True)
    n = len(fastpay)
    pick = rng.random(n)
    # An old token still configured on the advertiser's side, and a copy-paste into another webhook's URL.
    token = np.where(pick < 0.01, "wh-fastpay-v1", np.where(pick < 0.015, "wh-retry", ""))
    chosen = token != ""
    received = fastpay.created_at + _seconds(rng.lognormal(np.log(3.0), 0.8, n))
    url = "/webhooks/" + _text(token) + "?pcid=" + fastpay.conversion_id + "&status=approved"
    # The old token names no webhook (M1); wh-retry has no lead with fastpay's conversion ID (M4).
    wrong = token == "wh-retry"
    frame: pd.DataFrame = _planted(_frame(received, url, "", PLAIN_HEADERS),
                                   np.where(wrong, WRONG_WEBHOOK, UNKNOWN_TOKEN), _lead_or_none(fastpay, wrong))[chosen]
    return frame


# --------------------------------------------------------------------------- writing


def _write_dispatches(con: duckdb.DuckDBPyConnection, dispatches: pd.DataFrame, path: Path) -> None:
    con.register("dispatches_df", dispatches)
    con.execute(f"""
        COPY (SELECT lead_id, conversion_id, advertiser_id, external_id, webhook_id,
                     strftime(created_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS created_at
              FROM dispatches_df)
        TO {quote_literal(str(path))} (FORMAT csv, HEADER true)
    """)
    con.unregister("dispatches_df")


def _record_production_answers(rng: np.random.Generator, callbacks: pd.DataFrame) -> pd.DataFrame:
    """Production answered with the planted outcome's status code (M6), but for the planted incidents."""
    status = np.where(callbacks.outcome.isin([MATCHED, INTERIM]), 200, 404)
    bug = (callbacks.outcome == DUPLICATE) & (callbacks.received_at >= _DUPLICATE_BUG[0]) & \
        (callbacks.received_at < _DUPLICATE_BUG[1])
    status = np.where(bug, 200, status)
    status = np.where(rng.random(len(status)) < 0.002, 502, status)
    recorded = callbacks.drop(columns=["outcome", "lead_id"])
    recorded["response_status"] = status
    recorded["response_body"] = np.where(status == 200, OK_BODY.decode(),
                                         np.where(status == 404, NOT_FOUND_BODY.decode(), "Bad Gateway"))
    return recorded


def _write_callbacks(con: duckdb.DuckDBPyConnection, rng: np.random.Generator | None, callbacks: pd.DataFrame,
                     path: Path) -> int:
    """JSONL via DuckDB; with ``rng``, a few unparseable capture lines are planted among them."""
    columns = ["received_at", "url", "method", "headers", "body", "request_id"]
    if "response_status" in callbacks:
        columns += ["response_status", "response_body"]
    frame = callbacks[columns].copy()
    con.register("callbacks_df", frame)
    lines = con.execute(f"""
        SELECT CAST(to_json(struct_pack(
                   received_at := strftime(received_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
                   {", ".join(f"{c} := {c}" for c in columns[1:])})) AS VARCHAR) AS line
        FROM callbacks_df
    """).df()["line"]
    con.unregister("callbacks_df")
    garbage = 0
    if rng is not None and len(lines):
        # Capture tools lose data: a line cut off mid-write, a timestamp from a misconfigured logger.
        garbage = max(2, len(lines) // 1000)
        positions = np.sort(rng.choice(len(lines), size=garbage, replace=False))
        bad = [lines.iloc[p][: len(lines.iloc[p]) // 2] if i % 2 == 0 else
               '{"received_at":"27/11/2026 10:00"' + lines.iloc[p][len('{"received_at":"2026-11-02T02:12:25.541461Z"'):]
               for i, p in enumerate(positions)]
        lines = pd.Series(np.insert(lines.to_numpy(dtype=object), positions, bad))
    con.register("lines_df", pd.DataFrame({"line": lines}))
    con.execute(f"COPY (SELECT line FROM lines_df) TO {quote_literal(str(path))} "
                "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')")
    con.unregister("lines_df")
    return garbage
