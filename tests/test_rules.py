"""One or more tests per rule of docs/semantics.md, named after the rule they check.

Most tests build a tiny dataset with a known answer and run :func:`judge.judge`,
which replays it with BOTH implementations (online matcher and SQL replay),
asserts they agree row for row and returns the judgement. The extraction
tables (L, B, X) are judged one table per dataset (see ``Batch``). A few tests
at the end check small values without any I/O.

Tests marked ``xfail(strict=True, raises=AssertionError, reason="documented in B2: ...")``
pin a divergence between the two implementations that the spec states: they may fail only
by an assertion (the implementations disagree), never by an error, and a pass fails the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from webhook_core import (
    NOT_FOUND_BODY,
    BodyKind,
    CapturedRequest,
    ConfigError,
    Identifiers,
    Location,
    LocationError,
    LocationKind,
    Outcome,
    ReplayError,
    WebhookSettings,
    extract_identifiers,
    load_dataset,
    load_webhooks,
    parse_location,
    parse_request,
    parse_webhooks,
    replay,
    token_of,
)

from judge import Judged, judge

# --------------------------------------------------------------------------- helpers

MakeDataset = Callable[..., Path]
Row = dict[str, Any]

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WH = "wh-a"
ADV = "adv-1"
BASE_URL = "https://hooks.example.com/webhooks"


def moment(seconds: float = 0.0, us: int = 0) -> datetime:
    """T0 + seconds + us, exact to the microsecond."""
    return T0 + timedelta(microseconds=round(seconds * 1_000_000) + us)


def ts(seconds: float = 0.0, us: int = 0) -> str:
    return moment(seconds, us).isoformat()


def webhook(webhook_id: str = WH, advertiser_id: str = ADV, **fields: Any) -> Row:
    return {"webhook_id": webhook_id, "advertiser_id": advertiser_id, **fields}


def pairing(identifier: str, location: str) -> Row:
    return {"identifier": identifier, "location": location}


def lead(lead_id: str, conversion_id: str, *, external_id: str | None = None, webhook_id: str = WH,
         advertiser_id: str = ADV, at: float = 0.0, us: int = 0) -> Row:
    return {"lead_id": lead_id, "conversion_id": conversion_id, "advertiser_id": advertiser_id,
            "external_id": external_id, "webhook_id": webhook_id, "created_at": ts(at, us)}


def call(request_id: str, query: str = "", *, at: float = 1.0, us: int = 0, token: str = WH,
         url: str | None = None, body: str | None = None, headers: Any = None) -> Row:
    if url is None:
        url = f"{BASE_URL}/{token}" + (f"?{query}" if query else "")
    row: Row = {"request_id": request_id, "received_at": ts(at, us), "url": url}
    if body is not None:
        row["body"] = body
    if headers is not None:
        row["headers"] = headers
    return row


def refused_call(request_id: str, query: str = "", *, status: int, **options: Any) -> Row:
    """A capture-log line of a request the receiver answered ``status`` without judging it (I3, M0)."""
    return {**call(request_id, query, **options), "refused": True, "response_status": status}


def run(dataset: MakeDataset, webhooks: list[Row], leads: list[Row], calls: list[Row],
        **options: Any) -> Judged:
    return judge(dataset(webhooks, leads, calls), **options)


def one(dataset: MakeDataset, callback: Row, **webhook_fields: Any) -> Row:
    """Judge one callback against webhook wh-a (one lead L1 / C1 / E1) and return its row."""
    judged = run(dataset, [webhook(**webhook_fields)], [lead("L1", "C1", external_id="E1")], [callback])
    return judged.callbacks[0]


def ref_from(location: str) -> dict[str, Any]:
    """Webhook fields pairing conversion_id with ``location``."""
    return {"pairing": [pairing("conversion_id", location)]}


def known_difference(reason: str) -> pytest.MarkDecorator:
    """A divergence between the two JSON readers that docs/semantics.md (B2) states; fails loudly if it changes."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"documented in B2: {reason}")


# =========================================================================== S. settings

S1_CASES = [
    pytest.param(
        [webhook("wh-acme", colour="red")],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'colour': unknown field; known fields are "
        "active_from, active_to, advertiser_id, description, interim_statuses, name, pairing, "
        "status_location, timeout_s, wait, webhook_id",
        id="S1-unknown-field"),
    pytest.param(
        [webhook("wh-acme", wait="yes")],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'wait': must be true or false, got 'yes'",
        id="S1-wrong-type-wait"),
    pytest.param(
        [webhook("wh-acme", wait=True, timeout_s="30")],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'timeout_s': must be a number of seconds or null, "
        "got '30'",
        id="S1-wrong-type-timeout"),
    pytest.param(
        [webhook("wh-acme", wait=True, timeout_s=True)],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'timeout_s': must be a number of seconds or null, "
        "got True",
        id="S1-wrong-type-timeout-bool"),
    pytest.param(
        [webhook("wh-acme", pairing={"identifier": "conversion_id", "location": "query.ref"})],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'pairing': "
        "must be a list of {\"identifier\": ..., \"location\": ...}",
        id="S1-wrong-type-pairing"),
    pytest.param(
        [webhook("wh-acme", pairing=[{"identifier": "conversion_id"}])],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'pairing[1]': "
        "must be an object with exactly 'identifier' and 'location'",
        id="S1-pairing-rule-without-location"),
    pytest.param(
        [webhook("wh-acme", active_to=20240501)],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'active_to': not an ISO 8601 timestamp: 20240501",
        id="S1-wrong-type-timestamp"),
    pytest.param(
        [webhook("wh-acme", wait=True, timeout_s=0)],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'timeout_s': must be positive, got 0",
        id="S1-timeout-not-positive"),
    pytest.param(
        [{"webhook_id": "wh-acme", "advertiser_id": 7}],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'advertiser_id': required, a non-empty string; got 7",
        id="S1-wrong-type-advertiser"),
    pytest.param(
        [webhook("")],
        "webhooks.json: webhook #1: field 'webhook_id': required, a non-empty string; got ''",
        id="S1-empty-id"),
    pytest.param(
        [webhook("wh-ok"), {"advertiser_id": ADV}],
        "webhooks.json: webhook #2: field 'webhook_id': required, a non-empty string; got None",
        id="S1-missing-id-second-entry"),
    pytest.param(
        [webhook("a/b")],
        "webhooks.json: webhook 'a/b' (entry 1): field 'webhook_id': must not contain '/': "
        "it is the last path segment of the URL",
        id="S1-id-with-slash"),
    pytest.param(
        [webhook("wh-acme", pairing=[pairing("lead_id", "query.x")])],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'pairing[1].identifier': "
        "'lead_id' is not one of conversion_id, external_id, advertiser_id",
        id="S1-bad-pairing-identifier"),
    pytest.param(
        [webhook("wh-acme", status_location="query.status", interim_statuses="pending")],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'interim_statuses': must be a list of strings",
        id="S1-wrong-type-interim"),
    pytest.param(
        [webhook("wh-acme", interim_statuses=["pending"])],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'interim_statuses': "
        "needs status_location to say where the status is read",
        id="S1-interim-needs-status-location"),
    pytest.param(
        [webhook("wh-acme", active_from="yesterday")],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'active_from': not an ISO 8601 timestamp: 'yesterday'",
        id="S1-bad-timestamp"),
    pytest.param(
        [webhook("wh-acme", timeout_s=30)],
        "webhooks.json: webhook 'wh-acme' (entry 1): field 'timeout_s': only allowed when wait is true; "
        "set \"wait\": true or remove timeout_s",
        id="S2-timeout-without-wait"),
    pytest.param(
        [webhook("wh-a"), webhook("wh-b", wait=False, timeout_s=5)],
        "webhooks.json: webhook 'wh-b' (entry 2): field 'timeout_s': only allowed when wait is true; "
        "set \"wait\": true or remove timeout_s",
        id="S2-timeout-with-wait-false-entry-2"),
    pytest.param(
        [webhook("wh-a"), webhook("wh-a")],
        "webhooks.json: webhook 'wh-a': field 'active_from': two versions are live at the same time; "
        "give the older one an active_to no later than the newer one's active_from",
        id="S3-overlapping-open-versions"),
    pytest.param(
        [webhook("wh-a", active_to=ts(100)), webhook("wh-a", active_from=ts(99))],
        "webhooks.json: webhook 'wh-a': field 'active_from': two versions are live at the same time; "
        "give the older one an active_to no later than the newer one's active_from",
        id="S3-overlapping-by-one-second"),
    pytest.param(
        [webhook("wh-a", active_from=ts(100), active_to=ts(100))],
        "webhooks.json: webhook 'wh-a': field 'active_to': active_from must be before active_to",
        id="S3-empty-interval"),
]


@pytest.mark.parametrize(("document", "message"), S1_CASES)
def test_S1_S2_S3_config_error_text(document: list[Row], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_webhooks(document, source="webhooks.json")
    assert str(caught.value) == message


@pytest.mark.parametrize(("location", "field", "problem"), [
    pytest.param("cookie.x", "pairing[1].location",
                 "'cookie.x' is not a location; write query.NAME, form.NAME, json.PATH or header.NAME",
                 id="S1-bad-location-kind"),
    pytest.param("json.a..b", "pairing[1].location", "'json.a..b' has an empty path segment; write json.a.b.0.c",
                 id="S1-bad-location-empty-segment"),
])
def test_S1_malformed_location_error_text(location: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_webhooks([webhook("wh-acme", pairing=[pairing("conversion_id", location)])], source="webhooks.json")
    assert str(caught.value) == f"webhooks.json: webhook 'wh-acme' (entry 1): field '{field}': {problem}"


def test_S1_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps([webhook("wh-acme", timeout_s=30)]), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_webhooks(path)
    assert str(caught.value) == (
        f"{path}: webhook 'wh-acme' (entry 1): field 'timeout_s': only allowed when wait is true; "
        "set \"wait\": true or remove timeout_s")


@pytest.mark.parametrize("document", [
    pytest.param([webhook(wait=True, timeout_s=30)], id="S2-timeout-with-wait"),
    pytest.param([webhook(timeout_s=None)], id="S2-null-timeout-without-wait"),
    pytest.param([webhook(active_to=ts(100)), webhook(active_from=ts(100))], id="S3-adjacent-versions"),
    pytest.param([webhook(active_to=ts(100)), webhook(active_from=ts(200))], id="S3-versions-with-gap"),
])
def test_S2_S3_valid_settings(document: list[Row]) -> None:
    versions = parse_webhooks(document, source="webhooks.json")
    assert len(versions.versions) == len(document)


def test_S3_callback_judged_by_version_live_at_received_and_unknown_in_gap(dataset: MakeDataset) -> None:
    # v1 reads the conversion ID from query.ref, v2 (recreated after a gap) from query.click.
    webhooks = [
        webhook(active_to=ts(100), pairing=[pairing("conversion_id", "query.ref")]),
        webhook(active_from=ts(200), pairing=[pairing("conversion_id", "query.click")]),
    ]
    leads = [lead("L1", "C1", at=0), lead("L2", "C2", at=250)]
    calls = [
        call("v1-ref", "ref=C1&click=C9", at=10),
        call("gap", "ref=C1&click=C1", at=150),
        call("gap-at-active-to", "ref=C1", at=100),
        call("v2-at-active-from", "ref=C9&click=C2", at=260),
    ]
    judged = run(dataset, webhooks, leads, calls)
    assert judged.by_request("v1-ref")["conversion_id"] == "C1"
    assert judged.by_request("v1-ref")["outcome"] == "matched"
    assert judged.by_request("gap")["outcome"] == "unknown_token"
    assert judged.by_request("gap")["webhook_id"] is None
    assert judged.by_request("gap-at-active-to")["outcome"] == "unknown_token"
    assert judged.by_request("v2-at-active-from")["conversion_id"] == "C2"
    assert judged.by_request("v2-at-active-from")["outcome"] == "matched"


def test_S3_adjacent_versions_active_from_is_inclusive(dataset: MakeDataset) -> None:
    webhooks = [
        webhook(active_to=ts(100), pairing=[pairing("conversion_id", "query.ref")]),
        webhook(active_from=ts(100), pairing=[pairing("conversion_id", "query.click")]),
    ]
    calls = [call("last-us-of-v1", "ref=C1", at=100, us=-1), call("first-us-of-v2", "ref=C9&click=C2", at=100)]
    judged = run(dataset, webhooks, [lead("L1", "C1"), lead("L2", "C2")], calls)
    assert [(r["request_id"], r["conversion_id"], r["outcome"]) for r in judged.callbacks] == [
        ("last-us-of-v1", "C1", "matched"), ("first-us-of-v2", "C2", "matched")]


@pytest.mark.parametrize(("old_timeout", "new_timeout", "expected"), [
    pytest.param(1000, 10, "matched", id="S3-old-long-timeout-applies"),
    pytest.param(10, 1000, "late", id="S3-old-short-timeout-applies"),
])
def test_S3_lead_timeout_is_that_of_version_live_at_created(dataset: MakeDataset, old_timeout: float,
                                                             new_timeout: float, expected: str) -> None:
    webhooks = [webhook(wait=True, timeout_s=old_timeout, active_to=ts(100)),
                webhook(wait=True, timeout_s=new_timeout, active_from=ts(100))]
    judged = run(dataset, webhooks, [lead("L1", "C1", at=0)], [call("r1", "pcid=C1", at=150)])
    assert judged.by_request("r1")["outcome"] == expected
    assert judged.lead("L1")["deadline"] == moment(old_timeout)


def test_S3_interim_statuses_are_those_of_version_live_at_received(dataset: MakeDataset) -> None:
    webhooks = [webhook(active_to=ts(100)),
                webhook(active_from=ts(100), status_location="query.status", interim_statuses=["pending"])]
    calls = [call("old-version", "pcid=C1&status=pending", at=50),
             call("new-version", "pcid=C2&status=pending", at=150)]
    judged = run(dataset, webhooks, [lead("L1", "C1", at=0), lead("L2", "C2", at=0)], calls)
    assert judged.outcomes() == ["matched", "interim"]


def test_S3_dispatch_in_gap_between_versions_is_not_a_lead(dataset: MakeDataset) -> None:
    webhooks = [webhook(active_to=ts(100)), webhook(active_from=ts(200))]
    judged = run(dataset, webhooks, [lead("L1", "C1", at=0), lead("L-gap", "C2", at=150)], [])
    assert [row["lead_id"] for row in judged.leads] == ["L1"]


@pytest.mark.parametrize(("timeout_s", "offset_us", "expected"), [
    pytest.param(10, 10_000_000, "matched", id="S4-exactly-at-deadline-in-time"),
    pytest.param(10, 10_000_001, "late", id="S4-one-us-after-deadline-late"),
    pytest.param(0.25, 250_000, "matched", id="S4-fractional-at-deadline"),
    pytest.param(0.25, 250_001, "late", id="S4-fractional-one-us-late"),
    pytest.param(2.5e-06, 3, "matched", id="S4-half-us-rounds-up-in-time"),
    pytest.param(2.5e-06, 4, "late", id="S4-half-us-rounds-up-late"),
    pytest.param(1.0000005, 1_000_001, "matched", id="S4-1.0000005s-is-1000001us"),
    pytest.param(1.0000005, 1_000_002, "late", id="S4-1.0000005s-one-us-late"),
])
def test_S4_deadline_to_the_microsecond(dataset: MakeDataset, timeout_s: float, offset_us: int,
                                        expected: str) -> None:
    judged = run(dataset, [webhook(wait=True, timeout_s=timeout_s)], [lead("L1", "C1", at=0, us=7)],
                 [call("r1", "pcid=C1", at=0, us=7 + offset_us)])
    assert judged.by_request("r1")["outcome"] == expected
    timeout_us = offset_us if expected == "matched" else offset_us - 1  # at the deadline, or 1 µs after it
    assert judged.lead("L1")["deadline"] == moment(0, 7 + timeout_us)


@pytest.mark.parametrize(("timeout_s", "timeout_us"), [
    pytest.param(10, 10_000_000, id="S4-integer"),
    pytest.param(2.5e-06, 3, id="S4-2.5us-half-up"),
    pytest.param(5e-07, 1, id="S4-0.5us-half-up"),
    pytest.param(4.9e-07, 0, id="S4-0.49us-down"),
    pytest.param(1.0000005, 1_000_001, id="S4-decimal-as-written"),
])
def test_S4_timeout_us_rounds_half_up(timeout_s: float, timeout_us: int) -> None:
    assert WebhookSettings(WH, ADV, wait=True, timeout_s=timeout_s).timeout_us == timeout_us


@pytest.mark.parametrize("query", [
    pytest.param("pcid=C1", id="S5-by-conversion-id"),
    pytest.param("external_id=E1", id="S5-by-external-id"),
])
def test_S5_leads_pair_across_versions(dataset: MakeDataset, query: str) -> None:
    webhooks = [webhook(wait=True, timeout_s=1000, active_to=ts(100)), webhook(active_from=ts(200))]
    judged = run(dataset, webhooks, [lead("L1", "C1", external_id="E1", at=0)], [call("r1", query, at=300)])
    row = judged.by_request("r1")
    assert (row["outcome"], row["lead_id"], row["webhook_id"]) == ("matched", "L1", WH)
    assert judged.lead("L1")["state"] == "received"


# =========================================================================== L. locations
#
# Extraction cases are batched (see ``Batch``): each table below is judged as ONE dataset in which
# case i calls its own webhook ``wh-i``; each test then checks its own callback's row.


@dataclass(frozen=True)
class Req:
    """One callback judged for what it extracts: its query, body, headers and its webhook's settings."""

    query: str = ""
    body: str | None = None
    headers: Any = None
    fields: dict[str, Any] = field(default_factory=dict)


def case(case_id: str, expected: Any, query: str = "", *, body: str | None = None, headers: Any = None,
         **fields: Any) -> Any:
    return pytest.param(Req(query, body, headers, fields), expected, id=case_id)


class Batch:
    """The cases of one parametrize table judged together (both implementations, one dataset).

    Extraction reads a callback alone and case i calls webhook ``wh-i`` with its own settings, so
    cases cannot interfere. If the implementations disagree anywhere in the batch, every case falls
    back to a dataset of its own, so only the disagreeing cases fail.
    """

    def __init__(self, table: list[Any]) -> None:
        self.cases: list[Req] = [param.values[0] for param in table]
        self._judged: Judged | None = None
        self._tried = False

    @staticmethod
    def _files(cases: list[Req]) -> tuple[list[Row], list[Row], list[Row]]:
        webhooks = [webhook(f"wh-{i}", **req.fields) for i, req in enumerate(cases)]
        calls = [call(f"r{i}", req.query, token=f"wh-{i}", at=1 + i, body=req.body, headers=req.headers)
                 for i, req in enumerate(cases)]
        return webhooks, [lead("L-none", "C-none", webhook_id="wh-0")], calls

    def row(self, req: Req, dataset: MakeDataset) -> Row:
        if not self._tried:
            self._tried = True
            try:
                self._judged = judge(dataset(*self._files(self.cases)))
            except Exception:  # a disagreement (or error) anywhere: judge each case alone
                self._judged = None
        if self._judged is not None:
            return self._judged.by_request(f"r{self.cases.index(req)}")
        return judge(dataset(*self._files([req]))).callbacks[0]


QUERY_REF = ref_from("query.ref")

L1_CASES = [
    case("L1-first-occurrence", "A", "ref=A&ref=B", **QUERY_REF),
    case("L1-first-non-empty", "B", "ref=&ref=B&ref=C", **QUERY_REF),
    case("L1-only-empty-value-absent", None, "ref=", **QUERY_REF),
    case("L1-plus-is-space", "a b", "ref=a+b", **QUERY_REF),
    case("L1-encoded-plus-stays-plus", "a+b", "ref=a%2Bb", **QUERY_REF),
    case("L1-percent-decoding-utf8", "café x", "ref=caf%C3%A9%20x", **QUERY_REF),
    case("L1-lowercase-hex", "café", "ref=caf%c3%a9", **QUERY_REF),
    case("L1-name-decoding", "A", "r%65f=A", **QUERY_REF),
    case("L1-no-equals-is-empty-value", "B", "ref&ref=B", **QUERY_REF),
    case("L1-no-equals-alone-absent", None, "ref", **QUERY_REF),
    case("L1-split-at-first-equals", "a=b", "ref=a=b", **QUERY_REF),
    case("L1-empty-parts-skipped", "A", "&&ref=A&", **QUERY_REF),
    case("L1-longer-name-ending-in-name-is-not-it", "B", "myref=A&ref=B", **QUERY_REF),
    case("L1-longer-name-alone-absent", None, "myref=A", **QUERY_REF),
    case("L1-name-inside-a-value-is-not-a-pair", None, "x=ref=A", **QUERY_REF),
    case("L1-name-inside-a-value-then-pair", "B", "x=ref=A&ref=B", **QUERY_REF),
    case("L1-fragment-dropped", "A", "ref=A#frag", **QUERY_REF),
    case("L1-fragment-not-query", None, "x=1#ref=A", **QUERY_REF),
    case("L1-after-first-question-mark-only", None, "x=1?ref=A", **QUERY_REF),
    case("L1-later-question-mark-is-text", "a?b", "ref=a?b", **QUERY_REF),
    case("L1-name-case-sensitive", None, "REF=A", **QUERY_REF),
    case("L1-not-trimmed", " A ", "ref=%20A%20", **QUERY_REF),
    case("L1-semicolon-not-separator", "a;b=c", "ref=a;b=c", **QUERY_REF),
    case("L1-plus-in-name-is-space", "A", "my+ref=A", **ref_from("query.my ref")),
    case("L1-escape-in-name", "A", "my%20ref=A", **ref_from("query.my ref")),
    case("L1-utf8-name", "A", "r%C3%A9f=A", **ref_from("query.réf")),
    case("L1-dotted-name", "A", "a.b=A", **ref_from("query.a.b")),
    case("L1-query-location-ignores-form-body", None, body="ref=A", **QUERY_REF),
]
L1_BATCH = Batch(L1_CASES)


@pytest.mark.parametrize(("req", "expected"), L1_CASES)
def test_L1_query_parsing(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    assert L1_BATCH.row(req, dataset)["conversion_id"] == expected


FORM_REF = ref_from("form.ref")

L2_CASES = [
    case("L2-form-body", "A", "ref=Q", body="ref=A&x=1", **FORM_REF),
    case("L2-first-non-empty-plus-and-escapes", "a b!", "ref=Q", body="ref=&ref=a+b%21", **FORM_REF),
    case("L2-no-equals-and-empty-parts", "B", body="&ref&&ref=B", **FORM_REF),
    case("L2-any-content-type-but-json", "A", body="ref=A", headers=[["Content-Type", "text/plain"]], **FORM_REF),
    case("L2-json-body-is-not-form", None, "ref=Q", body='{"ref": "A"}', **FORM_REF),
    case("L2-empty-body", None, "ref=Q", body="", **FORM_REF),
    case("L2-query-is-not-form", None, "ref=Q", **FORM_REF),
]
L2_BATCH = Batch(L2_CASES)


@pytest.mark.parametrize(("req", "expected"), L2_CASES)
def test_L2_form(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    assert L2_BATCH.row(req, dataset)["conversion_id"] == expected


ITEMS = '{"items": [{"id": "A"}, {"id": "B"}]}'

L3_CASES = [
    case("L3-nested-key", "A", body='{"data": {"ref": "A"}}', **ref_from("json.data.ref")),
    case("L3-array-index-0", "A", body=ITEMS, **ref_from("json.items.0.id")),
    case("L3-array-index-1", "B", body=ITEMS, **ref_from("json.items.1.id")),
    case("L3-leading-zero-index-does-not-index", None, body=ITEMS, **ref_from("json.items.01.id")),
    case("L3-index-out-of-range", None, body=ITEMS, **ref_from("json.items.5.id")),
    case("L3-negative-index", None, body=ITEMS, **ref_from("json.items.-1.id")),
    case("L3-numeric-key-on-object", "K", body='{"items": {"0": {"id": "K"}}}', **ref_from("json.items.0.id")),
    case("L3-leading-zero-key-on-object", "K", body='{"items": {"01": {"id": "K"}}}',
         **ref_from("json.items.01.id")),
    case("L3-top-level-array", "A", body='[{"id": "A"}]', **ref_from("json.0.id")),
    case("L3-path-through-string-leaves", None, body='{"data": "text"}', **ref_from("json.data.ref")),
    case("L3-path-leaves-document", None, body='{"data": {}}', **ref_from("json.data.ref.x")),
    case("L3-object-gives-nothing", None, body='{"data": {"ref": {"x": "1"}}}', **ref_from("json.data.ref")),
    case("L3-array-gives-nothing", None, body='{"data": {"ref": ["A"]}}', **ref_from("json.data.ref")),
    case("L3-key-with-slash", "S", body='{"a/b": "S"}', **ref_from("json.a/b")),
    case("L3-key-with-tilde", "T", body='{"a~1": "T", "a/b": "X"}', **ref_from("json.a~1")),
    case("L3-escaped-key-decoded", "U", body='{"r\\u00e9f": "U"}', **ref_from("json.réf")),
    case("L3-key-case-sensitive", None, body='{"Ref": "A"}', **ref_from("json.ref")),
    case("L3-form-body-gives-nothing", None, body="ref=A", **ref_from("json.ref")),
]
L3_BATCH = Batch(L3_CASES)


@pytest.mark.parametrize(("req", "expected"), L3_CASES)
def test_L3_json_path(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    assert L3_BATCH.row(req, dataset)["conversion_id"] == expected


def test_L3_index_with_trailing_newline_does_not_index(dataset: MakeDataset) -> None:
    row = one(dataset, call("r1", body=ITEMS), **ref_from("json.items.1\n.id"))
    assert row["conversion_id"] is None


HEADER_REF = ref_from("header.X-Ref")

L4_CASES = [
    case("L4-case-insensitive-lower", "A", headers=[["x-ref", "A"]], **HEADER_REF),
    case("L4-case-insensitive-upper", "A", headers=[["X-REF", "A"]], **HEADER_REF),
    case("L4-repeated-first-non-empty", "A", headers=[["X-Ref", ""], ["x-ref", "A"], ["X-REF", "B"]], **HEADER_REF),
    case("L4-repeated-kept-in-order", "A", headers=[["X-Ref", "A"], ["X-Ref", "B"]], **HEADER_REF),
    case("L4-name-value-objects", "A", headers=[{"name": "X-Ref", "value": "A"}], **HEADER_REF),
    case("L4-headers-object", "A", headers={"x-ref": "A"}, **HEADER_REF),
    case("L4-name-must-equal", None, headers=[["X-Ref-2", "A"], ["X_Ref", "B"]], **HEADER_REF),
    case("L4-not-trimmed", " A ", headers=[["X-Ref", " A "]], **HEADER_REF),
    case("L4-not-percent-decoded", "a%20b+c", headers=[["X-Ref", "a%20b+c"]], **HEADER_REF),
]
L4_BATCH = Batch(L4_CASES)


@pytest.mark.parametrize(("req", "expected"), L4_CASES)
def test_L4_header(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    assert L4_BATCH.row(req, dataset)["conversion_id"] == expected


def test_L4_header_names_ignore_ascii_case_only(dataset: MakeDataset) -> None:
    """Python and DuckDB lower-case non-ASCII letters differently (final Σ, İ): only A-Z fold."""
    row = one(dataset, call("r1", headers=[["ΑΣ", "A"]]), **ref_from("header.ασ"))
    assert row["conversion_id"] is None


L5_CASES = [
    case("L5-invalid-utf8-kept", "%FF", "ref=%FF", **QUERY_REF),
    case("L5-whole-value-kept-as-written", "%41%FF", "ref=%41%FF", **QUERY_REF),
    case("L5-truncated-utf8-kept", "%E2%82", "ref=%E2%82", **QUERY_REF),
    case("L5-incomplete-escape-kept", "%2", "ref=%2", **QUERY_REF),
    case("L5-incomplete-escape-rest-decoded", "café%2", "ref=caf%C3%A9%2", **QUERY_REF),
    case("L5-non-hex-escape-kept", "%zz1", "ref=%zz1", **QUERY_REF),
    case("L5-trailing-percent-kept", "100%", "ref=100%", **QUERY_REF),
    case("L5-invalid-name-kept", "A", "r%FF=A", **ref_from("query.r%FF")),
    case("L5-form-invalid-utf8-kept", "%C3", body="ref=%C3", **FORM_REF),
]
L5_BATCH = Batch(L5_CASES)


@pytest.mark.parametrize(("req", "expected"), L5_CASES)
def test_L5_percent_decoding(dataset: MakeDataset, req: Req, expected: str) -> None:
    assert L5_BATCH.row(req, dataset)["conversion_id"] == expected


def json_ref(literal: str) -> str:
    return '{"data": {"ref": ' + literal + '}, "external_id": "E1"}'


DATA_REF = ref_from("json.data.ref")

L6_CASES = [
    case("L6-string", "A-1", body=json_ref('"A-1"'), **DATA_REF),
    case("L6-string-escapes-decoded", "café", body=json_ref('"caf\\u00e9"'), **DATA_REF),
    case("L6-string-of-zeros-not-trimmed", "00123", body=json_ref('"00123"'), **DATA_REF),
    case("L6-string-not-trimmed", " A ", body=json_ref('" A "'), **DATA_REF),
    case("L6-integer", "12345", body=json_ref("12345"), **DATA_REF),
    case("L6-negative-integer", "-12345", body=json_ref("-12345"), **DATA_REF),
    case("L6-minus-zero", "0", body=json_ref("-0"), **DATA_REF),
    case("L6-whole-fraction", "12345", body=json_ref("12345.0"), **DATA_REF),
    case("L6-exponent", "1000", body=json_ref("1e3"), **DATA_REF),
    case("L6-exponent-upper-plus", "1000", body=json_ref("1E+3"), **DATA_REF),
    case("L6-negative-exponent-whole", "1", body=json_ref("100e-2"), **DATA_REF),
    case("L6-fraction-gives-nothing", None, body=json_ref("12.5"), **DATA_REF),
    case("L6-small-exponent-gives-nothing", None, body=json_ref("2e-1"), **DATA_REF),
    case("L6-below-2^53", "9007199254740991", body=json_ref("9007199254740991.0"), **DATA_REF),
    case("L6-2^53-with-fraction-gives-nothing", None, body=json_ref("9007199254740992.0"), **DATA_REF),
    case("L6-big-exponent-gives-nothing", None, body=json_ref("1e22"), **DATA_REF),
    case("L6-big-integer-exact", "123456789012345678901234567890",
         body=json_ref("123456789012345678901234567890"), **DATA_REF),
    case("L6-above-uint64-exact", "18446744073709551616", body=json_ref("18446744073709551616"), **DATA_REF),
    case("L6-below-int64-exact", "-9223372036854775809", body=json_ref("-9223372036854775809"), **DATA_REF),
    case("L6-true-gives-nothing", None, body=json_ref("true"), **DATA_REF),
    case("L6-false-gives-nothing", None, body=json_ref("false"), **DATA_REF),
    case("L6-null-gives-nothing", None, body=json_ref("null"), **DATA_REF),
    case("L6-empty-string-absent", None, body=json_ref('""'), **DATA_REF),
    case("L6-object-gives-nothing", None, body=json_ref("{}"), **DATA_REF),
    case("L6-array-gives-nothing", None, body=json_ref('["A"]'), **DATA_REF),
    case("L6-NaN-gives-nothing", None, body=json_ref("NaN"), **DATA_REF),
    case("L6-Infinity-gives-nothing", None, body=json_ref("-Infinity"), **DATA_REF),
    case("L6-empty-string-falls-through-to-standard", "C1", "pcid=C1", body=json_ref('""'), **DATA_REF),
]
L6_BATCH = Batch(L6_CASES)


@pytest.mark.parametrize(("req", "expected"), L6_CASES)
def test_L6_json_values(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    row = L6_BATCH.row(req, dataset)
    assert row["conversion_id"] == expected
    assert row["external_id"] == "E1"  # the rest of the body is still read


def test_L6_huge_integer_exact_at_any_size(dataset: MakeDataset) -> None:
    digits = "7" * 5000
    row = one(dataset, call("r1", body='{"pcid": ' + digits + '}'))
    assert row["conversion_id"] == digits


def test_L6_json_number_status_is_text(dataset: MakeDataset) -> None:
    row = one(dataset, call("r1", body='{"pcid": "C1", "code": 102}'),
              status_location="json.code", interim_statuses=["102"])
    assert row["outcome"] == "interim"


# =========================================================================== B. bodies

JSON_REF_THEN_QUERY = {"pairing": [pairing("conversion_id", "json.ref"), pairing("conversion_id", "query.pcid")]}
JSON_TYPE = [["Content-Type", "application/json"]]

# ``json.ref`` is "J" in every body: it is read only when the body is JSON; else the query's pcid=Q.
B12_CASES = [
    case("B1-absent-body", "Q", "pcid=Q", **JSON_REF_THEN_QUERY),
    case("B1-empty-body-with-json-type", "Q", "pcid=Q", body="", headers=JSON_TYPE, **JSON_REF_THEN_QUERY),
    case("B2-json-body", "J", "pcid=Q", body='{"ref": "J"}', **JSON_REF_THEN_QUERY),
    case("B2-surrounding-whitespace", "J", "pcid=Q", body=' \t\r\n{"ref": "J"}\n ', **JSON_REF_THEN_QUERY),
    case("B2-trailing-comma-object", "J", "pcid=Q", body='{"ref": "J",}', **JSON_REF_THEN_QUERY),
    case("B2-trailing-comma-array", "J", "pcid=Q", body='{"list": [1, 2 ,], "ref": "J" , }',
         **JSON_REF_THEN_QUERY),
    case("B2-comma-inside-string-kept", "J,}", "pcid=Q", body='{"ref": "J,}",}', **JSON_REF_THEN_QUERY),
    case("B2-duplicate-key-first-wins", "J", "pcid=Q", body='{"ref": "J", "ref": "K"}', **JSON_REF_THEN_QUERY),
    case("B2-NaN-Infinity-accepted", "J", "pcid=Q", body='{"ref": "J", "n": NaN, "i": -Infinity}',
         **JSON_REF_THEN_QUERY),
    case("B2-json-whatever-content-type", "J", "pcid=Q", body='{"ref": "J"}',
         headers=[["Content-Type", "text/plain"]], **JSON_REF_THEN_QUERY),
    case("B2-surrogate-pair-ok", "J", "pcid=Q", body='{"ref": "J", "x": "\\ud83d\\ude00"}', **JSON_REF_THEN_QUERY),
    case("B2-byte-order-mark-invalid", "Q", "pcid=Q", body='\ufeff{"ref": "J"}', **JSON_REF_THEN_QUERY),
    case("B2-comment-invalid", "Q", "pcid=Q", body='{"ref": "J" /* c */}', **JSON_REF_THEN_QUERY),
    case("B2-single-quotes-invalid", "Q", "pcid=Q", body="{'ref': 'J'}", **JSON_REF_THEN_QUERY),
    case("B2-lone-surrogate-invalid", "Q", "pcid=Q", body='{"ref": "J", "x": "\\ud800"}', **JSON_REF_THEN_QUERY),
    case("B2-leading-zero-invalid", "Q", "pcid=Q", body='{"ref": "J", "n": 01}', **JSON_REF_THEN_QUERY),
    case("B2-control-character-invalid", "Q", "pcid=Q", body='{"ref": "J", "x": "a\tb"}', **JSON_REF_THEN_QUERY),
    case("B2-trailing-garbage-invalid", "Q", "pcid=Q", body='{"ref": "J"} x', **JSON_REF_THEN_QUERY),
    case("B2-double-trailing-comma-invalid", "Q", "pcid=Q", body='{"ref": "J",,}', **JSON_REF_THEN_QUERY),
    case("B2-form-feed-is-not-json-whitespace", "Q", "pcid=Q", body='\f{"ref": "J"}', **JSON_REF_THEN_QUERY),
]
B12_BATCH = Batch(B12_CASES)


@pytest.mark.parametrize(("req", "expected"), B12_CASES)
def test_B1_B2_body_kinds(dataset: MakeDataset, req: Req, expected: str) -> None:
    assert B12_BATCH.row(req, dataset)["conversion_id"] == expected


# The standard name ``pcid`` is read here from a form body only (the query and JSON carry none).
B34_CASES = [
    case("B3-leading-brace-invalid-json", None, "x=1", body='{"pcid": "C1"'),
    case("B3-leading-bracket-after-whitespace", None, "x=1", body="  [pcid=C1"),
    case("B3-brace-then-form-is-invalid-json", None, "x=1", body='{"a": 1}&pcid=C1'),
    case("B3-json-content-type", None, "x=1", body="pcid=C1", headers=JSON_TYPE),
    case("B3-content-type-case-insensitive", None, "x=1", body="pcid=C1",
         headers=[["content-type", "Application/JSON; charset=utf-8"]]),
    case("B3-content-type-contains-json", None, "x=1", body="pcid=C1",
         headers=[["Content-Type", "application/vnd.api+json"]]),
    case("B3-first-non-empty-content-type", None, "x=1", body="pcid=C1",
         headers=[["Content-Type", ""], ["content-type", "application/json"]]),
    case("B3-later-content-type-ignored", "C1", "x=1", body="pcid=C1",
         headers=[["Content-Type", "text/plain"], ["Content-Type", "application/json"]]),
    case("B3-other-header-ignored", "C1", "x=1", body="pcid=C1", headers=[["X-Content-Type", "json"]]),
    case("B3-invalid-json-still-reads-query", "Q", "pcid=Q", body='{"pcid": "C1",'),
    case("B2-json-string-body-is-not-form", None, "x=1", body='"pcid=C1"'),
    case("B2-json-null-body-is-not-form", None, "x=1", body="null"),
    case("B4-form-body", "C1", "x=1", body="x=1&pcid=C1"),
    case("B4-form-content-type", "C1", "x=1", body="pcid=C1&pcid=C2",
         headers=[["Content-Type", "application/x-www-form-urlencoded"]]),
    case("B4-not-json-not-brace-is-form", "C1", "x=1", body='x"&pcid=C1'),
    case("B4-bom-is-not-whitespace", "C1", "x=1", body='\ufeff{"a":1}&pcid=C1'),
]
B34_BATCH = Batch(B34_CASES)


@pytest.mark.parametrize(("req", "expected"), B34_CASES)
def test_B2_B3_B4_form_or_invalid_json(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    row = B34_BATCH.row(req, dataset)
    assert row["conversion_id"] == expected
    if expected is None:
        assert row["outcome"] == "no_identifiers"


@pytest.mark.parametrize("written", [
    pytest.param('"application/j\\u0073on"', id="B3-content-type-json-escaped-in-capture"),
    pytest.param('"application/JSON"', id="B3-content-type-json-upper-case-in-capture"),
])
def test_B3_json_content_type_however_the_capture_wrote_it(dataset: MakeDataset, written: str) -> None:
    """The replay first searches the headers' text for 'json' (a lookup costs more): an escape
    in the captured JSON must not hide it."""
    folder = dataset([webhook()], [lead("L1", "C1")],
                     [call("r1", "x=1", body="pcid=C1", headers={"Content-Type": "PLACEHOLDER"})])
    path = folder / "callbacks.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace('"PLACEHOLDER"', written), encoding="utf-8")
    row = judge(folder).callbacks[0]
    assert (row["conversion_id"], row["outcome"]) == (None, "no_identifiers")


def test_B3_invalid_json_matched_on_query_and_headers(dataset: MakeDataset) -> None:
    webhooks = [webhook(pairing=[pairing("external_id", "header.X-Ext")])]
    leads = [lead("L1", "C1", external_id="E1"), lead("L2", "C2")]
    calls = [call("query", "pcid=C2", body='{"pcid": "C1",', at=1),
             call("header", body='{"pcid": "C2",', headers=[["X-Ext", "E1"]], at=2)]
    judged = run(dataset, webhooks, leads, calls)
    assert [(r["outcome"], r["lead_id"], r["matched_by"]) for r in judged.callbacks] == [
        ("matched", "L2", "conversion_id"), ("matched", "L1", "external_id")]


@known_difference("yyjson (the replay) reads NaN/Infinity literals with a sign and in any case ('-NaN', 'NAN', "
                  "'Inf'); Python's json.loads only 'NaN', 'Infinity', '-Infinity'")
def test_B2_signed_NaN_literal_is_json(dataset: MakeDataset) -> None:
    row = one(dataset, call("r1", body='{"pcid": "C1", "x": -NaN}'))
    assert (row["conversion_id"], row["outcome"]) == ("C1", "matched")


@known_difference("json.loads recurses: a body nested ~1000 levels deep is invalid JSON online, "
                  "while DuckDB (yyjson) parses it and the replay reads pcid")
def test_B2_deeply_nested_json_is_still_json(dataset: MakeDataset) -> None:
    depth = 5000
    body = '{"pcid": "C1", "x": ' + "[" * depth + "]" * depth + "}"
    row = one(dataset, call("r1", body=body))
    assert (row["conversion_id"], row["outcome"]) == ("C1", "matched")


# =========================================================================== X. extraction

HEADER_THEN_QUERY = {"pairing": [pairing("conversion_id", "header.X-Ref"), pairing("conversion_id", "query.ref")]}

X12_CASES = [
    case("X1-pairing-before-standard", "C2", "ref=C2&pcid=C1", **QUERY_REF),
    case("X1-pairing-rules-in-list-order", "C3", "ref=C2", headers=[["X-Ref", "C3"]], **HEADER_THEN_QUERY),
    case("X1-absent-rule-falls-to-next-rule", "C2", "ref=C2", **HEADER_THEN_QUERY),
    case("X1-empty-rule-falls-to-standard", "C1", "ref=&pcid=C1", **QUERY_REF),
    case("X1-empty-json-rule-falls-to-standard", "C1", "pcid=C1", body='{"ref": ""}', **ref_from("json.ref")),
    case("X1-boolean-rule-falls-to-standard", "C1", "pcid=C1", body='{"ref": true}', **ref_from("json.ref")),
    case("X1-rule-for-other-identifier-not-used", None, "ref=C2",
         pairing=[pairing("external_id", "query.ref")]),
    case("X2-query-before-form", "Q", "pcid=Q", body="pcid=F"),
    case("X2-query-before-json", "Q", "pcid=Q", body='{"pcid": "J"}'),
    case("X2-empty-query-falls-to-form", "F", "pcid=", body="pcid=F"),
    case("X2-empty-query-falls-to-json", "J", "pcid=", body='{"pcid": "J"}'),
    case("X2-json-top-level", "J", body='{"pcid": "J"}'),
    case("X2-json-number", "42", body='{"pcid": 42}'),
    case("X2-json-nested-not-standard", None, body='{"data": {"pcid": "J"}}'),
    case("X2-header-not-standard", None, headers=[["pcid", "H"]]),
    case("X2-standard-name-is-pcid", None, "conversion_id=C1"),
]
X12_BATCH = Batch(X12_CASES)


@pytest.mark.parametrize(("req", "expected"), X12_CASES)
def test_X1_X2_conversion_id_sources(dataset: MakeDataset, req: Req, expected: str | None) -> None:
    assert X12_BATCH.row(req, dataset)["conversion_id"] == expected


def test_X2_external_and_advertiser_standard_names(dataset: MakeDataset) -> None:
    leads = [lead("L1", "C1", external_id="E1", advertiser_id="adv-2")]
    calls = [call("query", "external_id=E1&advertiser_id=adv-2", at=1),
             call("form", body="external_id=E1&advertiser_id=adv-2", at=2),
             call("json", body='{"external_id": "E1", "advertiser_id": "adv-2"}', at=3)]
    judged = run(dataset, [webhook()], leads, calls)
    assert [(r["external_id"], r["advertiser_id"], r["matched_by"], r["outcome"]) for r in judged.callbacks] == [
        ("E1", "adv-2", "external_id", "matched"),
        ("E1", "adv-2", "external_id", "duplicate"),
        ("E1", "adv-2", "external_id", "duplicate")]


def test_X1_pairing_for_external_and_advertiser(dataset: MakeDataset) -> None:
    fields = {"pairing": [pairing("external_id", "json.order.ref"), pairing("advertiser_id", "header.X-Adv")]}
    leads = [lead("L1", "C1", external_id="E1", advertiser_id="adv-9")]
    callback = call("r1", "external_id=E9&advertiser_id=adv-1", body='{"order": {"ref": "E1"}}',
                    headers=[["X-Adv", "adv-9"]])
    judged = run(dataset, [webhook(**fields)], leads, [callback])
    row = judged.by_request("r1")
    assert (row["external_id"], row["advertiser_id"], row["lead_id"], row["outcome"]) == (
        "E1", "adv-9", "L1", "matched")


@pytest.mark.parametrize(("query", "expected_advertiser", "expected_lead"), [
    pytest.param("external_id=E1", ADV, "L-own", id="X3-advertiser-defaults-to-webhook"),
    pytest.param("external_id=E1&advertiser_id=adv-2", "adv-2", "L-other", id="X3-explicit-advertiser"),
    pytest.param("external_id=E1&advertiser_id=", ADV, "L-own", id="X3-empty-advertiser-defaults"),
    pytest.param("external_id=E1&advertiser_id=adv-3", "adv-3", None, id="X3-advertiser-scopes-external-id"),
])
def test_X3_advertiser_default(dataset: MakeDataset, query: str, expected_advertiser: str,
                               expected_lead: str | None) -> None:
    leads = [lead("L-own", "C1", external_id="E1"), lead("L-other", "C2", external_id="E1", advertiser_id="adv-2")]
    judged = run(dataset, [webhook()], leads, [call("r1", query)])
    row = judged.by_request("r1")
    assert (row["advertiser_id"], row["lead_id"]) == (expected_advertiser, expected_lead)
    assert row["outcome"] == ("matched" if expected_lead else "not_found")


@pytest.mark.parametrize(("callback", "expected"), [
    pytest.param(call("r", "pcid=C1&status=pending"), "matched", id="X4-status-not-read-from-query"),
    pytest.param(call("r", "pcid=C1", body='{"status": "pending"}'), "interim", id="X4-status-location"),
    pytest.param(call("r", "pcid=C1", body='{"state": {"status": "pending"}}'), "matched",
                 id="X4-status-no-standard-name"),
])
def test_X4_status_from_status_location_only(dataset: MakeDataset, callback: Row, expected: str) -> None:
    row = one(dataset, callback, status_location="json.status", interim_statuses=["pending"])
    assert row["outcome"] == expected


# =========================================================================== T. token

@pytest.mark.parametrize(("webhook_id", "url", "outcome"), [
    pytest.param(WH, f"https://hooks.example.com/webhooks/{WH}?pcid=C1", "matched", id="T1-absolute-url"),
    pytest.param(WH, f"/webhooks/{WH}?pcid=C1", "matched", id="T1-path-url"),
    pytest.param(WH, f"webhooks/{WH}?pcid=C1", "matched", id="T1-relative-path"),
    pytest.param(WH, f"https://hooks.example.com/webhooks/{WH}/?pcid=C1", "matched", id="T1-trailing-slash"),
    pytest.param(WH, f"https://hooks.example.com//webhooks//{WH}//?pcid=C1", "matched", id="T1-empty-segments"),
    pytest.param(WH, "https://hooks.example.com:8443/webhooks/wh%2Da?pcid=C1", "matched",
                 id="T1-percent-encoded-token"),
    pytest.param(WH, f"HTTP://HOST/{WH}?pcid=C1", "matched", id="T1-upper-case-scheme"),
    pytest.param(WH, f"https://hooks.example.com/{WH}#/other?pcid=C1", "no_identifiers",
                 id="T1-fragment-dropped-before-path"),
    pytest.param("wh+a!", "/webhooks/wh+a%21?pcid=C1", "matched", id="T1-plus-stays-plus"),
    pytest.param("wh%FF", "/webhooks/wh%FF?pcid=C1", "matched", id="T1-invalid-escape-kept"),
    pytest.param(WH, "https://hooks.example.com?pcid=C1", "unknown_token", id="T1-no-path-unknown-token"),
    pytest.param(WH, "https://hooks.example.com/?pcid=C1", "unknown_token", id="T1-root-path-unknown-token"),
    pytest.param(WH, f"https://hooks.example.com?next=/webhooks/{WH}", "unknown_token",
                 id="T1-slash-in-query-is-not-path"),
    pytest.param(WH, f"/webhooks/{WH}/extra?pcid=C1", "unknown_token", id="T1-last-segment-only"),
    pytest.param(WH, f"/webhooks/{WH.upper()}?pcid=C1", "unknown_token", id="T1-token-case-sensitive"),
    pytest.param(WH, f"https://{WH}?pcid=C1", "unknown_token", id="T1-host-is-not-path"),
    pytest.param(WH, f"https://host://x/{WH}?pcid=C1", "matched", id="T1-second-scheme-separator-in-path"),
    pytest.param(WH, f"//10.0.0.1/webhooks/{WH}?pcid=C1", "matched", id="T1-two-slashes-open-a-path"),
    pytest.param(WH, f"//{WH}?pcid=C1", "matched", id="T1-two-slashes-no-host"),
])
def test_T1_token(dataset: MakeDataset, webhook_id: str, url: str, outcome: str) -> None:
    judged = run(dataset, [webhook(webhook_id)], [lead("L1", "C1", webhook_id=webhook_id)],
                 [call("r1", url=url)])
    row = judged.by_request("r1")
    assert row["outcome"] == outcome
    assert row["webhook_id"] == (None if outcome == "unknown_token" else webhook_id)


# =========================================================================== M. matching

def test_M0_a_refused_line_is_not_judged_and_changes_no_state(dataset: MakeDataset) -> None:
    calls = [
        refused_call("too-big", "pcid=C1", status=413, at=1),  # judged, it would have matched
        call("first", "pcid=C1", at=2),
        refused_call("outside", status=404, at=3, url="/other/wh-a?pcid=C2"),
        refused_call("out-of-order", "pcid=C1", status=409, at=1.5),
        refused_call("unknown", "pcid=C2", status=400, token="wh-zzz", at=4),
        call("second", "pcid=C2", at=5),
    ]
    judged = run(dataset, [webhook(wait=True, timeout_s=60)], [lead("L1", "C1"), lead("L2", "C2")], calls)
    assert [(r["request_id"], r["outcome"], r["status_code"], r["recorded_status"]) for r in judged.callbacks] == [
        ("too-big", "refused", 413, 413), ("out-of-order", "refused", 409, 409), ("first", "matched", 200, None),
        ("outside", "refused", 404, 404), ("unknown", "refused", 400, 400), ("second", "matched", 200, None)]
    for row in judged.callbacks:
        if row["outcome"] == "refused":  # charged to no webhook and no lead; the token says what was called
            assert [row[k] for k in ("webhook_id", "conversion_id", "external_id", "advertiser_id", "matched_by",
                                     "lead_id", "wait_s")] == [None] * 7
    assert [row["token"] for row in judged.callbacks if row["outcome"] == "refused"] == [WH, WH, WH, "wh-zzz"]
    for lead_id, first in (("L1", 2.0), ("L2", 5.0)):  # W4: only judged callbacks count
        assert (judged.lead(lead_id)["state"], judged.lead(lead_id)["callbacks"],
                judged.lead(lead_id)["first_callback_s"]) == ("received", 1, first)


def test_M0_W_the_default_observation_end_counts_a_refused_line(dataset: MakeDataset) -> None:
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1")],
                 [refused_call("r1", "pcid=C1", status=413, at=11)])
    assert (judged.lead("L1")["state"], judged.lead("L1")["callbacks"]) == ("timed_out", 0)


@pytest.mark.parametrize("mark", [
    pytest.param(False, id="I3-refused-false"),
    pytest.param("true", id="I3-refused-text-is-not-true"),
    pytest.param(1, id="I3-refused-number-is-not-true"),
    pytest.param(None, id="I3-refused-null"),
])
def test_I3_only_json_true_marks_a_refused_line(dataset: MakeDataset, mark: Any) -> None:
    row = one(dataset, {**call("r1", "pcid=C1"), "refused": mark, "response_status": 413})
    assert (row["outcome"], row["status_code"], row["recorded_status"]) == ("matched", 200, 413)


def test_I5_a_parquet_refused_column(dataset: MakeDataset, con: duckdb.DuckDBPyConnection) -> None:
    folder = dataset([webhook()], [lead("L1", "C1")], [])
    (folder / "callbacks.jsonl").unlink()
    con.execute(f"""COPY (SELECT * FROM (VALUES ('r1', '{ts(1)}', '/webhooks/{WH}?pcid=C1', true, 413),
                                                ('r2', '{ts(2)}', '/webhooks/{WH}?pcid=C1', false, 200))
                          t(request_id, received_at, url, refused, response_status))
                    TO '{folder / "callbacks.parquet"}' (FORMAT parquet)""")
    assert judge(folder).outcomes() == ["refused", "matched"]


@pytest.mark.parametrize("status", [
    pytest.param(None, id="Q2-refused-without-response-status"),
    pytest.param(0, id="Q2-refused-with-status-0"),
    pytest.param("abc", id="Q2-refused-with-status-not-a-number"),
])
@pytest.mark.parametrize("keep_requests", [True, False])
def test_Q2_a_refused_line_needs_the_status_it_was_answered(dataset: MakeDataset, con: duckdb.DuckDBPyConnection,
                                                             status: Any, keep_requests: bool) -> None:
    line = {**call("r1", "pcid=C1"), "refused": True}
    if status is not None:
        line["response_status"] = status
    load_dataset(con, dataset([webhook()], [lead("L1", "C1")], [line, call("r2", "pcid=C1", at=2)]),
                 keep_requests=keep_requests)
    assert con.execute("SELECT source_file, line, reason FROM quarantine").fetchall() == [
        ("callbacks.jsonl", 1, "refused without a response_status")]


def test_M1_unknown_token(dataset: MakeDataset) -> None:
    webhooks = [webhook(), webhook("wh-later", active_from=ts(100))]
    calls = [call("no-such-webhook", "pcid=C1", token="wh-zzz", at=1),
             call("not-live-yet", "pcid=C1", token="wh-later", at=2)]
    judged = run(dataset, webhooks, [lead("L1", "C1")], calls)
    for row in judged.callbacks:
        assert (row["outcome"], row["status_code"], row["webhook_id"], row["lead_id"]) == (
            "unknown_token", 404, None, None)
    assert [row["token"] for row in judged.callbacks] == ["wh-zzz", "wh-later"]
    assert judged.lead("L1")["callbacks"] == 0


@pytest.mark.parametrize("callback", [
    pytest.param(call("r1"), id="M2-nothing"),
    pytest.param(call("r1", "advertiser_id=adv-1&status=ok"), id="M2-advertiser-alone-is-not-enough"),
    pytest.param(call("r1", "pcid=&external_id="), id="M2-empty-values"),
    pytest.param(call("r1", body='{"pcid": 12.5, "external_id": null}'), id="M2-json-values-giving-nothing"),
])
def test_M2_no_identifiers(dataset: MakeDataset, callback: Row) -> None:
    row = one(dataset, callback)
    assert (row["outcome"], row["status_code"], row["webhook_id"], row["lead_id"]) == (
        "no_identifiers", 404, WH, None)


def test_M3_conversion_id_resolves_before_external_id(dataset: MakeDataset) -> None:
    leads = [lead("L1", "C1", external_id="E1"), lead("L2", "C2", external_id="E2")]
    judged = run(dataset, [webhook()], leads, [call("r1", "pcid=C1&external_id=E2")])
    row = judged.by_request("r1")
    assert (row["lead_id"], row["matched_by"], row["outcome"]) == ("L1", "conversion_id", "matched")


def test_M3_unknown_conversion_id_falls_back_to_external_id(dataset: MakeDataset) -> None:
    leads = [lead("L1", "C1", external_id="E1")]
    judged = run(dataset, [webhook()], leads, [call("r1", "pcid=C-unknown&external_id=E1")])
    row = judged.by_request("r1")
    assert (row["lead_id"], row["matched_by"], row["outcome"]) == ("L1", "external_id", "matched")


def test_M3_conversion_id_of_other_webhook_resolves_by_external_id_here(dataset: MakeDataset) -> None:
    webhooks = [webhook(), webhook("wh-b")]
    leads = [lead("L-here", "C1", external_id="E1"), lead("L-there", "C2", webhook_id="wh-b")]
    judged = run(dataset, webhooks, leads, [call("r1", "pcid=C2&external_id=E1")])
    row = judged.by_request("r1")
    assert (row["lead_id"], row["matched_by"], row["outcome"]) == ("L-here", "external_id", "matched")


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("pcid=007", "L1", id="M3-L6-conversion-id-exact"),
    pytest.param("pcid=7", None, id="M3-L6-leading-zeros-not-trimmed"),
    pytest.param("pcid=+007", None, id="M3-L6-spaces-not-trimmed"),
    pytest.param("external_id=Ext-1", "L1", id="M3-L6-external-id-exact"),
    pytest.param("external_id=EXT-1", None, id="M3-L6-external-id-not-case-folded"),
])
def test_M3_identifiers_compared_exactly(dataset: MakeDataset, query: str, expected: str | None) -> None:
    judged = run(dataset, [webhook()], [lead("L1", "007", external_id="Ext-1")], [call("r1", query)])
    row = judged.by_request("r1")
    assert (row["lead_id"], row["outcome"]) == (expected, "matched" if expected else "not_found")


def test_M3_external_id_scoped_to_token_webhook(dataset: MakeDataset) -> None:
    webhooks = [webhook(), webhook("wh-b")]
    leads = [lead("L-there", "C2", external_id="E1", webhook_id="wh-b")]
    judged = run(dataset, webhooks, leads, [call("r1", "external_id=E1")])
    assert judged.by_request("r1")["outcome"] == "not_found"


@pytest.mark.parametrize(("leads", "received_at", "expected"), [
    pytest.param([("L0", 0), ("L10", 10), ("L30", 30)], 20, "L10",
                 id="M3-most-recent-created-before-callback"),
    pytest.param([("L0", 0), ("L10", 10), ("L30", 30)], 10, "L10", id="M3-created-equal-received-counts"),
    pytest.param([("L10", 10), ("L0", 0)], 20, "L10", id="M3-by-created-at-not-file-order"),
    pytest.param([("L30", 30), ("L10", 10)], 5, "L10", id="M3-none-before-then-earliest-created"),
    pytest.param([("first", 0), ("second", 0)], 5, "second", id="M3-same-created-later-dispatch-is-more-recent"),
    pytest.param([("first", 10), ("second", 10)], 5, "first", id="M3-same-created-all-after-first-dispatch"),
])
def test_M3_external_id_picks_most_recent_created_before_callback(
        dataset: MakeDataset, leads: list[tuple[str, float]], received_at: float, expected: str) -> None:
    dispatches = [lead(lead_id, f"C-{lead_id}", external_id="E1", at=at) for lead_id, at in leads]
    judged = run(dataset, [webhook()], dispatches, [call("r1", "external_id=E1", at=received_at)])
    row = judged.by_request("r1")
    assert (row["lead_id"], row["matched_by"]) == (expected, "external_id")


def test_M3_external_id_picks_per_callback_time(dataset: MakeDataset) -> None:
    dispatches = [lead("L0", "C0", external_id="E1", at=0), lead("L10", "C10", external_id="E1", at=10)]
    calls = [call("early-one", "external_id=E1", at=5), call("late-one", "external_id=E1", at=15)]
    judged = run(dataset, [webhook()], dispatches, calls)
    assert [(r["lead_id"], r["outcome"]) for r in judged.callbacks] == [("L0", "matched"), ("L10", "matched")]


def test_M4_wrong_webhook_reports_the_other_lead(dataset: MakeDataset) -> None:
    webhooks = [webhook(), webhook("wh-b")]
    leads = [lead("L1", "C1"), lead("L-there", "C2", webhook_id="wh-b", at=0)]
    judged = run(dataset, webhooks, leads, [call("r1", "pcid=C2&external_id=E-none", at=3)])
    row = judged.by_request("r1")
    assert (row["outcome"], row["status_code"], row["webhook_id"], row["lead_id"], row["matched_by"],
            row["wait_s"]) == ("wrong_webhook", 404, WH, "L-there", None, None)
    assert judged.lead("L-there")["callbacks"] == 0
    assert judged.lead("L-there")["state"] == "waiting"


@pytest.mark.parametrize("query", [
    pytest.param("pcid=C9", id="M4-unknown-conversion-id"),
    pytest.param("external_id=E9", id="M4-unknown-external-id"),
    pytest.param("pcid=C9&external_id=E9", id="M4-both-unknown"),
    pytest.param("external_id=E1&advertiser_id=adv-9", id="M4-external-id-of-other-advertiser"),
])
def test_M4_not_found(dataset: MakeDataset, query: str) -> None:
    row = one(dataset, call("r1", query))
    assert (row["outcome"], row["status_code"], row["lead_id"], row["matched_by"], row["wait_s"]) == (
        "not_found", 404, None, None, None)


def test_M5_early_then_matched(dataset: MakeDataset) -> None:
    calls = [call("early", "pcid=C1", at=5), call("in-time", "pcid=C1", at=12)]
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1", at=10)], calls)
    assert [(r["outcome"], r["status_code"], r["wait_s"]) for r in judged.callbacks] == [
        ("early", 404, -5.0), ("matched", 200, 2.0)]


def test_M5_early_by_one_microsecond(dataset: MakeDataset) -> None:
    calls = [call("early", "pcid=C1", at=10, us=-1), call("at-created", "pcid=C1", at=10)]
    judged = run(dataset, [webhook()], [lead("L1", "C1", at=10)], calls)
    assert judged.outcomes() == ["early", "matched"]


def test_M5_duplicate_after_matched(dataset: MakeDataset) -> None:
    calls = [call("first", "pcid=C1", at=1), call("second", "pcid=C1", at=2), call("third", "external_id=E1", at=3)]
    judged = run(dataset, [webhook()], [lead("L1", "C1", external_id="E1")], calls)
    assert [(r["outcome"], r["status_code"]) for r in judged.callbacks] == [
        ("matched", 200), ("duplicate", 404), ("duplicate", 404)]


def test_M5_duplicate_after_matched_even_if_late(dataset: MakeDataset) -> None:
    calls = [call("in-time", "pcid=C1", at=5), call("after-deadline", "pcid=C1", at=20)]
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1")], calls)
    assert judged.outcomes() == ["matched", "duplicate"]


def test_M5_late_stays_late(dataset: MakeDataset) -> None:
    calls = [call("late-1", "pcid=C1", at=11), call("late-2", "pcid=C1", at=12)]
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1")], calls)
    assert [(r["outcome"], r["status_code"]) for r in judged.callbacks] == [("late", 404), ("late", 404)]
    assert judged.lead("L1")["state"] == "timed_out"
    assert judged.lead("L1")["finished_at"] is None


def test_M5_wait_without_timeout_is_never_late(dataset: MakeDataset) -> None:
    judged = run(dataset, [webhook(wait=True)], [lead("L1", "C1")], [call("r1", "pcid=C1", at=365 * 86400)])
    assert judged.outcomes() == ["matched"]


def test_M5_interim_then_matched(dataset: MakeDataset) -> None:
    fields = {"status_location": "query.status", "interim_statuses": ["pending", "processing"]}
    calls = [call("pending", "pcid=C1&status=pending", at=1),
             call("processing", "pcid=C1&status=processing", at=2),
             call("approved", "pcid=C1&status=approved", at=3),
             call("pending-again", "pcid=C1&status=pending", at=4)]
    judged = run(dataset, [webhook(**fields)], [lead("L1", "C1")], calls)
    assert [(r["outcome"], r["status_code"]) for r in judged.callbacks] == [
        ("interim", 200), ("interim", 200), ("matched", 200), ("duplicate", 404)]
    assert judged.lead("L1")["finished_at"] == moment(3)


@pytest.mark.parametrize(("query", "at", "expected"), [
    pytest.param("pcid=C1&status=pending", 20, "late", id="M5-late-before-interim"),
    pytest.param("pcid=C1&status=pending", -1, "early", id="M5-early-before-interim"),
    pytest.param("pcid=C1&status=Pending", 1, "matched", id="M5-interim-status-case-sensitive"),
    pytest.param("pcid=C1&status=", 1, "matched", id="M5-empty-status-not-interim"),
    pytest.param("pcid=C1", 1, "matched", id="M5-no-status-not-interim"),
])
def test_M5_interim_rule_order(dataset: MakeDataset, query: str, at: float, expected: str) -> None:
    fields = {"wait": True, "timeout_s": 10, "status_location": "query.status", "interim_statuses": ["pending"]}
    judged = run(dataset, [webhook(**fields)], [lead("L1", "C1", at=0)], [call("r1", query, at=at)])
    assert judged.outcomes() == [expected]


def test_M_judged_in_received_at_then_input_order(dataset: MakeDataset) -> None:
    # Lines 1 and 2 share a received_at: line 1 is judged first. Line 3 is received earliest of all.
    calls = [call("line-1", "pcid=C1", at=5), call("line-2", "pcid=C1", at=5), call("line-3", "pcid=C2", at=4)]
    judged = run(dataset, [webhook()], [lead("L1", "C1"), lead("L2", "C2")], calls)
    assert [(r["request_id"], r["outcome"]) for r in judged.callbacks] == [
        ("line-3", "matched"), ("line-1", "matched"), ("line-2", "duplicate")]


def test_M6_every_outcome_and_its_status_code(dataset: MakeDataset) -> None:
    webhooks = [webhook(wait=True, timeout_s=10, status_location="query.status", interim_statuses=["pending"]),
                webhook("wh-b")]
    leads = [lead("L-early", "C-early", at=50), lead("L-late", "C-late", at=0), lead("L1", "C1", at=0),
             lead("L-b", "C-b", webhook_id="wh-b", at=0)]
    calls = [
        call("interim", "pcid=C1&status=pending", at=1),
        call("matched", "pcid=C1", at=2),
        call("duplicate", "pcid=C1", at=3),
        call("early", "pcid=C-early", at=4),
        call("wrong_webhook", "pcid=C-b", at=5),
        call("not_found", "pcid=C-none", at=6),
        call("no_identifiers", "status=done", at=7),
        call("unknown_token", "pcid=C1", token="wh-none", at=8),
        call("late", "pcid=C-late", at=11),
        refused_call("refused", "pcid=C-late", status=413, at=12),
    ]
    judged = run(dataset, webhooks, leads, calls)
    assert [(r["request_id"], r["outcome"], r["status_code"]) for r in judged.callbacks] == [
        (c["request_id"], c["request_id"],
         c.get("response_status") or (200 if c["request_id"] in ("matched", "interim") else 404))
        for c in calls]
    assert {o.value for o in Outcome} == {c["request_id"] for c in calls}


def test_M6_replay_writes_the_exact_404_body(dataset: MakeDataset, con: duckdb.DuckDBPyConnection) -> None:
    folder = dataset([webhook()], [lead("L1", "C1")],
                     [call("matched", "pcid=C1", at=1), call("dup", "pcid=C1", at=2), call("nf", "pcid=C9", at=3)])
    loaded = load_dataset(con, folder)
    replay(con, loaded.webhooks)
    rows = con.execute("SELECT request_id, status_code, response_body FROM callback_outcomes ORDER BY ord").fetchall()
    body = '{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'
    assert rows == [("matched", 200, None), ("dup", 404, body), ("nf", 404, body)]


# =========================================================================== W. lead states

def test_W1_received(dataset: MakeDataset) -> None:
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1", at=0)],
                 [call("r1", "pcid=C1", at=2, us=500_000)])
    row = judged.lead("L1")
    assert (row["state"], row["finished_at"], row["wait_s"], row["callbacks"], row["first_callback_s"]) == (
        "received", moment(2.5), 2.5, 1, 2.5)
    assert row["deadline"] == moment(10)


@pytest.mark.parametrize(("end", "state"), [
    pytest.param(None, "timed_out", id="W2-default-end-is-latest-created-at"),
    pytest.param(moment(10), "waiting", id="W2-end-at-deadline-still-waiting"),
    pytest.param(moment(10, us=1), "timed_out", id="W2-end-one-us-past-deadline"),
    pytest.param(moment(-5), "waiting", id="W3-end-before-creation"),
])
def test_W2_timed_out(dataset: MakeDataset, end: datetime | None, state: str) -> None:
    leads = [lead("L1", "C1", at=0), lead("L-later", "C2", at=20)]
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], leads, [], observation_end=end)
    assert judged.lead("L1")["state"] == state
    assert judged.lead("L1")["finished_at"] is None


@pytest.mark.parametrize(("callback_at", "state"), [
    pytest.param(10, "waiting", id="W2-default-end-callback-at-deadline"),
    pytest.param(11, "timed_out", id="W2-default-end-is-latest-received-at-any-callback"),
])
def test_W2_default_end_counts_every_callback(dataset: MakeDataset, callback_at: float, state: str) -> None:
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1")],
                 [call("r1", "pcid=C1", token="wh-none", at=callback_at)])
    assert judged.lead("L1")["state"] == state


@pytest.mark.parametrize("fields", [
    pytest.param({"wait": True}, id="W3-wait-without-timeout"),
    pytest.param({}, id="W3-webhook-that-does-not-wait"),
])
def test_W3_waiting(dataset: MakeDataset, fields: dict[str, Any]) -> None:
    judged = run(dataset, [webhook(**fields)], [lead("L1", "C1")], [call("r1", "pcid=C9", at=5)],
                 observation_end=moment(10 * 365 * 86400))
    row = judged.lead("L1")
    assert (row["state"], row["deadline"], row["callbacks"], row["first_callback_s"]) == ("waiting", None, 0, None)


@pytest.mark.parametrize(("end", "state", "callbacks", "first_callback_s"), [
    pytest.param(None, "received", 4, 1.0, id="W1-W4-default-end"),
    pytest.param(moment(3), "received", 3, 1.0, id="W1-matched-at-end-counts"),
    pytest.param(moment(3, us=-1), "waiting", 2, 1.0, id="W1-matched-after-end-not-received"),
    pytest.param(moment(0), "waiting", 1, None, id="W4-only-early-callback-no-first"),
    pytest.param(moment(-10), "waiting", 0, None, id="W4-nothing-before-end"),
])
def test_W4_callbacks_and_first_callback(dataset: MakeDataset, end: datetime | None, state: str, callbacks: int,
                                         first_callback_s: float | None) -> None:
    fields = {"wait": True, "timeout_s": 100, "status_location": "query.status", "interim_statuses": ["pending"]}
    calls = [
        call("early", "pcid=C1", at=-1),
        call("interim", "pcid=C1&status=pending", at=1),
        call("wrong-webhook", "pcid=C1", token="wh-b", at=1.5),
        call("not-found", "pcid=C9", at=2),
        call("unknown-token", "pcid=C1", token="wh-none", at=2.5),
        call("matched", "pcid=C1", at=3),
        call("duplicate", "pcid=C1", at=4),
    ]
    judged = run(dataset, [webhook(**fields), webhook("wh-b")], [lead("L1", "C1", at=0)], calls,
                 observation_end=end)
    assert judged.outcomes() == ["early", "interim", "wrong_webhook", "not_found", "unknown_token", "matched",
                                 "duplicate"]
    row = judged.lead("L1")
    assert (row["state"], row["callbacks"], row["first_callback_s"]) == (state, callbacks, first_callback_s)
    if state == "received":
        assert (row["finished_at"], row["wait_s"]) == (moment(3), 3.0)
    else:
        assert (row["finished_at"], row["wait_s"]) == (None, None)


def test_W4_late_callbacks_count(dataset: MakeDataset) -> None:
    calls = [call("late-1", "pcid=C1", at=12), call("late-2", "pcid=C1", at=13)]
    judged = run(dataset, [webhook(wait=True, timeout_s=10)], [lead("L1", "C1")], calls)
    row = judged.lead("L1")
    assert (row["state"], row["callbacks"], row["first_callback_s"], row["wait_s"]) == ("timed_out", 2, 12.0, None)


# =========================================================================== what-if timeouts

def _what_if(dataset: MakeDataset, timeouts: dict[str | None, float] | None) -> Judged:
    webhooks = [webhook("wh-x", wait=True), webhook("wh-y", wait=True, timeout_s=100), webhook("wh-z")]
    leads = [lead("Lx", "Cx", webhook_id="wh-x"), lead("Ly", "Cy", webhook_id="wh-y"),
             lead("Lz", "Cz", webhook_id="wh-z"),
             lead("Lx2", "Cx2", webhook_id="wh-x"), lead("Ly2", "Cy2", webhook_id="wh-y"),
             lead("Lz2", "Cz2", webhook_id="wh-z")]
    calls = [call("x", "pcid=Cx", token="wh-x", at=20), call("y", "pcid=Cy", token="wh-y", at=20),
             call("z", "pcid=Cz", token="wh-z", at=20)]
    return run(dataset, webhooks, leads, calls, timeouts=timeouts)


@pytest.mark.parametrize(("timeouts", "outcomes", "states", "deadlines"), [
    pytest.param(None, ["matched", "matched", "matched"], ["waiting", "waiting", "waiting"],
                 [None, moment(100), None], id="what-if-none"),
    pytest.param({None: 5}, ["late", "late", "matched"], ["timed_out", "timed_out", "waiting"],
                 [moment(5), moment(5), None], id="what-if-global-only-webhooks-that-wait"),
    pytest.param({"wh-x": 5}, ["late", "matched", "matched"], ["timed_out", "waiting", "waiting"],
                 [moment(5), moment(100), None], id="what-if-one-webhook"),
    pytest.param({None: 50, "wh-x": 5}, ["late", "matched", "matched"], ["timed_out", "waiting", "waiting"],
                 [moment(5), moment(50), None], id="what-if-per-webhook-wins-over-global"),
    pytest.param({"wh-z": 5}, ["matched", "matched", "matched"], ["waiting", "waiting", "waiting"],
                 [None, moment(100), None], id="what-if-webhook-without-wait-unaffected"),
])
def test_what_if_timeouts(dataset: MakeDataset, timeouts: dict[str | None, float] | None, outcomes: list[str],
                          states: list[str], deadlines: list[datetime | None]) -> None:
    judged = _what_if(dataset, timeouts)
    assert judged.outcomes() == outcomes
    assert [judged.lead(f"L{x}2")["state"] for x in "xyz"] == states
    assert [judged.lead(f"L{x}2")["deadline"] for x in "xyz"] == deadlines


def test_what_if_unknown_webhook_is_an_error() -> None:
    versions = parse_webhooks([webhook("wh-x", wait=True)])
    with pytest.raises(ReplayError) as caught:
        versions.with_timeouts({"wh-nope": 5})
    assert str(caught.value) == "--timeout: webhook 'wh-nope': no webhook with this ID; known: wh-x"


# =========================================================================== pure values (no I/O)

@pytest.mark.parametrize(("outcome", "status"), [
    pytest.param(Outcome.MATCHED, 200, id="M6-matched-200"),
    pytest.param(Outcome.INTERIM, 200, id="M6-interim-200"),
    pytest.param(Outcome.EARLY, 404, id="M6-early-404"),
    pytest.param(Outcome.DUPLICATE, 404, id="M6-duplicate-404"),
    pytest.param(Outcome.LATE, 404, id="M6-late-404"),
    pytest.param(Outcome.WRONG_WEBHOOK, 404, id="M6-wrong-webhook-404"),
    pytest.param(Outcome.NOT_FOUND, 404, id="M6-not-found-404"),
    pytest.param(Outcome.NO_IDENTIFIERS, 404, id="M6-no-identifiers-404"),
    pytest.param(Outcome.UNKNOWN_TOKEN, 404, id="M6-unknown-token-404"),
    pytest.param(Outcome.REFUSED, None, id="M0-refused-has-no-status-of-its-own"),
])
def test_M6_status_code(outcome: Outcome, status: int | None) -> None:
    assert Outcome(outcome.value).status_code == status


def test_M6_not_found_body_bytes() -> None:
    assert NOT_FOUND_BODY == b'{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'


@pytest.mark.parametrize(("text", "kind", "name", "path"), [
    pytest.param("query.pcid", LocationKind.QUERY, "pcid", ("pcid",), id="L1-query"),
    pytest.param("query.a.b", LocationKind.QUERY, "a.b", ("a", "b"), id="L1-query-name-with-dot"),
    pytest.param("form.ref", LocationKind.FORM, "ref", ("ref",), id="L2-form"),
    pytest.param("json.items.0.id", LocationKind.JSON, "items.0.id", ("items", "0", "id"), id="L3-json-path"),
    pytest.param("header.X-Ref", LocationKind.HEADER, "X-Ref", ("X-Ref",), id="L4-header"),
])
def test_L_parse_location(text: str, kind: LocationKind, name: str, path: tuple[str, ...]) -> None:
    location = parse_location(text)
    assert location == Location(kind, name)
    assert location.path == path
    assert str(location) == text


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("cookie.x", "'cookie.x' is not a location; write query.NAME, form.NAME, json.PATH or header.NAME",
                 id="L-unknown-kind"),
    pytest.param("pcid", "'pcid' is not a location; write query.NAME, form.NAME, json.PATH or header.NAME",
                 id="L-no-kind"),
    pytest.param("query.", "'query.' is not a location; write query.NAME, form.NAME, json.PATH or header.NAME",
                 id="L-no-name"),
    pytest.param("json.a..b", "'json.a..b' has an empty path segment; write json.a.b.0.c", id="L3-empty-segment"),
    pytest.param("json.a.", "'json.a.' has an empty path segment; write json.a.b.0.c", id="L3-trailing-dot"),
    pytest.param(7, "a location must be a string like 'query.pcid', got 7", id="L-not-a-string"),
])
def test_L_parse_location_errors(text: Any, message: str) -> None:
    with pytest.raises(LocationError) as caught:
        parse_location(text)
    assert str(caught.value) == f"<settings>: {message}"


@pytest.mark.parametrize(("url", "token"), [
    pytest.param("https://h.example/webhooks/wh-acme?x=1", "wh-acme", id="T1-absolute"),
    pytest.param("/webhooks/wh-acme?x=1", "wh-acme", id="T1-path"),
    pytest.param("/webhooks/wh-acme/", "wh-acme", id="T1-trailing-slash"),
    pytest.param("/webhooks/wh%2Dacme", "wh-acme", id="T1-percent-decoded"),
    pytest.param("/webhooks/wh+acme", "wh+acme", id="T1-plus-stays-plus"),
    pytest.param("/webhooks/wh%FF", "wh%FF", id="T1-invalid-utf8-kept"),
    pytest.param("/webhooks/wh-acme#/x", "wh-acme", id="T1-fragment-dropped"),
    pytest.param("https://h.example", None, id="T1-no-path"),
    pytest.param("https://h.example?next=/wh-acme", None, id="T1-query-is-not-path"),
    pytest.param("", None, id="T1-empty-url"),
    pytest.param("https://h://x/wh-acme", "wh-acme", id="T1-path-from-first-slash-after-scheme"),
    pytest.param("https://h.example/", None, id="T1-root-path"),
    pytest.param("https://h.example//wh-acme//", "wh-acme", id="T1-empty-segments-skipped"),
    pytest.param("wh-acme", "wh-acme", id="T1-relative-one-segment"),
    pytest.param("1x://h/wh-acme", "wh-acme", id="T1-not-a-scheme-is-path"),
    pytest.param("/p://wh-acme", "wh-acme", id="T1-colon-slashes-inside-path"),
    pytest.param("https://h.example/webhooks/wh-é", "wh-é", id="T1-non-ascii"),
    pytest.param("https://hé.example", None, id="T1-non-ascii-host-no-path"),
    pytest.param("https://é/wh", "wh", id="T1-non-ascii-host"),
    pytest.param("é://h/wh", "wh", id="T1-non-ascii-before-colon-slashes"),
])
def test_T1_token_of(con: duckdb.DuckDBPyConnection, url: str, token: str | None) -> None:
    """The same in Python and in the replay's SQL (whose fast path reads a plain last segment directly)."""
    assert token_of(url) == token
    assert con.execute("SELECT wa_token(?), wa_base_token(split_part(split_part(?, '#', 1), '?', 1))",
                       [url, url]).fetchone() == (token, token)


def _request(url: str, body: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> CapturedRequest:
    return CapturedRequest("r1", T0, url, headers=headers, body=body)


@pytest.mark.parametrize(("request_", "settings", "expected"), [
    pytest.param(_request("/w/wh-a?pcid=C1&external_id=E1"), WebhookSettings(WH, ADV),
                 Identifiers("C1", "E1", ADV), id="X2-X3-query-standard-names-default-advertiser"),
    pytest.param(_request("/w/wh-a?ref=C2&pcid=C1", body='{"ext": 42, "advertiser_id": "adv-2"}'),
                 parse_webhooks([webhook(pairing=[pairing("conversion_id", "query.ref"),
                                                  pairing("external_id", "json.ext")])]).versions[0],
                 Identifiers("C2", "42", "adv-2"), id="X1-pairing-and-json-standard"),
    pytest.param(_request("/w/wh-a", body="pcid=a+b%21&status=ok"),
                 WebhookSettings(WH, ADV, status_location=parse_location("form.status")),
                 Identifiers("a b!", None, ADV, "ok"), id="X4-form-status"),
    pytest.param(_request("/w/wh-a?status=ok", headers=(("X-Status", ""), ("x-status", "done"))),
                 WebhookSettings(WH, ADV, status_location=parse_location("header.X-Status")),
                 Identifiers(None, None, ADV, "done"), id="X4-L4-header-status"),
])
def test_X_extract_identifiers(request_: CapturedRequest, settings: WebhookSettings, expected: Identifiers) -> None:
    assert extract_identifiers(parse_request(request_), settings) == expected


@pytest.mark.parametrize(("body", "headers", "kind"), [
    pytest.param(None, (), BodyKind.EMPTY, id="B1-absent"),
    pytest.param("", (("Content-Type", "application/json"),), BodyKind.EMPTY, id="B1-empty"),
    pytest.param('{"a": 1,}', (), BodyKind.JSON, id="B2-json-trailing-comma"),
    pytest.param('{"a": 1', (), BodyKind.INVALID_JSON, id="B3-brace"),
    pytest.param("a=1", (("Content-Type", "text/json"),), BodyKind.INVALID_JSON, id="B3-content-type"),
    pytest.param("a=1", (), BodyKind.FORM, id="B4-form"),
])
def test_B_parse_request_body_kind(body: str | None, headers: tuple[tuple[str, str], ...], kind: BodyKind) -> None:
    assert parse_request(_request("/w/wh-a", body=body, headers=headers)).body_kind is kind
