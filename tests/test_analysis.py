"""The analysis modules: rates, Kaplan–Meier wait times, timeout what-ifs, pairing, timelines, generate.

Hand-built datasets carry answers worked out by hand in the test (as fractions or
literal counts, never by re-running the code under test). Larger data is checked
against independent oracles: lifelines' ``KaplanMeierFitter`` for the survival
curve, exact rational arithmetic for Kaplan–Meier quantiles, and a separate
``replay(timeouts={None: T})`` on a fresh connection for every timeout what-if.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

import webhook_core as wc
from webhook_core import Audit, ReplayError, connect, load_dataset, replay
from webhook_core.analysis.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.analysis.rates import disagreements, lead_headline, rates
from webhook_core.analysis.survival import CURVE_COLUMNS, Z_95, capture_curve, finishing_curve, wait_summary
from webhook_core.analysis.timeline import lead_timeline
from webhook_core.analysis.timeouts import (
    ADVICE_COLUMNS,
    DEFAULT_CANDIDATES,
    blocking_webhooks,
    timeout_advice,
    timeout_whatifs,
)
from webhook_core.domain import REASONS_404
from webhook_core.synth.generate import generate
from webhook_core.timeutil import human_duration

from datasets import write_dataset

MakeDataset = Callable[..., Path]
Row = dict[str, Any]

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
DAY1 = pd.Timestamp("2024-05-01")
DAY2 = pd.Timestamp("2024-05-02")
GENERATED_SEEDS = (11, 12)


# --------------------------------------------------------------------------- helpers


def ts(seconds: float = 0.0) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def moment(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def webhook(webhook_id: str, advertiser_id: str, **fields: Any) -> Row:
    return {"webhook_id": webhook_id, "advertiser_id": advertiser_id, **fields}


def lead(lead_id: str, conversion_id: str, webhook_id: str, advertiser_id: str, *, at: float | str = 0.0,
         external_id: str | None = None) -> Row:
    created = at if isinstance(at, str) else ts(at)
    return {"lead_id": lead_id, "conversion_id": conversion_id, "advertiser_id": advertiser_id,
            "external_id": external_id, "webhook_id": webhook_id, "created_at": created}


def call(request_id: str, token: str, query: str = "", *, at: float | str = 1.0, body: str | None = None,
         headers: list[list[str]] | None = None, recorded: int | None = None) -> Row:
    row: Row = {"request_id": request_id, "received_at": at if isinstance(at, str) else ts(at),
                "url": f"/webhooks/{token}" + (f"?{query}" if query else "")}
    if body is not None:
        row["body"] = body
    if headers is not None:
        row["headers"] = headers
    if recorded is not None:
        row["response_status"] = recorded
    return row


def replayed(con: duckdb.DuckDBPyConnection, folder: Path, **options: Any) -> Audit:
    """``folder`` loaded into ``con`` and replayed with ``options``, as the analyses take it."""
    loaded = load_dataset(con, folder)
    result = replay(con, loaded.webhooks, **options)
    return Audit(con, loaded.webhooks, result.observation_end or None, Path(folder), read_only=False)


def records(frame: pd.DataFrame) -> list[Row]:
    """Rows as dicts with NaN/NaT turned into None, so they compare with ``==``."""
    return [{str(k): (None if not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v) else v)
             for k, v in row.items()} for row in frame.to_dict("records")]


def close(actual: Any, expected: Any, rel: float = 1e-12) -> bool:
    if expected is None:
        return actual is None
    if isinstance(expected, float | Fraction) and not isinstance(expected, bool):
        return actual is not None and math.isclose(float(actual), float(expected), rel_tol=rel, abs_tol=1e-15)
    return bool(actual == expected)


def assert_rows(actual: list[Row], expected: list[Row]) -> None:
    """Each expected row's keys equal the actual row's (floats to 1e-12), in order."""
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        wrong = {k: (got.get(k), v) for k, v in want.items() if not close(got.get(k), v)}
        assert not wrong, f"row {want}: (actual, expected) differ in {wrong}"


@pytest.fixture(scope="module")
def sample() -> Iterator[Audit]:
    with replayed(connect(), SAMPLE) as audit:
        yield audit


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """``generate(leads=2000)`` for a couple of seeds, written once per module."""
    return {seed: generate(tmp_path_factory.mktemp(f"gen{seed}"), leads=2000, seed=seed).path
            for seed in GENERATED_SEEDS}


@pytest.fixture(scope="module")
def generated_replays(generated: dict[int, Path]) -> Iterator[dict[int, Audit]]:
    """Each generated dataset loaded and replayed once (the analyses only read the replay's tables)."""
    cases = {seed: replayed_dataset(folder) for seed, folder in generated.items()}
    yield cases
    for audit in cases.values():
        audit.close()


def module_case(factory: pytest.TempPathFactory, name: str, webhooks: list[Row], leads: list[Row],
                callbacks: list[Row], **options: Any) -> Iterator[Audit]:
    """A hand-built dataset replayed once per module (the analysis functions only read the replay's tables)."""
    with replayed(connect(), write_dataset(factory.mktemp(name), webhooks, leads, callbacks), **options) as audit:
        yield audit


def replayed_dataset(folder: Path, **options: Any) -> Audit:
    return replayed(connect(), folder, **options)


# =========================================================================== rates
#
# wh-a (advertiser A) waits 30 s; wh-b (B) waits without a timeout, status in json.status, "pending" is interim;
# wh-c (A again) does not wait. Day 1 = 2024-05-01 UTC, day 2 = 2024-05-02 UTC. Observation end: the latest
# timestamp, day 2 09:00:10 (r11).

RATES_WEBHOOKS = [
    webhook("wh-a", "A", wait=True, timeout_s=30),
    webhook("wh-b", "B", wait=True, status_location="json.status", interim_statuses=["pending"]),
    webhook("wh-c", "A"),
]
DAY2_0800 = 22 * 3600.0  # seconds from T0 (day 1 10:00) to day 2 08:00
RATES_LEADS = [
    lead("L1", "C1", "wh-a", "A"),                    # received (r1)
    lead("L2", "C2", "wh-a", "A", external_id="E2"),  # only a late callback: timed_out
    lead("L3", "C3", "wh-a", "A"),                    # never answered: timed_out
    lead("L4", "C4", "wh-b", "B"),                    # received on day 2 (r10)
    lead("L5", "C5", "wh-b", "B", at=DAY2_0800),      # only an interim: waiting (no timeout)
    lead("L6", "C6", "wh-c", "A", at=DAY2_0800 + 3600),  # received (r11)
    lead("L7", "C7", "wh-a", "A", at=DAY2_0800),      # day 2, never answered: timed_out, a day without callbacks
]
RATES_CALLBACKS = [
    call("r1", "wh-a", "pcid=C1", at=5, recorded=200),                           # matched, agree
    call("r2", "wh-a", "pcid=C1", at=10, recorded=200),                          # duplicate, DISAGREE
    call("r3", "wh-a", "external_id=E2", at=40, recorded=404),                   # late, agree
    call("r4", "wh-a", "pcid=C9", at=50),                                        # not_found, no recorded answer
    call("r5", "wh-a", at=60, recorded=502),                                     # no_identifiers, DISAGREE
    call("r6", "wh-b", at=3, body='{"pcid": "C4", "status": "pending"}', recorded=200),  # interim, agree
    call("r7", "wh-b", "pcid=C1", at=4, recorded=404),                           # wrong_webhook, agree
    call("r8", "wh-zzz", "pcid=C1", at=6, recorded=404),                         # unknown_token, agree
    call("r9", "wh-b", "pcid=C4", at=-1, recorded=404),                          # early, agree
    # 22:00:05 at -02:00 is day 2 00:00:05 UTC: counts on day 2.
    call("r10", "wh-b", "pcid=C4", at="2024-05-01T22:00:05-02:00", recorded=200),  # matched, agree
    call("r11", "wh-c", at=DAY2_0800 + 3610, body="pcid=C6", recorded=404),      # matched, DISAGREE
    call("r12", "wh-b", at=DAY2_0800 + 30, body='{"pcid": "C5", "status": "pending"}'),  # interim
]


def rate_row(key: str, *, callbacks: int = 0, matched: int = 0, interim: int = 0, leads: int = 0,
             received: int = 0, timed_out: int = 0, waiting: int = 0, recorded: int = 0, agree: int = 0,
             misrouted_out: int = 0, misrouted_in: int = 0, token_not_live: int = 0, **reasons: int) -> Row:
    """The expected row, with rates as hand-divided fractions of the counts given."""
    answered_404 = sum(reasons.values())
    assert answered_404 + matched + interim == callbacks
    return {
        "key": key, "callbacks": callbacks, "matched": matched, "interim": interim, "answered_404": answered_404,
        "match_rate": Fraction(matched, callbacks) if callbacks else None,
        "rate_404": Fraction(answered_404, callbacks) if callbacks else None,
        **{f"404_{r}": reasons.get(r, 0) for r in REASONS_404},
        "leads": leads, "received": received, "timed_out": timed_out, "waiting": waiting,
        "recorded": recorded, "agree": agree, "disagree": recorded - agree,
        "agreement_rate": Fraction(agree, recorded) if recorded else None,
        "misrouted_out": misrouted_out, "misrouted_in": misrouted_in, "token_not_live": token_not_live,
    }


def keyed(frame: pd.DataFrame, by: str) -> list[Row]:
    rows = records(frame)
    for row in rows:
        row["key"] = row.pop(by)
    return rows


@pytest.fixture(scope="module")
def rates_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "rates", RATES_WEBHOOKS, RATES_LEADS, RATES_CALLBACKS)


def test_rates_outcomes_of_the_hand_built_dataset_are_as_designed(rates_audit: Audit) -> None:
    # The premise of every rates test below: each callback got the outcome its comment says.
    outcomes = dict(rates_audit.con.execute("SELECT request_id, outcome FROM callback_outcomes").fetchall())
    assert outcomes == {
        "r1": "matched", "r2": "duplicate", "r3": "late", "r4": "not_found", "r5": "no_identifiers",
        "r6": "interim", "r7": "wrong_webhook", "r8": "unknown_token", "r9": "early", "r10": "matched",
        "r11": "matched", "r12": "interim",
    }
    states = dict(rates_audit.con.execute("SELECT lead_id, state FROM lead_outcomes").fetchall())
    assert states == {"L1": "received", "L2": "timed_out", "L3": "timed_out", "L4": "received",
                      "L5": "waiting", "L6": "received", "L7": "timed_out"}


def test_rates_per_webhook_with_all_row(rates_audit: Audit) -> None:
    frame = rates(rates_audit)
    assert list(frame.columns) == [
        "webhook_id", "callbacks", "matched", "interim", "answered_404", "match_rate", "rate_404",
        *[f"404_{r}" for r in REASONS_404], "leads", "received", "timed_out", "waiting",
        "recorded", "agree", "disagree", "lead_quarantined", "agreement_rate",
        "misrouted_out", "misrouted_in", "token_not_live"]
    # r7, sent to wh-b naming wh-a's C1: charged to wh-b (misrouted_out), told to wh-a (misrouted_in).
    assert_rows(keyed(frame, "webhook_id"), [
        rate_row("(unknown)", callbacks=1, unknown_token=1, recorded=1, agree=1),
        rate_row("wh-a", callbacks=5, matched=1, duplicate=1, late=1, not_found=1, no_identifiers=1,
                 leads=4, received=1, timed_out=3, recorded=4, agree=2, misrouted_in=1),
        rate_row("wh-b", callbacks=5, matched=1, interim=2, wrong_webhook=1, early=1,
                 leads=2, received=1, waiting=1, recorded=4, agree=4, misrouted_out=1),
        rate_row("wh-c", callbacks=1, matched=1, leads=1, received=1, recorded=1, agree=0),
        rate_row("(all)", callbacks=12, matched=3, interim=2, duplicate=1, late=1, not_found=1, no_identifiers=1,
                 wrong_webhook=1, early=1, unknown_token=1, leads=7, received=3, timed_out=3, waiting=1,
                 recorded=10, agree=7, misrouted_out=1, misrouted_in=1),
    ])


def test_rates_per_advertiser_groups_webhooks_of_one_advertiser(rates_audit: Audit) -> None:
    frame = rates(rates_audit, by="advertiser_id")
    assert frame.columns[0] == "advertiser_id"
    assert_rows(keyed(frame, "advertiser_id"), [
        rate_row("(unknown)", callbacks=1, unknown_token=1, recorded=1, agree=1),
        rate_row("A", callbacks=6, matched=2, duplicate=1, late=1, not_found=1, no_identifiers=1,
                 leads=5, received=2, timed_out=3, recorded=5, agree=2, misrouted_in=1),
        rate_row("B", callbacks=5, matched=1, interim=2, wrong_webhook=1, early=1,
                 leads=2, received=1, waiting=1, recorded=4, agree=4, misrouted_out=1),
        rate_row("(all)", callbacks=12, matched=3, interim=2, duplicate=1, late=1, not_found=1, no_identifiers=1,
                 wrong_webhook=1, early=1, unknown_token=1, leads=7, received=3, timed_out=3, waiting=1,
                 recorded=10, agree=7, misrouted_out=1, misrouted_in=1),
    ])


def test_rates_per_day_callbacks_by_received_day_leads_by_created_day(rates_audit: Audit) -> None:
    frame = rates(rates_audit, per_day=True)
    assert list(frame.columns[:2]) == ["webhook_id", "day"]
    rows = keyed(frame, "webhook_id")
    for row in rows:
        row["day"] = pd.Timestamp(row["day"])
    expected = [
        (DAY1, rate_row("(unknown)", callbacks=1, unknown_token=1, recorded=1, agree=1)),
        (DAY1, rate_row("wh-a", callbacks=5, matched=1, duplicate=1, late=1, not_found=1, no_identifiers=1,
                        leads=3, received=1, timed_out=2, recorded=4, agree=2, misrouted_in=1)),
        # A day with a lead and no callback: zero callbacks, rates undefined.
        (DAY2, rate_row("wh-a", leads=1, timed_out=1)),
        (DAY1, rate_row("wh-b", callbacks=3, interim=1, wrong_webhook=1, early=1, leads=1, received=1,
                        recorded=3, agree=3, misrouted_out=1)),
        # r10 was sent at 22:00:05-02:00, i.e. on day 2 in UTC.
        (DAY2, rate_row("wh-b", callbacks=2, matched=1, interim=1, leads=1, waiting=1, recorded=1, agree=1)),
        (DAY2, rate_row("wh-c", callbacks=1, matched=1, leads=1, received=1, recorded=1, agree=0)),
    ]
    assert [(r["key"], r["day"]) for r in rows] == [(row["key"], day) for day, row in expected]
    assert_rows(rows, [row for _, row in expected])


def test_rates_per_day_by_advertiser(rates_audit: Audit) -> None:
    rows = keyed(rates(rates_audit, by="advertiser_id", per_day=True), "advertiser_id")
    assert [(r["key"], pd.Timestamp(r["day"])) for r in rows] == [
        ("(unknown)", DAY1), ("A", DAY1), ("A", DAY2), ("B", DAY1), ("B", DAY2)]
    assert_rows(rows[1:3], [
        rate_row("A", callbacks=5, matched=1, duplicate=1, late=1, not_found=1, no_identifiers=1,
                 leads=3, received=1, timed_out=2, recorded=4, agree=2, misrouted_in=1),
        rate_row("A", callbacks=1, matched=1, leads=2, received=1, timed_out=1, recorded=1, agree=0),
    ])


def test_rates_match_plus_interim_plus_404_shares_sum_to_one(sample: Audit) -> None:
    frame = rates(sample)
    share = frame.match_rate + frame.interim / frame.callbacks + frame.rate_404
    assert np.allclose(share, 1.0, rtol=0, atol=1e-12)
    assert (frame.answered_404 == frame[[f"404_{r}" for r in REASONS_404]].sum(axis=1)).all()
    assert (frame.leads == frame.received + frame.timed_out + frame.waiting).all()
    assert (frame.recorded == frame.agree + frame.disagree).all()


@pytest.mark.parametrize("by", ["webhook_id", "advertiser_id"])
def test_rates_per_day_rows_add_up_to_the_overall_rows(sample: Audit, by: str) -> None:
    counts = ["callbacks", "matched", "interim", "answered_404", *[f"404_{r}" for r in REASONS_404],
              "leads", "received", "timed_out", "waiting", "recorded", "agree", "disagree",
              "misrouted_out", "misrouted_in", "token_not_live"]
    overall: pd.DataFrame = rates(sample, by=by).set_index(by)[counts]  # type: ignore[arg-type]
    per_day: pd.DataFrame = rates(sample, by=by, per_day=True).groupby(by)[counts].sum()  # type: ignore[arg-type]
    assert list(overall.loc["(all)"]) == list(per_day.sum(axis=0))
    pd.testing.assert_frame_equal(overall.drop(index="(all)").astype("int64"), per_day.astype("int64"),
                                  check_names=False)


def test_rates_sample_all_row_counts_every_callback_and_lead(sample: Audit) -> None:
    total = rates(sample).set_index("webhook_id").loc["(all)"]
    callbacks, recorded = sample.con.execute(
        "SELECT count(*), count(recorded_status) FROM callback_outcomes").fetchone()  # type: ignore[misc]
    assert (total.callbacks, total.recorded) == (callbacks, recorded) == (3537, 3537)
    assert total.leads == 3000


def test_rates_rejects_an_unknown_grouping(rates_audit: Audit) -> None:
    with pytest.raises(ValueError, match=r"^by must be 'webhook_id' or 'advertiser_id', not 'advertiser'$"):
        rates(rates_audit, by="advertiser")  # type: ignore[arg-type]


def test_disagreements_lists_exactly_the_callbacks_where_recorded_differs(
        rates_audit: Audit) -> None:
    frame = disagreements(rates_audit)
    assert list(frame.columns) == ["request_id", "received_at", "webhook_id", "token", "conversion_id",
                                   "external_id", "lead_id", "outcome", "model_status", "recorded_status"]
    got = [(r["request_id"], r["webhook_id"], r["outcome"], r["lead_id"], r["model_status"], r["recorded_status"])
           for r in records(frame)]
    assert got == [
        ("r2", "wh-a", "duplicate", "L1", 404, 200),
        ("r5", "wh-a", "no_identifiers", None, 404, 502),
        ("r11", "wh-c", "matched", "L6", 200, 404),
    ]
    assert frame.received_at.tolist() == [moment(10), moment(60), moment(DAY2_0800 + 3610)]


def test_disagreements_equals_every_recorded_row_that_differs_on_sample(
        sample: Audit) -> None:
    outcomes = sample.con.execute(
        "SELECT request_id, status_code, recorded_status FROM callback_outcomes ORDER BY ord").df()
    differ = outcomes[outcomes.recorded_status.notna() & (outcomes.recorded_status != outcomes.status_code)]
    frame = disagreements(sample)
    assert frame.request_id.tolist() == differ.request_id.tolist()
    assert len(frame) == rates(sample).set_index("webhook_id").loc["(all)", "disagree"]


# --------------------------------------------------------------------------- both sides: misrouted, token not live
#
# wh-a and wh-a2 belong to advertiser A, wh-b to B; wh-old (advertiser O) was retired at T0, wh-new (advertiser N)
# goes live a day after T0: their tokens are configured but not live at any callback below. wh-never is in no
# version. Every callback is at T0 + a few seconds.

BOTH_SIDES_WEBHOOKS = [
    webhook("wh-a", "A"),
    webhook("wh-a2", "A"),
    webhook("wh-b", "B"),
    webhook("wh-old", "O", active_to=ts(0)),
    webhook("wh-new", "N", active_from=ts(86400)),
]
BOTH_SIDES_LEADS = [lead("La", "Ca", "wh-a", "A"), lead("Lb", "Cb", "wh-b", "B"), lead("La2", "Ca2", "wh-a2", "A")]
BOTH_SIDES_CALLBACKS = [
    call("ok", "wh-a", "pcid=Ca", at=1),         # matched
    call("m1", "wh-b", "pcid=Ca", at=2),         # wrong_webhook: called wh-b (B), names wh-a's lead (A)
    call("m2", "wh-b", "pcid=Ca", at=3),         # the same again
    call("m3", "wh-a", "pcid=Cb", at=4),         # wrong_webhook: called wh-a (A), names wh-b's lead (B)
    call("m4", "wh-a2", "pcid=Ca", at=5),        # wrong_webhook within advertiser A: wh-a2 names wh-a's lead
    call("nf", "wh-a", "pcid=C404", at=6),       # not_found: names no lead, so no owner
    call("old", "wh-old", "pcid=Ca", at=7),      # unknown_token: wh-old retired at T0
    call("new", "wh-new", "pcid=Ca", at=8),      # unknown_token: wh-new not live yet
    call("never", "wh-never", "pcid=Ca", at=9),  # unknown_token: no version has the token
    {"request_id": "notoken", "received_at": ts(10), "url": "/"},  # unknown_token: the URL has no token
    {**call("refused", "wh-old", "pcid=Ca", at=11), "refused": True, "response_status": 413},  # not judged
]


@pytest.fixture(scope="module")
def both_sides_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "both-sides", BOTH_SIDES_WEBHOOKS, BOTH_SIDES_LEADS,
                           BOTH_SIDES_CALLBACKS)


def test_misrouted_and_token_columns_of_callback_outcomes(both_sides_audit: Audit) -> None:
    got = both_sides_audit.con.execute("""
        SELECT request_id, outcome, webhook_id, lead_id, owner_webhook_id, token_webhook_id, token_status
        FROM callback_outcomes ORDER BY ord""").fetchall()
    assert got == [
        ("ok", "matched", "wh-a", "La", None, None, None),
        ("m1", "wrong_webhook", "wh-b", "La", "wh-a", None, None),
        ("m2", "wrong_webhook", "wh-b", "La", "wh-a", None, None),
        ("m3", "wrong_webhook", "wh-a", "Lb", "wh-b", None, None),
        ("m4", "wrong_webhook", "wh-a2", "La", "wh-a", None, None),
        ("nf", "not_found", "wh-a", None, None, None, None),
        # The outcome stays the rules' (M1): only the attribution is new.
        ("old", "unknown_token", None, None, None, "wh-old", "not live at received_at"),
        ("new", "unknown_token", None, None, None, "wh-new", "not live at received_at"),
        ("never", "unknown_token", None, None, None, None, "never configured"),
        ("notoken", "unknown_token", None, None, None, None, "never configured"),
        ("refused", "refused", None, None, None, None, None),
    ]


def test_rates_misrouted_in_and_out_and_token_not_live_per_webhook(both_sides_audit: Audit) -> None:
    # ok, m3, nf are wh-a's; m4 wh-a2's; m1, m2 wh-b's; old, new their token's webhook's; never and notoken
    # (unknown)'s; refused nobody's. misrouted_in: wh-a is named by m1, m2, m4; wh-b by m3.
    assert_rows(keyed(rates(both_sides_audit), "webhook_id"), [
        rate_row("(unknown)", callbacks=2, unknown_token=2),
        rate_row("wh-a", callbacks=3, matched=1, wrong_webhook=1, not_found=1, leads=1, received=1,
                 misrouted_out=1, misrouted_in=3),
        rate_row("wh-a2", callbacks=1, wrong_webhook=1, leads=1, waiting=1, misrouted_out=1),
        rate_row("wh-b", callbacks=2, wrong_webhook=2, leads=1, waiting=1, misrouted_out=2, misrouted_in=1),
        rate_row("wh-new", callbacks=1, unknown_token=1, token_not_live=1),
        rate_row("wh-old", callbacks=1, unknown_token=1, token_not_live=1),
        # Every judged callback once (10: refused is not judged); misrouted_in and _out both count the 4 misroutes.
        rate_row("(all)", callbacks=10, matched=1, wrong_webhook=4, not_found=1, unknown_token=4, leads=3,
                 received=1, waiting=2, misrouted_out=4, misrouted_in=4, token_not_live=2),
    ])


def test_rates_misrouted_in_and_out_per_advertiser(both_sides_audit: Audit) -> None:
    # A (wh-a, wh-a2) sent m3 and m4 astray and is named by m1, m2, m4 (m4 on both sides: within A).
    assert_rows(keyed(rates(both_sides_audit, by="advertiser_id"), "advertiser_id"), [
        rate_row("(unknown)", callbacks=2, unknown_token=2),
        rate_row("A", callbacks=4, matched=1, wrong_webhook=2, not_found=1, leads=2, received=1, waiting=1,
                 misrouted_out=2, misrouted_in=3),
        rate_row("B", callbacks=2, wrong_webhook=2, leads=1, waiting=1, misrouted_out=2, misrouted_in=1),
        rate_row("N", callbacks=1, unknown_token=1, token_not_live=1),
        rate_row("O", callbacks=1, unknown_token=1, token_not_live=1),
        rate_row("(all)", callbacks=10, matched=1, wrong_webhook=4, not_found=1, unknown_token=4, leads=3,
                 received=1, waiting=2, misrouted_out=4, misrouted_in=4, token_not_live=2),
    ])


@pytest.mark.parametrize("by", ["webhook_id", "advertiser_id"])
def test_rates_token_not_live_and_misrouted_reconcile_with_the_all_row(both_sides_audit: Audit, by: str) -> None:
    frame: pd.DataFrame = rates(both_sides_audit, by=by).set_index(by)  # type: ignore[arg-type]
    counts = ["callbacks", "answered_404", *[f"404_{r}" for r in REASONS_404], "misrouted_out", "misrouted_in",
              "token_not_live"]
    assert list(frame.loc["(all)"][counts]) == list(frame.drop(index="(all)")[counts].sum(axis=0))
    (judged, wrong) = both_sides_audit.con.execute(
        "SELECT count(*), count(*) FILTER (outcome = 'wrong_webhook') FROM callback_outcomes "
        "WHERE outcome <> 'refused'").fetchone()  # type: ignore[misc]
    configured = {entry["webhook_id"] for entry in BOTH_SIDES_WEBHOOKS}
    unknown = [token for (token,) in both_sides_audit.con.execute(
        "SELECT token FROM callback_outcomes WHERE outcome = 'unknown_token'").fetchall()]
    not_live = sum(token in configured for token in unknown)
    assert frame.loc["(all)", "callbacks"] == judged == 10
    # Each misroute once on each side; each unknown token once, on its webhook's row or on (unknown).
    assert frame.loc["(all)", "misrouted_in"] == frame.loc["(all)", "misrouted_out"] == wrong == 4
    assert frame.loc["(all)", "token_not_live"] == not_live == 2
    assert frame.loc["(unknown)", "404_unknown_token"] == len(unknown) - not_live == 2


def test_rates_on_sample_tell_both_sides(sample: Audit) -> None:
    # Worked out from the inputs, not from the new columns: a wrong_webhook callback's conversion ID names a
    # dispatch, whose webhook_id is the owner; an unknown_token's token is "not live" when webhooks.json has it.
    named = dict(sample.con.execute("""
        SELECT d.webhook_id, count(*) FROM callback_outcomes c JOIN dispatches d ON d.conversion_id = c.conversion_id
        WHERE c.outcome = 'wrong_webhook' GROUP BY ALL""").fetchall())
    called = dict(sample.con.execute(
        "SELECT webhook_id, count(*) FROM callback_outcomes WHERE outcome = 'wrong_webhook' GROUP BY ALL").fetchall())
    configured = {entry["webhook_id"] for entry in json.loads((SAMPLE / "webhooks.json").read_text(encoding="utf-8"))}
    tokens = sample.con.execute(
        "SELECT token, count(*) FROM callback_outcomes WHERE outcome = 'unknown_token' GROUP BY ALL").fetchall()
    not_live = {token: n for token, n in tokens if token in configured}
    never = sum(n for token, n in tokens if token not in configured)
    assert (named, called) == ({"wh-fastpay": 6}, {"wh-retry": 6})
    # wh-fastpay-v1 is no webhook_id of data/sample/webhooks.json: never configured, so it stays (unknown).
    assert (not_live, never) == ({"wh-slowbank": 1}, 13)
    frame = rates(sample).set_index("webhook_id")
    assert frame.misrouted_in[frame.misrouted_in > 0].to_dict() == named | {"(all)": 6}
    assert frame.misrouted_out[frame.misrouted_out > 0].to_dict() == called | {"(all)": 6}
    assert frame.token_not_live[frame.token_not_live > 0].to_dict() == not_live | {"(all)": 1}
    assert frame.loc["(unknown)", "404_unknown_token"] == never
    assert frame.loc["(all)", "404_unknown_token"] == never + sum(not_live.values())


# =========================================================================== per-lead headline
#
# wh-t (advertiser T) waits 30 s; wh-w (W) waits without a timeout, "pending" in json.status is interim;
# wh-q (T again) does not wait and has no lead (its callback is not_found: a group with callbacks and no
# lead); wh-s (S) waits 60 s and gets no callback (a group with leads and no callback). The observation
# end is the latest timestamp, h10 at 100 s.

HEADLINE_WEBHOOKS = [
    webhook("wh-t", "T", wait=True, timeout_s=30),
    webhook("wh-w", "W", wait=True, status_location="json.status", interim_statuses=["pending"]),
    webhook("wh-q", "T"),
    webhook("wh-s", "S", wait=True, timeout_s=60),
]
HEADLINE_LEADS = [
    lead("T1", "CT1", "wh-t", "T"),           # received (h1), then duplicates
    lead("T2", "CT2", "wh-t", "T"),           # only a late callback: timed out, called back
    lead("T3", "CT3", "wh-t", "T"),           # only an early callback: timed out, called back
    lead("T4", "CT4", "wh-t", "T"),           # named only by another webhook's callback: never called back
    lead("W1", "CW1", "wh-w", "W"),           # only an interim: waiting, called back
    lead("W2", "CW2", "wh-w", "W"),           # nothing: waiting, never called back
    lead("W3", "CW3", "wh-w", "W"),           # received (h7)
    lead("S1", "CS1", "wh-s", "S"),           # nothing, past its deadline: timed out, never called back
    lead("S2", "CS2", "wh-s", "S", at=95),    # nothing, deadline after the end: waiting, never called back
]
HEADLINE_CALLBACKS = [
    call("h1", "wh-t", "pcid=CT1", at=5),                                       # matched
    call("h2", "wh-t", "pcid=CT1", at=8),                                       # duplicate
    call("h3", "wh-t", "pcid=CT2", at=40),                                      # late
    call("h4", "wh-t", "pcid=CT3", at=-1),                                      # early
    call("h5", "wh-w", "pcid=CT4", at=6),                                       # wrong_webhook (names T4)
    call("h6", "wh-w", at=7, body='{"pcid": "CW1", "status": "pending"}'),      # interim
    call("h7", "wh-w", "pcid=CW3", at=9),                                       # matched
    call("h8", "wh-q", "pcid=CQ", at=10),                                       # not_found
    call("h9", "wh-zz", "pcid=CT1", at=11),                                     # unknown_token
    call("h10", "wh-t", "pcid=CT1", at=100),                                    # duplicate
]
HEADLINE_COLUMNS = ["leads", "received", "timed_out", "waiting", "never_called_back", "never_called_back_timed_out",
                    "answer_rate", "callbacks", "matched", "interim", "answered_404", "match_rate", "interim_rate",
                    "rate_404", "404s_per_lead"]


def headline_row(key: str, *, leads: int = 0, received: int = 0, timed_out: int = 0, waiting: int = 0,
                 never: int = 0, never_timed_out: int = 0, callbacks: int = 0, matched: int = 0, interim: int = 0,
                 answered_404: int = 0) -> Row:
    """The expected row, with rates as hand-divided fractions of the counts given."""
    assert received + timed_out + waiting == leads and matched + interim + answered_404 == callbacks
    return {
        "key": key, "leads": leads, "received": received, "timed_out": timed_out, "waiting": waiting,
        "never_called_back": never, "never_called_back_timed_out": never_timed_out,
        "answer_rate": Fraction(received, leads) if leads else None,
        "callbacks": callbacks, "matched": matched, "interim": interim, "answered_404": answered_404,
        "match_rate": Fraction(matched, callbacks) if callbacks else None,
        "interim_rate": Fraction(interim, callbacks) if callbacks else None,
        "rate_404": Fraction(answered_404, callbacks) if callbacks else None,
        "404s_per_lead": Fraction(answered_404, leads) if leads else None,
    }


@pytest.fixture(scope="module")
def headline_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "headline", HEADLINE_WEBHOOKS, HEADLINE_LEADS, HEADLINE_CALLBACKS)


def test_headline_outcomes_and_states_of_the_hand_built_dataset_are_as_designed(headline_audit: Audit) -> None:
    outcomes = dict(headline_audit.con.execute("SELECT request_id, outcome FROM callback_outcomes").fetchall())
    assert outcomes == {"h1": "matched", "h2": "duplicate", "h3": "late", "h4": "early", "h5": "wrong_webhook",
                        "h6": "interim", "h7": "matched", "h8": "not_found", "h9": "unknown_token",
                        "h10": "duplicate"}
    states = dict(headline_audit.con.execute("SELECT lead_id, state FROM lead_outcomes").fetchall())
    assert states == {"T1": "received", "T2": "timed_out", "T3": "timed_out", "T4": "timed_out",
                      "W1": "waiting", "W2": "waiting", "W3": "received", "S1": "timed_out", "S2": "waiting"}


def test_headline_per_webhook_counts_leads_then_callbacks(headline_audit: Audit) -> None:
    frame = lead_headline(headline_audit)
    assert list(frame.columns) == ["webhook_id", *HEADLINE_COLUMNS]
    assert_rows(keyed(frame, "webhook_id"), [
        # Tokens of no webhook: callbacks, no lead, so no answer rate and no 404s per lead.
        headline_row("(unknown)", callbacks=1, answered_404=1),
        headline_row("wh-q", callbacks=1, answered_404=1),
        # No callback: the callback rates are empty, 404s per lead is 0 of 2.
        headline_row("wh-s", leads=2, timed_out=1, waiting=1, never=2, never_timed_out=1),
        # T2 (late) and T3 (early) were called back; T4 only named by wh-w's wrong_webhook callback.
        headline_row("wh-t", leads=4, received=1, timed_out=3, never=1, never_timed_out=1, callbacks=5, matched=1,
                     answered_404=4),
        headline_row("wh-w", leads=3, received=1, waiting=2, never=1, callbacks=3, matched=1, interim=1,
                     answered_404=1),
        headline_row("(all)", leads=9, received=2, timed_out=4, waiting=3, never=4, never_timed_out=2, callbacks=10,
                     matched=2, interim=1, answered_404=7),
    ])


def test_headline_per_advertiser_charges_callbacks_to_the_token_webhooks_advertiser(headline_audit: Audit) -> None:
    frame = lead_headline(headline_audit, by="advertiser_id")
    assert frame.columns[0] == "advertiser_id"
    assert_rows(keyed(frame, "advertiser_id"), [
        headline_row("(unknown)", callbacks=1, answered_404=1),
        headline_row("S", leads=2, timed_out=1, waiting=1, never=2, never_timed_out=1),
        # wh-t and wh-q: wh-q's not_found is T's 404 too.
        headline_row("T", leads=4, received=1, timed_out=3, never=1, never_timed_out=1, callbacks=6, matched=1,
                     answered_404=5),
        headline_row("W", leads=3, received=1, waiting=2, never=1, callbacks=3, matched=1, interim=1,
                     answered_404=1),
        headline_row("(all)", leads=9, received=2, timed_out=4, waiting=3, never=4, never_timed_out=2, callbacks=10,
                     matched=2, interim=1, answered_404=7),
    ])


def test_headline_counts_a_callback_after_the_observation_end_as_none(headline_audit: Audit) -> None:
    # At 20 s, T2's late callback (40 s) has not come: T2 was never called back. T1..T4 are timed out by then
    # (deadline 30 s); S1 is not (60 s) and S2 not yet created.
    folder = headline_audit.source
    with replayed_dataset(folder, observation_end=moment(20)) as early:
        row = lead_headline(early).set_index("webhook_id").loc["wh-t"]
    assert (row.leads, row.received, row.timed_out, row.waiting) == (4, 1, 0, 3)
    assert (row.never_called_back, row.never_called_back_timed_out) == (2, 0)


def test_headline_rejects_an_unknown_grouping(headline_audit: Audit) -> None:
    with pytest.raises(ValueError, match=r"^by must be 'webhook_id' or 'advertiser_id', not 'webhook'$"):
        lead_headline(headline_audit, by="webhook")  # type: ignore[arg-type]


@pytest.mark.parametrize("by", ["webhook_id", "advertiser_id"])
def test_headline_on_sample_equals_the_replays_lead_states_and_outcomes(sample: Audit, by: str) -> None:
    """Every figure re-derived in pandas from the replay's per-lead and per-callback rows."""
    leads = sample.con.execute(
        "SELECT l.webhook_id, d.advertiser_id, l.state, l.callbacks FROM lead_outcomes l "
        "JOIN dispatches d ON d.row = l.row").df()
    calls = sample.con.execute(
        # Charged to the webhook its token names, live or not (docs/analysis.md).
        "SELECT coalesce(c.webhook_id, c.token_webhook_id, '(unknown)') AS webhook_id, c.outcome, c.status_code "
        "FROM callback_outcomes c WHERE c.outcome <> 'refused'").df()
    # A webhook's callbacks are its latest version's advertiser's (the dict keeps the last version read).
    owner = dict(sample.con.execute("SELECT webhook_id, advertiser_id FROM webhook_versions "
                                    "ORDER BY webhook_id, active_from_us NULLS FIRST").fetchall())
    calls["advertiser_id"] = calls.webhook_id.map(owner).fillna("(unknown)")
    frame = lead_headline(sample, by=by).set_index(by)  # type: ignore[arg-type]
    keys = sorted(set(leads[by]) | set(calls[by]))
    assert list(frame.index) == [*keys, "(all)"]
    for key in [*keys, "(all)"]:
        own = leads if key == "(all)" else leads[leads[by] == key]
        charged = calls if key == "(all)" else calls[calls[by] == key]
        silent = own[own.callbacks == 0]
        row = frame.loc[key]
        n, answered, n_calls = len(own), int((own.state == "received").sum()), len(charged)
        n_404 = int((charged.status_code == 404).sum())
        assert [int(row[c]) for c in ("leads", "received", "timed_out", "waiting", "never_called_back",
                                      "never_called_back_timed_out", "callbacks", "matched", "interim",
                                      "answered_404")] == [
            n, answered, int((own.state == "timed_out").sum()), int((own.state == "waiting").sum()), len(silent),
            int((silent.state == "timed_out").sum()), n_calls, int((charged.outcome == "matched").sum()),
            int((charged.outcome == "interim").sum()), n_404], key
        # A group without leads ((unknown)) has no per-lead rates.
        assert close(row.answer_rate, Fraction(answered, n)) if n else pd.isna(row.answer_rate), key
        assert close(row["404s_per_lead"], Fraction(n_404, n)) if n else pd.isna(row["404s_per_lead"]), key
    # The issue's figures, by leads: wh-retry answered 277 of its 363 leads, wh-slowbank 289 of 544.
    if by == "webhook_id":
        assert f"{frame.loc['wh-retry', 'answer_rate']:.0%}" == "76%"
        assert f"{frame.loc['wh-slowbank', 'answer_rate']:.0%}" == "53%"


def test_headline_invariants_on_generated(generated_replays: dict[int, Audit]) -> None:
    for audit in generated_replays.values():
        frame = lead_headline(audit)
        assert (frame.received + frame.timed_out + frame.waiting == frame.leads).all()
        # A received lead had its matched callback: never called back is a subset of timed out + waiting.
        assert (frame.never_called_back <= frame.timed_out + frame.waiting).all()
        assert (frame.never_called_back_timed_out <= frame.timed_out).all()
        assert (frame.matched + frame.interim + frame.answered_404 == frame.callbacks).all()
        callback_rates = rates(audit).set_index("webhook_id")
        same = frame.set_index("webhook_id")[["callbacks", "matched", "interim", "answered_404"]]
        pd.testing.assert_frame_equal(same, callback_rates[same.columns])


# =========================================================================== Kaplan–Meier
#
# wh-k: the observation end is set to T0 + 100 s. Times to first callback (event) or to the end (censored):
#   K1 event 10 · K3 censored 10 (created at 90) · K2, K5 events 20 · K4 censored 20 (created at 80)
#   K6 event 40 · K7 censored 100.
# wh-all: every lead answered (1, 2, 2): S reaches 0 at t = 2.
# wh-none: no lead answered (one had only an early callback, which is no event).
# wh-late-first: the first callback is late (after the 5 s timeout) and still counts as the first callback (W4).

KM_END = moment(100)
KM_WEBHOOKS = [
    webhook("wh-k", "K", wait=True),
    webhook("wh-all", "K", wait=True),
    webhook("wh-none", "K", wait=True),
    webhook("wh-late-first", "K", wait=True, timeout_s=5),
]
KM_LEADS = [
    lead("K1", "CK1", "wh-k", "K"), lead("K2", "CK2", "wh-k", "K"), lead("K3", "CK3", "wh-k", "K", at=90),
    lead("K4", "CK4", "wh-k", "K", at=80), lead("K5", "CK5", "wh-k", "K"), lead("K6", "CK6", "wh-k", "K"),
    lead("K7", "CK7", "wh-k", "K"),
    lead("A1", "CA1", "wh-all", "K"), lead("A2", "CA2", "wh-all", "K"), lead("A3", "CA3", "wh-all", "K"),
    lead("N1", "CN1", "wh-none", "K", at=50), lead("N2", "CN2", "wh-none", "K"),
    lead("F1", "CF1", "wh-late-first", "K"),
]
KM_CALLBACKS = [
    call("k1", "wh-k", "pcid=CK1", at=10), call("k2", "wh-k", "pcid=CK2", at=20),
    call("k5", "wh-k", "pcid=CK5", at=20), call("k5b", "wh-k", "pcid=CK5", at=30),  # a duplicate: no 2nd event
    call("k6", "wh-k", "pcid=CK6", at=40),
    call("k8", "wh-k", "pcid=CK1", at=150),  # after the observation end: does not count
    call("a1", "wh-all", "pcid=CA1", at=1), call("a2", "wh-all", "pcid=CA2", at=2),
    call("a3", "wh-all", "pcid=CA3", at=2),
    call("n1", "wh-none", "pcid=CN1", at=45),  # early: before N1 was created at 50
    call("f1", "wh-late-first", "pcid=CF1", at=7),
]


def exponential_greenwood(survival: float, greenwood: float) -> tuple[float, float]:
    """(ci_low, ci_high) of ``captured = 1 − S`` by the formula in survival.py's docstring, computed here."""
    v = math.log(survival)
    a = math.exp(-math.exp(math.log(-v) + Z_95 * math.sqrt(greenwood) / v))
    b = math.exp(-math.exp(math.log(-v) - Z_95 * math.sqrt(greenwood) / v))
    return 1 - max(a, b), 1 - min(a, b)


@pytest.fixture(scope="module")
def km_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "km", KM_WEBHOOKS, KM_LEADS, KM_CALLBACKS, observation_end=KM_END)


def test_km_curve_columns(km_audit: Audit) -> None:
    assert tuple(capture_curve(km_audit).columns) == CURVE_COLUMNS


def test_km_ties_between_events_and_censoring_at_the_same_t(km_audit: Audit) -> None:
    curve = capture_curve(km_audit)
    rows = records(curve[curve.webhook_id == "wh-k"])
    s10 = Fraction(6, 7)                 # 7 at risk at 10 (the lead censored at 10 is still at risk), 1 event
    s20 = s10 * Fraction(3, 5)           # 5 at risk (K1, K3 left at 10), 2 events
    s40 = s20 * Fraction(1, 2)           # 2 at risk (K6, K7), 1 event
    g10 = Fraction(1, 7 * 6)
    g20 = g10 + Fraction(2, 5 * 3)
    g40 = g20 + Fraction(1, 2 * 1)
    expected = []
    for t, at_risk, events, s, g in [(10.0, 7, 1, s10, g10), (20.0, 5, 2, s20, g20), (40.0, 2, 1, s40, g40)]:
        low, high = exponential_greenwood(float(s), float(g))
        expected.append({"t_s": t, "at_risk": at_risk, "events": events, "captured": 1 - s,
                         "ci_low": low, "ci_high": high})
    assert_rows(rows, expected)


def test_km_every_lead_answered_reaches_one_and_band_is_that_point(km_audit: Audit) -> None:
    curve = capture_curve(km_audit)
    rows = records(curve[curve.webhook_id == "wh-all"])
    low, high = exponential_greenwood(2 / 3, 1 / (3 * 2))
    assert_rows(rows, [
        {"t_s": 1.0, "at_risk": 3, "events": 1, "captured": Fraction(1, 3), "ci_low": low, "ci_high": high},
        {"t_s": 2.0, "at_risk": 2, "events": 2, "captured": 1.0, "ci_low": 1.0, "ci_high": 1.0},
    ])


def test_km_no_lead_answered_has_no_curve_rows(km_audit: Audit) -> None:
    curve = capture_curve(km_audit)
    assert set(curve.webhook_id) == {"wh-k", "wh-all", "wh-late-first"}


def test_km_late_first_callback_is_an_event_at_its_time(km_audit: Audit) -> None:
    curve = capture_curve(km_audit)
    assert_rows(records(curve[curve.webhook_id == "wh-late-first"]),
                [{"t_s": 7.0, "at_risk": 1, "events": 1, "captured": 1.0, "ci_low": 1.0, "ci_high": 1.0}])


def test_wait_summary_counts_quantiles_and_observed_percentiles(km_audit: Audit) -> None:
    rows = records(wait_summary(km_audit))
    answered_k = np.array([10.0, 20.0, 20.0, 40.0])
    answered_all = np.array([1.0, 2.0, 2.0])
    assert_rows(rows, [
        {"webhook_id": "wh-all", "leads": 3, "answered": 3, "censored": 0, "captured_by_end": 1.0,
         "km_p50_s": 2.0, "km_p90_s": 2.0,  # captured 1/3 at 1, 1 at 2
         **{f"observed_p{q}_s": float(np.percentile(answered_all, q, method="linear")) for q in (50, 90, 99)}},
        # captured 1/7 at 10, 17/35 at 20, 26/35 ≈ 0.743 at 40: reaches 0.5 at 40, never 0.9.
        {"webhook_id": "wh-k", "leads": 7, "answered": 4, "censored": 3, "captured_by_end": Fraction(26, 35),
         "km_p50_s": 40.0, "km_p90_s": None,
         **{f"observed_p{q}_s": float(np.percentile(answered_k, q, method="linear")) for q in (50, 90, 99)}},
        {"webhook_id": "wh-late-first", "leads": 1, "answered": 1, "censored": 0, "captured_by_end": 1.0,
         "km_p50_s": 7.0, "km_p90_s": 7.0, "observed_p50_s": 7.0},
        {"webhook_id": "wh-none", "leads": 2, "answered": 0, "censored": 2, "captured_by_end": 0.0,
         "km_p50_s": None, "km_p90_s": None, "observed_p50_s": None, "observed_p90_s": None,
         "observed_p99_s": None},
    ])


def exact_km_quantile(durations: np.ndarray, events: np.ndarray, share: Fraction) -> float | None:
    """The first event time where captured = 1 − Π(1 − d/n) reaches ``share``, in exact rationals."""
    survival = Fraction(1)
    frame = pd.DataFrame({"t": durations, "e": events.astype(int)})
    grouped = frame.groupby("t").agg(events=("e", "sum"), leaving=("e", "size")).sort_index()
    at_risk = len(frame)
    for t, row in grouped.iterrows():
        if row.events:
            survival *= 1 - Fraction(int(row.events), at_risk)
            if 1 - survival >= share:
                return float(t)  # type: ignore[arg-type]
        at_risk -= int(row.leaving)
    return None


def test_wait_summary_km_p50_when_captured_is_exactly_one_half(dataset: MakeDataset,
                                                               con: duckdb.DuckDBPyConnection) -> None:
    leads = [lead(f"M{i}", f"CM{i}", "wh-m", "M") for i in range(1, 5)]
    calls = [call(f"m{i}", "wh-m", f"pcid=CM{i}", at=i) for i in range(1, 5)]
    audit = replayed(con, dataset([webhook("wh-m", "M", wait=True)], leads, calls))
    row = records(wait_summary(audit))[0]
    assert (row["km_p50_s"], row["km_p90_s"]) == (2.0, 4.0)


def _us(moment: Any) -> int:
    return int(pd.Timestamp(moment).value // 1000)


def durations(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The oracle's input, built here in Python from the replayed callbacks (not by survival.py's SQL):
    per lead created by the observation end, the time to its first callback resolved to it at or after
    its creation and by the end (an event, W4), else to the end (censored)."""
    (end,) = con.execute("SELECT max(observation_end) FROM lead_outcomes").fetchone() or (None,)
    end_us = _us(end)
    created = {lead_id: (webhook_id, _us(at)) for lead_id, webhook_id, at
               in con.execute("SELECT lead_id, webhook_id, created_at FROM dispatches").fetchall()}
    first: dict[str, int] = {}
    for lead_id, outcome, received_at in con.execute(
            "SELECT lead_id, outcome, received_at FROM callback_outcomes").fetchall():
        if lead_id is None or outcome == "wrong_webhook":  # (that lead is another webhook's, not resolved)
            continue
        received = _us(received_at)
        if created[lead_id][1] <= received <= end_us:
            first[lead_id] = min(received, first.get(lead_id, received))
    rows = [(webhook_id, (first.get(lead_id, end_us) - at) / 1e6, lead_id in first)
            for lead_id, (webhook_id, at) in created.items() if at <= end_us]
    return pd.DataFrame(rows, columns=["webhook_id", "t", "event"])


def assert_matches_lifelines(audit: Audit, data: pd.DataFrame | None = None, curve: pd.DataFrame | None = None) -> None:
    """``curve`` (default: capture_curve) against lifelines fed ``data`` (webhook_id, t, event), by default
    ``durations(audit.con)``."""
    curve = capture_curve(audit) if curve is None else curve
    data = durations(audit.con) if data is None else data
    assert set(curve.webhook_id) == set(data[data.event].webhook_id)
    for webhook_id, group in data.groupby("webhook_id"):
        fitter = KaplanMeierFitter().fit(group.t.to_numpy(), group.event.to_numpy())
        table = fitter.event_table[fitter.event_table.observed > 0]
        mine = curve[curve.webhook_id == webhook_id].set_index("t_s")
        assert mine.index.tolist() == table.index.tolist(), webhook_id
        assert mine.at_risk.astype(int).tolist() == table.at_risk.astype(int).tolist(), webhook_id
        assert mine.events.astype(int).tolist() == table.observed.astype(int).tolist(), webhook_id
        survival = fitter.survival_function_.iloc[:, 0].loc[mine.index].to_numpy()
        band = fitter.confidence_interval_.loc[mine.index]
        np.testing.assert_allclose(mine.captured.to_numpy(), 1 - survival, rtol=1e-9, atol=0)
        # Where S reaches 0 too: lifelines' band is [0, 0] in S, [1, 1] in captured.
        np.testing.assert_allclose(mine.ci_low.to_numpy(), 1 - band.iloc[:, 1].to_numpy(), rtol=1e-9, atol=0)
        np.testing.assert_allclose(mine.ci_high.to_numpy(), 1 - band.iloc[:, 0].to_numpy(), rtol=1e-9, atol=0)


def assert_quantiles_exact(audit: Audit, data: pd.DataFrame | None = None) -> None:
    summary = wait_summary(audit).set_index("webhook_id")
    data = durations(audit.con) if data is None else data
    for webhook_id, group in data.groupby("webhook_id"):
        t, e = group.t.to_numpy(), group.event.to_numpy()
        row = summary.loc[webhook_id]
        for column, share in (("km_p50_s", Fraction(1, 2)), ("km_p90_s", Fraction(9, 10))):
            expected = exact_km_quantile(t, e, share)
            assert close(None if pd.isna(row[column]) else row[column], expected), (webhook_id, column)
        answered = t[e]
        for q in (50, 90, 99):
            value = row[f"observed_p{q}_s"]
            if len(answered):
                assert math.isclose(value, np.percentile(answered, q, method="linear"), rel_tol=1e-9)
            else:
                assert pd.isna(value)
        assert (row.leads, row.answered, row.censored) == (len(t), int(e.sum()), int((~e).sum()))


def test_km_curve_equals_lifelines_on_sample(sample: Audit) -> None:
    assert_matches_lifelines(sample)


@pytest.mark.parametrize("seed", GENERATED_SEEDS, ids=[f"seed-{s}" for s in GENERATED_SEEDS])
def test_km_curve_equals_lifelines_on_generated(generated_replays: dict[int, Audit], seed: int) -> None:
    assert_matches_lifelines(generated_replays[seed])


def test_km_curve_equals_lifelines_with_an_earlier_observation_end() -> None:
    with replayed(connect(), SAMPLE, observation_end=datetime(2026, 11, 5, 12, tzinfo=UTC)) as audit:
        assert_matches_lifelines(audit)


def test_wait_summary_km_quantiles_exact_on_sample(sample: Audit) -> None:
    assert_quantiles_exact(sample)


def test_wait_summary_counts_and_observed_percentiles_on_sample(
        sample: Audit) -> None:
    summary = wait_summary(sample).set_index("webhook_id")
    final = capture_curve(sample).groupby("webhook_id").captured.max()
    data = durations(sample.con)
    for webhook_id, group in data.groupby("webhook_id"):
        answered = group.t[group.event].to_numpy()
        row = summary.loc[webhook_id]
        assert (row.leads, row.answered, row.censored) == (len(group), len(answered), len(group) - len(answered))
        for q in (50, 90, 99):
            assert math.isclose(row[f"observed_p{q}_s"], np.percentile(answered, q, method="linear"),
                                rel_tol=1e-9)
        assert row.captured_by_end == final[webhook_id]


TIED_END_S = 45


def tied_dataset(folder: Path, seed: int) -> tuple[Path, pd.DataFrame]:
    """Random leads and callbacks on whole seconds, so first-callback times tie with each other and with
    censoring times (the observation end is ``TIED_END_S``): the folder, and the durations planted in it
    (webhook_id, t, event), worked out here from the draws. Some leads are created after the end, some
    callbacks are early, duplicates, late (wh-t2 has a 10 s timeout) or after the end: none is an event."""
    rng = np.random.default_rng(seed)
    n = 80
    webhook_ids = rng.choice(["wh-t1", "wh-t2"], n)
    created = rng.integers(0, 50, n)
    answered = rng.random(n) < 0.6
    delay = rng.integers(0, 31, n)
    early = rng.random(n) < 0.15
    again = rng.integers(0, 6, n)
    leads, calls, planted = [], [], []
    for i in range(n):
        leads.append(lead(f"T{i}", f"CT{i}", str(webhook_ids[i]), "T", at=float(created[i])))
        if early[i]:
            calls.append(call(f"t{i}-early", str(webhook_ids[i]), f"pcid=CT{i}", at=float(created[i] - 1)))
        if answered[i]:
            calls.append(call(f"t{i}", str(webhook_ids[i]), f"pcid=CT{i}", at=float(created[i] + delay[i])))
            calls.append(call(f"t{i}-again", str(webhook_ids[i]), f"pcid=CT{i}",
                              at=float(created[i] + delay[i] + again[i])))
        if created[i] <= TIED_END_S:
            event = bool(answered[i]) and created[i] + delay[i] <= TIED_END_S
            planted.append((str(webhook_ids[i]), float(delay[i] if event else TIED_END_S - created[i]), event))
    webhooks = [webhook("wh-t1", "T", wait=True), webhook("wh-t2", "T", wait=True, timeout_s=10)]
    return (write_dataset(folder, webhooks, leads, calls),
            pd.DataFrame(planted, columns=["webhook_id", "t", "event"]))


@pytest.mark.parametrize("seed", [1, 2])
def test_km_equals_lifelines_with_tied_event_and_censoring_times(tmp_path: Path, seed: int) -> None:
    folder, planted = tied_dataset(tmp_path / "tied", seed)
    ties = planted.groupby(["webhook_id", "t"]).event.agg(["any", "all"])
    assert (ties["any"] & ~ties["all"]).sum() >= 5  # times at which one lead is answered and another censored
    con = connect()
    try:
        audit = replayed(con, folder, observation_end=moment(TIED_END_S))
        by_lead = ["webhook_id", "t", "event"]
        assert durations(con).sort_values(by_lead, ignore_index=True).equals(
            planted.sort_values(by_lead, ignore_index=True))
        assert_matches_lifelines(audit, planted)
        assert_quantiles_exact(audit, planted)
    finally:
        con.close()


# =========================================================================== timeout what-ifs


def assert_whatifs_equal_separate_replays(folder: Path, candidates: tuple[float, ...],
                                          observation_end: datetime | None = None,
                                          replayed_case: Audit | None = None) -> None:
    """``timeout_whatifs`` on ``replayed_case`` (default: a replay of ``folder``) vs a replay per candidate."""
    audit = replayed_case or replayed_dataset(folder, observation_end=observation_end)
    frame = timeout_whatifs(audit, candidates)
    waiting = sorted({v.webhook_id for v in audit.webhooks.versions if v.wait})
    assert sorted(frame.webhook_id.unique()) == waiting
    assert sorted(frame.timeout_s.unique()) == sorted(candidates)
    # A fresh connection, loaded once, replayed again for every candidate (replay replaces its tables).
    fresh = connect()
    loaded = load_dataset(fresh, folder)
    for timeout in candidates:
        replay(fresh, loaded.webhooks, timeouts={None: timeout}, observation_end=observation_end)
        callbacks = fresh.execute("""
            SELECT webhook_id, count(*) FILTER (outcome = 'matched') AS matched,
                   count(*) FILTER (outcome = 'late') AS late
            FROM callback_outcomes WHERE webhook_id IS NOT NULL GROUP BY ALL""").df().set_index("webhook_id")
        leads = fresh.execute("""
            SELECT webhook_id, count(*) AS leads, count(*) FILTER (state = 'timed_out') AS timed_out,
                   count(*) FILTER (state = 'received') AS received
            FROM lead_outcomes GROUP BY ALL""").df().set_index("webhook_id")
        for row in frame[frame.timeout_s == timeout].itertuples():
            expected = (callbacks.matched.get(row.webhook_id, 0), callbacks.late.get(row.webhook_id, 0),
                        leads.timed_out[row.webhook_id], leads.received[row.webhook_id], leads.leads[row.webhook_id])
            assert (row.matched, row.late, row.timed_out, row.received, row.leads) == expected, \
                (row.webhook_id, timeout)
    fresh.close()
    if replayed_case is None:
        audit.close()


def test_whatifs_equal_separate_replays_on_sample() -> None:
    assert_whatifs_equal_separate_replays(SAMPLE, DEFAULT_CANDIDATES)


def test_whatifs_equal_separate_replays_on_sample_with_an_earlier_observation_end() -> None:
    assert_whatifs_equal_separate_replays(SAMPLE, (20.0, 600.0),
                                          observation_end=datetime(2026, 11, 5, 12, 15, tzinfo=UTC))


@pytest.mark.parametrize("seed", GENERATED_SEEDS, ids=[f"seed-{s}" for s in GENERATED_SEEDS])
def test_whatifs_equal_separate_replays_on_generated(generated: dict[int, Path],
                                                     generated_replays: dict[int, Audit], seed: int) -> None:
    assert_whatifs_equal_separate_replays(generated[seed], (5.0, 12.5, 60.0, 3600.0),
                                          replayed_case=generated_replays[seed])


# wh-t waits 30 s, status in json.status ("pending" is interim); observation end T0 + 100 s.
#   TA answered at 10 · TB at 50 · TC never · TD created at 90, never (10 s waited by the end)
#   TE interim at 5, final at 20 · TF early at −1, then at 3.
# Untimed waits (to the callback that would finish the lead): 10, 50, ∞, ∞, 20, 3.
# First callbacks (KM): TF 3, TE 5 (the interim), TA 10 (TD censored at 10), TB 50, TC censored at 100.
#   S: 5/6 at 3, 4/6 at 5, 3/6 at 10, 1/4 at 50 → captured 1/6, 1/3, 1/2, 3/4.
TIMEOUT_END = moment(100)
TIMEOUT_WEBHOOKS = [
    webhook("wh-t", "T", wait=True, timeout_s=30, status_location="json.status", interim_statuses=["pending"]),
]
TIMEOUT_LEADS = [
    lead("TA", "CA", "wh-t", "T"), lead("TB", "CB", "wh-t", "T"), lead("TC", "CC", "wh-t", "T"),
    lead("TD", "CD", "wh-t", "T", at=90), lead("TE", "CE", "wh-t", "T"), lead("TF", "CF", "wh-t", "T"),
]
TIMEOUT_CALLBACKS = [
    call("ta", "wh-t", "pcid=CA", at=10), call("tb", "wh-t", "pcid=CB", at=50),
    call("te1", "wh-t", at=5, body='{"pcid": "CE", "status": "pending"}'),
    call("te2", "wh-t", at=20, body='{"pcid": "CE", "status": "approved"}'),
    call("tf1", "wh-t", "pcid=CF", at=-1), call("tf2", "wh-t", "pcid=CF", at=3),
]


@pytest.fixture(scope="module")
def timeout_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "timeouts", TIMEOUT_WEBHOOKS, TIMEOUT_LEADS, TIMEOUT_CALLBACKS,
                           observation_end=TIMEOUT_END)


def test_whatifs_hand_built_figures(timeout_case: Audit) -> None:
    frame = timeout_whatifs(timeout_case, [300, 5, 60, 30, 30])
    assert "recommended" not in frame.columns  # the advice is timeout_advice's, from the finishing waits
    assert frame.timeout_s.tolist() == [5.0, 30.0, 60.0, 300.0]  # sorted, duplicates dropped
    # ever answered (by the end, no timeout): TA, TB, TE, TF.
    assert_rows(records(frame), [
        {"webhook_id": "wh-t", "timeout_s": 5.0, "matched": 1, "late": 3, "leads": 6, "received": 1,
         "timed_out": 5, "ever_answered": 4, "capture_rate": Fraction(1, 4),
         "mean_block_s": Fraction(5 + 5 + 5 + 5 + 5 + 3, 6), "km_first_callback": Fraction(1, 3),
         "current_timeout_s": 30.0},
        # TD was created at 90: at the end (100) it is inside a 30 s window, so it is not timed out.
        {"webhook_id": "wh-t", "timeout_s": 30.0, "matched": 3, "late": 1, "leads": 6, "received": 3,
         "timed_out": 2, "ever_answered": 4, "capture_rate": Fraction(3, 4),
         "mean_block_s": Fraction(10 + 30 + 30 + 10 + 20 + 3, 6), "km_first_callback": Fraction(1, 2),
         "current_timeout_s": 30.0},
        {"webhook_id": "wh-t", "timeout_s": 60.0, "matched": 4, "late": 0, "leads": 6, "received": 4,
         "timed_out": 1, "ever_answered": 4, "capture_rate": 1.0,
         "mean_block_s": Fraction(10 + 50 + 60 + 10 + 20 + 3, 6), "km_first_callback": Fraction(3, 4),
         "current_timeout_s": 30.0},
        {"webhook_id": "wh-t", "timeout_s": 300.0, "matched": 4, "late": 0, "leads": 6, "received": 4,
         "timed_out": 0, "ever_answered": 4, "capture_rate": 1.0,
         "mean_block_s": Fraction(10 + 50 + 100 + 10 + 20 + 3, 6), "km_first_callback": Fraction(3, 4),
         "current_timeout_s": 30.0},
    ])


def test_whatifs_hand_built_equal_separate_replays(dataset: MakeDataset) -> None:
    folder = dataset(TIMEOUT_WEBHOOKS, TIMEOUT_LEADS, TIMEOUT_CALLBACKS)
    # 10, 20 and 50 s fall exactly on callbacks: the deadline itself is in time (M5).
    assert_whatifs_equal_separate_replays(folder, (5.0, 10.0, 20.0, 50.0), observation_end=TIMEOUT_END)


def test_whatifs_capture_rate_with_huge_timeout_is_one_and_received_equals_ever_answered(
        sample: Audit) -> None:
    frame = timeout_whatifs(sample, [1e8])
    assert (frame.received == frame.ever_answered).all()
    assert (frame.capture_rate == 1.0).all()
    assert (frame.late == 0).all()


def test_whatifs_km_first_callback_is_zero_before_the_first_callback(timeout_case: Audit) -> None:
    frame = timeout_whatifs(timeout_case, [1, 2])  # nothing answered before 3 s
    assert frame.km_first_callback.tolist() == [0.0, 0.0]


def test_whatifs_only_webhooks_that_wait_and_current_timeout(dataset: MakeDataset,
                                                              con: duckdb.DuckDBPyConnection) -> None:
    hooks = [webhook("wh-x", "X", wait=True, timeout_s=12.5), webhook("wh-y", "Y", wait=True), webhook("wh-z", "Z")]
    leads = [lead("X1", "CX1", "wh-x", "X"), lead("Y1", "CY1", "wh-y", "Y"), lead("Z1", "CZ1", "wh-z", "Z")]
    calls = [call("x", "wh-x", "pcid=CX1", at=2), call("y", "wh-y", "pcid=CY1", at=4),
             call("z", "wh-z", "pcid=CZ1", at=6)]
    audit = replayed(con, dataset(hooks, leads, calls))
    frame = timeout_whatifs(audit, [10])
    assert records(frame[["webhook_id", "current_timeout_s", "matched", "received"]]) == [
        {"webhook_id": "wh-x", "current_timeout_s": 12.5, "matched": 1, "received": 1},
        {"webhook_id": "wh-y", "current_timeout_s": None, "matched": 1, "received": 1},
    ]


def test_whatifs_current_timeout_is_the_latest_versions(dataset: MakeDataset, con: duckdb.DuckDBPyConnection) -> None:
    hooks = [webhook("wh-v", "V", wait=True, timeout_s=90, active_from=ts(50)),
             webhook("wh-v", "V", wait=True, timeout_s=30, active_to=ts(50))]
    leads = [lead("V1", "CV1", "wh-v", "V"), lead("V2", "CV2", "wh-v", "V", at=60)]
    audit = replayed(con, dataset(hooks, leads, [call("v", "wh-v", "pcid=CV2", at=70)]))
    assert timeout_whatifs(audit, [10]).current_timeout_s.tolist() == [90.0]


def test_advice_follows_the_finishing_callback_not_the_first_interim_one(
        dataset: MakeDataset, con: duckdb.DuckDBPyConnection) -> None:
    """Every lead's first callback is an interim update at 2 s, which finishes nothing: KM time to the first
    callback is complete by 5 s, yet 5 s keeps no answer; the advice waits for the final ones at 100 s."""
    hooks = [webhook("wh-i", "I", wait=True, status_location="query.status", interim_statuses=["pending"])]
    leads = [lead(f"I{n}", f"CI{n}", "wh-i", "I") for n in range(4)]
    calls = [call(f"i{n}a", "wh-i", f"pcid=CI{n}&status=pending", at=2) for n in range(4)]
    calls += [call(f"i{n}b", "wh-i", f"pcid=CI{n}&status=approved", at=100) for n in range(4)]
    audit = replayed(con, dataset(hooks, leads, calls))
    frame = timeout_whatifs(audit, [5, 300])
    assert frame.km_first_callback.tolist() == [1.0, 1.0]
    assert frame.capture_rate.tolist() == [0.0, 1.0]
    advice = records(timeout_advice(audit, target=0.95))
    assert [(a["recommended_timeout_s"], a["recommended_capture_rate"]) for a in advice] == [(100.0, 1.0)]


@pytest.mark.parametrize(("candidates", "message"), [
    pytest.param([], "give at least one candidate timeout", id="no-candidates"),
    pytest.param([5, 0], "candidate timeouts must be positive numbers of seconds", id="zero"),
    pytest.param([-1], "candidate timeouts must be positive numbers of seconds", id="negative"),
    pytest.param([float("nan")], "candidate timeouts must be positive numbers of seconds", id="nan"),
])
def test_whatifs_reject_bad_arguments(timeout_case: Audit, candidates: list[float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        timeout_whatifs(timeout_case, candidates)
    assert str(caught.value) == message


def test_whatifs_reject_an_infinite_candidate(timeout_case: Audit) -> None:
    with pytest.raises(ValueError, match="candidate timeouts must be"):
        timeout_whatifs(timeout_case, [5, float("inf")])


def test_blocking_webhooks_flags_waiting_without_timeout_with_never_answered_leads(
        dataset: MakeDataset, con: duckdb.DuckDBPyConnection) -> None:
    hooks = [
        webhook("wh-block", "B", wait=True),                # no timeout, two leads never answered
        webhook("wh-timeout", "T", wait=True, timeout_s=5),  # never-answered leads, but a timeout
        webhook("wh-always", "A", wait=True),               # no timeout, every lead answered
        webhook("wh-nowait", "N"),                          # does not wait
    ]
    leads = [
        lead("B1", "CB1", "wh-block", "B"), lead("B2", "CB2", "wh-block", "B", at=20),
        lead("B3", "CB3", "wh-block", "B", at=40),
        lead("T1", "CT1", "wh-timeout", "T"), lead("A1", "CA1", "wh-always", "A"), lead("N1", "CN1", "wh-nowait", "N"),
    ]
    calls = [call("b1", "wh-block", "pcid=CB1", at=3), call("a1", "wh-always", "pcid=CA1", at=4)]
    audit = replayed(con, dataset(hooks, leads, calls), observation_end=moment(100))
    # B2 (created at 20) has waited longest by the end: 80 s.
    assert records(blocking_webhooks(audit)) == [
        {"webhook_id": "wh-block", "leads": 3, "never_answered": 2, "longest_block_s": 80.0},
    ]


def test_blocking_webhooks_on_sample_is_the_webhook_waiting_without_timeout(
        sample: Audit) -> None:
    frame = blocking_webhooks(sample)
    assert frame.webhook_id.tolist() == ["wh-refco"]  # the only one that waits without a timeout
    never = sample.con.execute("""SELECT count(*) FROM lead_outcomes
                           WHERE webhook_id = 'wh-refco' AND first_callback_s IS NULL""").fetchone()
    assert frame.never_answered.tolist() == [never[0]]  # type: ignore[index]


# =========================================================================== pairing
#
# wh-p (advertiser P) reads the conversion ID from json.data.ref; wh-q (Q) is another webhook; wh-h reads it from a
# header configured as header.X-Ref. wh-n is the near-miss webhook: each not_found callback there is rescued by
# exactly one transform.

PAIRING_WEBHOOKS = [
    webhook("wh-p", "P", wait=True, pairing=[{"identifier": "conversion_id", "location": "json.data.ref"}]),
    webhook("wh-q", "Q", wait=True),
    webhook("wh-h", "H", wait=True, pairing=[{"identifier": "conversion_id", "location": "header.X-Ref"}]),
    webhook("wh-n", "N", wait=True),
]
PAIRING_LEADS = [
    lead("P1", "C100", "wh-p", "P"), lead("P2", "C200", "wh-p", "P"), lead("P3", "C300", "wh-p", "P"),
    lead("P4", "C400", "wh-p", "P"), lead("P5", "C500", "wh-p", "P", external_id="E500"),
    lead("P7", "C700", "wh-p", "P"),
    lead("Q1", "Q-1", "wh-q", "Q"),
    lead("H1", "H-1", "wh-h", "H"),
    lead("N1", "C/1", "wh-n", "N"),                            # url_decode
    lead("N2", "AbC-2", "wh-n", "N"),                          # case_fold
    lead("N3", "C3", "wh-n", "N"),                             # trim
    lead("N4", "CN4", "wh-n", "N", external_id="0042X"),       # leading_zeros (not a number)
    lead("N5", "12345", "wh-n", "N"),                          # numeric
    lead("N6", "C6", "wh-n", "N"),                             # unmapped_location
]
JSON = [["Content-Type", "application/json"]]
PAIRING_CALLBACKS = [
    call("p1", "wh-p", at=1, body='{"data": {"ref": "C100"}}', headers=JSON),          # matched (pairing rule)
    call("p2", "wh-p", at=2, body='{"data": {"reference": "C200"}}', headers=JSON),    # unmapped JSON key
    call("p3", "wh-p", at=3, headers=[["X-Conversion", "C300"]]),                     # in a header
    call("p4", "wh-p", "pcid=&pcid=C400", at=4),                                     # repeated query param
    call("p5", "wh-p", "pcid=Q-1", at=5),                                            # wrong webhook
    call("p6", "wh-p", "external_id=E500&advertiser_id=P", at=6),                    # matched by external ID
    call("p7", "wh-p", "external_id=E600&advertiser_id=Q", at=7),                    # not_found; Q is wh-q's
    call("p8", "wh-p", at=8, body='{"items": [{"id": "C700"}]}', headers=JSON),       # unmapped array path
    call("h1", "wh-h", at=1, headers=[["x-ref", "H-1"]]),                             # matched, header any case
    call("n1", "wh-n", "pcid=C%252F1", at=1),        # decodes once to C%2F1
    call("n2", "wh-n", "pcid=abc-2", at=2),
    call("n3", "wh-n", "pcid=%20C3%20", at=3),       # " C3 "
    call("n4", "wh-n", "external_id=42X", at=4),
    call("n5", "wh-n", "pcid=12345.00", at=5),
    call("n6", "wh-n", at=6, body='{"ref": "C6"}', headers=JSON),  # no_identifiers; C6 in json.ref
]


@pytest.fixture(scope="module")
def pairing_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "pairing", PAIRING_WEBHOOKS, PAIRING_LEADS, PAIRING_CALLBACKS)


def test_pairing_outcomes_of_the_hand_built_dataset_are_as_designed(
        pairing_case: Audit) -> None:
    outcomes = dict(pairing_case.con.execute("SELECT request_id, outcome FROM callback_outcomes").fetchall())
    assert outcomes == {
        "p1": "matched", "p2": "no_identifiers", "p3": "no_identifiers", "p4": "matched", "p5": "wrong_webhook",
        "p6": "matched", "p7": "not_found", "p8": "no_identifiers", "h1": "matched",
        "n1": "not_found", "n2": "not_found", "n3": "not_found", "n4": "not_found", "n5": "not_found",
        "n6": "no_identifiers",
    }


def validation_row(location: str, identifier: str, source: str, callbacks: int, present: int = 0, here: int = 0,
                   elsewhere: int = 0) -> Row:
    return {"identifier": identifier, "location": location, "source": source, "callbacks": callbacks,
            "present": present, "resolves_here": here, "resolves_elsewhere": elsewhere,
            "precision": Fraction(here, present) if present else None}


def test_pairing_validation_rows_for_a_webhook_with_a_pairing_rule(
        pairing_case: Audit) -> None:
    frame = pairing_validation(pairing_case)
    assert list(frame.columns) == ["webhook_id", "identifier", "location", "source", "callbacks", "present",
                                   "resolves_here", "resolves_elsewhere", "precision"]
    rows = records(frame[frame.webhook_id == "wh-p"])
    # Identifiers alphabetically, then the order the replay reads their locations in.
    assert_rows(rows, [
        # p6 names wh-p's advertiser P, p7 names wh-q's advertiser Q.
        validation_row("query.advertiser_id", "advertiser_id", "standard", 8, present=2, here=1, elsewhere=1),
        validation_row("form.advertiser_id", "advertiser_id", "standard", 8),
        validation_row("json.advertiser_id", "advertiser_id", "standard", 8),
        validation_row("json.data.ref", "conversion_id", "pairing", 8, present=1, here=1),
        # p4 (the first non-empty pcid, C400) here; p5 (Q-1) names wh-q's lead.
        validation_row("query.pcid", "conversion_id", "standard", 8, present=2, here=1, elsewhere=1),
        validation_row("form.pcid", "conversion_id", "standard", 8),
        validation_row("json.pcid", "conversion_id", "standard", 8),
        # E500 names P5; E600 names nobody.
        validation_row("query.external_id", "external_id", "standard", 8, present=2, here=1),
        validation_row("form.external_id", "external_id", "standard", 8),
        validation_row("json.external_id", "external_id", "standard", 8),
    ])


def test_pairing_validation_configured_header_location_is_read_ignoring_case(
        pairing_case: Audit) -> None:
    frame = pairing_validation(pairing_case)
    rows = records(frame[(frame.webhook_id == "wh-h") & (frame.identifier == "conversion_id")])
    assert_rows(rows, [
        validation_row("header.x-ref", "conversion_id", "pairing", 1, present=1, here=1),
        validation_row("query.pcid", "conversion_id", "standard", 1),
        validation_row("form.pcid", "conversion_id", "standard", 1),
        validation_row("json.pcid", "conversion_id", "standard", 1),
    ])


def test_discover_locations_finds_unmapped_keys_headers_and_array_paths(
        pairing_case: Audit) -> None:
    frame = discover_locations(pairing_case)
    assert list(frame.columns) == ["webhook_id", "identifier", "location", "support", "present", "precision",
                                   "configured_as", "unmapped"]
    rows = records(frame[frame.webhook_id == "wh-p"])
    assert rows == [
        {"webhook_id": "wh-p", "identifier": "conversion_id", "location": "header.x-conversion", "support": 1,
         "present": 1, "precision": 1.0, "configured_as": "unmapped", "unmapped": True},
        {"webhook_id": "wh-p", "identifier": "conversion_id", "location": "json.data.ref", "support": 1,
         "present": 1, "precision": 1.0, "configured_as": "pairing", "unmapped": False},
        {"webhook_id": "wh-p", "identifier": "conversion_id", "location": "json.data.reference", "support": 1,
         "present": 1, "precision": 1.0, "configured_as": "unmapped", "unmapped": True},
        {"webhook_id": "wh-p", "identifier": "conversion_id", "location": "json.items.0.id", "support": 1,
         "present": 1, "precision": 1.0, "configured_as": "unmapped", "unmapped": True},
        {"webhook_id": "wh-p", "identifier": "conversion_id", "location": "query.pcid", "support": 1,
         "present": 2, "precision": 0.5, "configured_as": "standard", "unmapped": False},
        {"webhook_id": "wh-p", "identifier": "external_id", "location": "query.external_id", "support": 1,
         "present": 2, "precision": 0.5, "configured_as": "standard", "unmapped": False},
    ]


def test_discover_locations_min_support(pairing_case: Audit) -> None:
    assert discover_locations(pairing_case, min_support=2).empty


NEAR_MISS_ORDER = ["trim", "case_fold", "url_decode", "leading_zeros", "numeric", "unmapped_location"]


def test_near_misses_each_transform_rescues_exactly_its_own_case(
        pairing_case: Audit) -> None:
    frame = near_misses(pairing_case)
    assert list(frame.columns) == ["webhook_id", "transform", "not_found", "no_identifiers", "rescued",
                                   "rescued_share"]
    rows = records(frame[frame.webhook_id == "wh-n"])
    assert [r["transform"] for r in rows] == NEAR_MISS_ORDER
    assert_rows(rows, [{"transform": t, "not_found": 5, "no_identifiers": 1, "rescued": 1,
                        "rescued_share": Fraction(1, 6)} for t in NEAR_MISS_ORDER])


@pytest.mark.parametrize(("request_id", "transform"), [
    pytest.param("n1", "url_decode", id="double-encoded-C%252F1"),
    pytest.param("n2", "case_fold", id="lower-case-abc-2"),
    pytest.param("n3", "trim", id="padded-space-C3"),
    pytest.param("n4", "leading_zeros", id="42X-for-0042X"),
    pytest.param("n5", "numeric", id="12345.00-for-12345"),
    pytest.param("n6", "unmapped_location", id="json.ref"),
])
def test_near_misses_only_one_transform_rescues_each_case(
        dataset: MakeDataset, con: duckdb.DuckDBPyConnection, request_id: str, transform: str) -> None:
    calls = [c for c in PAIRING_CALLBACKS if c["request_id"] == request_id]
    audit = replayed(con, dataset(PAIRING_WEBHOOKS, PAIRING_LEADS, calls))
    frame = near_misses(audit)
    rescued = frame[frame.rescued > 0]
    assert rescued["transform"].tolist() == [transform]
    assert rescued["rescued"].tolist() == [1]


def test_near_misses_on_a_webhook_with_unmapped_locations(
        pairing_case: Audit) -> None:
    frame = near_misses(pairing_case)
    rows = records(frame[frame.webhook_id == "wh-p"])
    # p7 (E600) is not_found and nothing rescues it; p2, p3 and p8 carry a conversion ID where nothing reads it.
    assert_rows(rows, [{"transform": t, "not_found": 1, "no_identifiers": 3,
                        "rescued": 3 if t == "unmapped_location" else 0,
                        "rescued_share": Fraction(3 if t == "unmapped_location" else 0, 4)}
                       for t in NEAR_MISS_ORDER])
    assert set(frame.webhook_id) == {"wh-p", "wh-n"}  # only webhooks with not_found / no_identifiers


def test_near_misses_alone_read_only_the_unresolved_callbacks_values(dataset: MakeDataset) -> None:
    # The 404s' evidence pays for the unresolved callbacks' values only, not for discovery's every value,
    # and finds the same rescues as after discovery.
    folder = dataset(PAIRING_WEBHOOKS, PAIRING_LEADS, PAIRING_CALLBACKS)
    alone, after_discovery = replayed_dataset(folder), replayed_dataset(folder)
    discover_locations(after_discovery)
    tables = "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'pairing_%' ORDER BY table_name"
    assert records(near_misses(alone)) == records(near_misses(after_discovery))
    assert alone.con.execute(tables).fetchall() == [("pairing_unresolved_values",)]
    assert after_discovery.con.execute(tables).fetchall() == [("pairing_request_values",)]
    unresolved = alone.con.execute("SELECT DISTINCT o.request_id FROM pairing_unresolved_values "
                                   "JOIN callback_outcomes o USING (seq) ORDER BY 1").fetchall()
    assert unresolved == [("n1",), ("n2",), ("n3",), ("n4",), ("n5",), ("n6",), ("p2",), ("p3",), ("p7",), ("p8",)]


def test_near_misses_external_id_with_a_wrong_advertiser_is_not_rescued(dataset: MakeDataset,
                                                                        con: duckdb.DuckDBPyConnection) -> None:
    hooks = [webhook("wh-e", "E", wait=True)]
    leads = [lead("E1", "CE1", "wh-e", "E", external_id="X9")]
    audit = replayed(con, dataset(hooks, leads, [call("e", "wh-e", "external_id=X9&advertiser_id=OTHER", at=5)]))
    assert con.execute("SELECT outcome FROM callback_outcomes").fetchall() == [("not_found",)]
    frame = near_misses(audit)
    assert frame["rescued"].tolist() == [0] * len(NEAR_MISS_ORDER)


# =========================================================================== timeline
#
# Lead TL1 on wh-tl (timeout 30 s, interim "pending"): an early callback at −2, created at 0, interim at 3,
# matched at 5, duplicate at 8, deadline at 30; a callback naming it sent to wh-other at 12 (wrong_webhook).
# TL2 (wh-tl) gets an interim at its deadline (30, in time: M5.3) and a late callback at 40; TL3 on wh-odd
# (timeout 7.654321 s, created at 1.000001) has none: both time out. TL4 on wh-other (no timeout) is answered
# at 3725.5, which sets the observation end.

TIMELINE_WEBHOOKS = [
    webhook("wh-tl", "T", wait=True, timeout_s=30, status_location="query.status", interim_statuses=["pending"]),
    webhook("wh-other", "O", wait=True),
    webhook("wh-odd", "D", wait=True, timeout_s=7.654321),
]
TIMELINE_LEADS = [
    lead("TL1", "CT1", "wh-tl", "T"),
    lead("TL2", "CT2", "wh-tl", "T"),
    lead("TL3", "CT3", "wh-odd", "D", at=1.000001),
    lead("TL4", "CT4", "wh-other", "O"),
    lead("DUP", "CD1", "wh-tl", "T"), lead("DUP", "CD2", "wh-other", "O"),  # one lead sent to two webhooks
]
TIMELINE_CALLBACKS = [
    call("e", "wh-tl", "pcid=CT1", at=-2, recorded=404),
    call("i", "wh-tl", "pcid=CT1&status=pending", at=3, recorded=200),
    call("m", "wh-tl", "pcid=CT1&status=approved", at=5, recorded=200),
    call("d", "wh-tl", "pcid=CT1", at=8, recorded=200),
    call("w", "wh-other", "pcid=CT1", at=12),
    call("j", "wh-tl", "pcid=CT2&status=pending", at=30),
    call("x", "wh-tl", "pcid=CT2", at=40),
    call("h", "wh-other", "pcid=CT4", at=3725.5),
]


@pytest.fixture(scope="module")
def timeline_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "timeline", TIMELINE_WEBHOOKS, TIMELINE_LEADS, TIMELINE_CALLBACKS)


def test_timeline_events_in_order(timeline_audit: Audit) -> None:
    frame = lead_timeline(timeline_audit, "TL1")
    assert list(frame.columns) == ["time", "since_created_s", "event", "outcome", "status_code", "recorded_status",
                                   "request_id", "method", "url", "headers", "body", "detail"]
    assert frame.since_created_s.tolist() == [-2.0, 0.0, 3.0, 5.0, 5.0, 8.0, 12.0, 30.0]
    got = [(r["time"], r["event"], r["outcome"], r["status_code"], r["recorded_status"], r["request_id"],
            r["detail"]) for r in records(frame) if r["event"] not in ("received", "finished")]
    assert got == [
        (moment(-2), "callback", "early", 404, 404, "e", "paired by conversion_id"),
        (moment(0), "created", None, None, None, None, "waiting webhook CT1 on wh-tl"),
        (moment(3), "callback", "interim", 200, 200, "i", "paired by conversion_id"),
        (moment(5), "callback", "matched", 200, 200, "m", "paired by conversion_id"),
        (moment(8), "callback", "duplicate", 404, 200, "d", "paired by conversion_id"),
        (moment(12), "callback", "wrong_webhook", 404, None, "w", "sent to wh-other, not to this lead's webhook"),
        (moment(30), "deadline", None, None, None, None, "the ping tree stops waiting after this instant"),
    ]
    finished = records(frame[frame.event.isin(["received", "finished"])])
    assert [(r["outcome"], r["status_code"], r["detail"]) for r in finished] == [(None, None, "finished after 5.0 s")]
    assert frame.url[frame.request_id == "m"].tolist() == ["/webhooks/wh-tl?pcid=CT1&status=approved"]
    assert frame.method[frame.request_id == "m"].tolist() == ["POST"]


def test_timeline_received_state_stands_where_the_wait_finished(timeline_audit: Audit) -> None:
    """W1: the state event of a received lead is placed at finished_at, right after the matched callback."""
    frame = lead_timeline(timeline_audit, "TL1")
    events = list(zip(frame.event, frame.outcome, strict=True))
    received = events.index(("received", None))
    assert events[received - 1] == ("callback", "matched")
    assert frame.time.iloc[received] == moment(5)


def test_timeline_timed_out_lead_stands_at_its_deadline(timeline_audit: Audit) -> None:
    """W2 judges at the observation end (3725.5), but the scenario failed at created_at + timeout: a callback at
    the deadline itself (in time, M5.3) comes before that row, a late one after it; no separate deadline row."""
    frame = lead_timeline(timeline_audit, "TL2")
    got = [(r["time"], r["since_created_s"], r["event"], r["outcome"], r["detail"]) for r in records(frame)]
    assert got == [
        (moment(0), 0.0, "created", None, "waiting webhook CT2 on wh-tl"),
        (moment(30), 30.0, "callback", "interim", "paired by conversion_id"),
        (moment(30), 30.0, "timed_out", None,
         "no callback in time; the scenario failed at the deadline, 30.0 s after created"),
        (moment(40), 40.0, "callback", "late", "paired by conversion_id"),
    ]


def test_timeline_timed_out_instant_is_exact_to_the_microsecond(timeline_audit: Audit) -> None:
    frame = lead_timeline(timeline_audit, "TL3")
    assert frame.event.tolist() == ["created", "timed_out"]
    assert frame.time.iloc[1] == moment(1.000001) + timedelta(microseconds=7_654_321)
    assert frame.since_created_s.iloc[1] == 7.654321
    assert frame.detail.iloc[1] == "no callback in time; the scenario failed at the deadline, 7.7 s after created"


def test_timeline_received_after_an_hour_reads_in_hours_minutes_seconds(timeline_audit: Audit) -> None:
    frame = lead_timeline(timeline_audit, "TL4")
    assert [(r["event"], r["since_created_s"], r["detail"]) for r in records(frame)][-1] == (
        "received", 3725.5, "finished after 1 h 2 min 5.5 s")


def test_timeline_headers_are_json_text_of_the_captured_headers(tmp_path: Path) -> None:
    headers = [["X-Trace", "a,b"], ["X-Trace", "c"], ["Content-Type", 'text/"plain"']]
    folder = write_dataset(tmp_path, [webhook("wh-h", "H")], [lead("HL", "CH", "wh-h", "H")],
                           [call("q", "wh-h", "pcid=CH", headers=headers)])
    with replayed_dataset(folder) as audit:
        frame = lead_timeline(audit, "HL")
    got = frame.headers[frame.event == "callback"].tolist()
    assert [json.loads(text) for text in got] == [[{"name": n, "value": v} for n, v in headers]]


@pytest.mark.parametrize(("seconds", "text"), [
    pytest.param(69429.719335, "19 h 17 min 9.7 s", id="hours"),
    pytest.param(123, "2 min 3.0 s", id="minutes"),
    pytest.param(0.4, "0.4 s", id="seconds"),
    pytest.param(59.96, "1 min 0.0 s", id="rounds-up-into-a-minute"),
    pytest.param(3599.96, "1 h 0 min 0.0 s", id="rounds-up-into-an-hour"),
    pytest.param(3600, "1 h 0 min 0.0 s", id="one-hour"),
    pytest.param(0, "0.0 s", id="zero"),
    pytest.param(0.25, "0.3 s", id="half-up"),
    pytest.param(-2, "-2.0 s", id="early"),
    pytest.param(-0.04, "0.0 s", id="no-negative-zero"),
])
def test_timeline_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_timeline_by_conversion_id_equals_by_lead_id(timeline_audit: Audit) -> None:
    pd.testing.assert_frame_equal(lead_timeline(timeline_audit, "CT1"), lead_timeline(timeline_audit, "TL1"))
    assert lead_timeline(timeline_audit, "CD2").detail.iloc[0] == "waiting webhook CD2 on wh-other"


@pytest.mark.parametrize(("lead_key", "message"), [
    pytest.param("nope", "no lead with lead_id or conversion_id 'nope'", id="unknown"),
    pytest.param("tl1", "no lead with lead_id or conversion_id 'tl1'", id="case-sensitive"),
    pytest.param("DUP", "'DUP' names 2 waiting webhooks (one lead sent to several webhooks); give its conversion_id",
                 id="lead-on-two-webhooks"),
])
def test_timeline_error_text(timeline_audit: Audit, lead_key: str, message: str) -> None:
    with pytest.raises(ReplayError) as caught:
        lead_timeline(timeline_audit, lead_key)
    assert str(caught.value) == message


# =========================================================================== generate
#
# data/sample is ``generate(leads=3000, seed=7)`` (README): the test below checks that byte for byte, so the
# profile checks after it run on the sample's replay (the module's ``sample`` fixture).


def test_generate_seed_7_is_the_bundled_sample(tmp_path: Path) -> None:
    made = generate(tmp_path / "s7", leads=3000, seed=7)
    assert (made.leads, made.callbacks, made.garbage_lines) == (3000, 3537, 3)
    for name in ("webhooks.json", "dispatches.csv", "callbacks.jsonl"):
        assert (made.path / name).read_bytes() == (SAMPLE / name).read_bytes(), name



def test_generate_same_seed_same_bytes_other_seed_other_bytes(generated: dict[int, Path], tmp_path: Path) -> None:
    seed = GENERATED_SEEDS[0]
    again = generate(tmp_path / "again", leads=2000, seed=seed).path
    files = ["webhooks.json", "dispatches.csv", "callbacks.jsonl"]
    for name in files:
        assert (again / name).read_bytes() == (generated[seed] / name).read_bytes(), name
    other = generated[GENERATED_SEEDS[1]]
    for name in ["dispatches.csv", "callbacks.jsonl"]:
        assert (other / name).read_bytes() != (generated[seed] / name).read_bytes(), name


def test_generate_counts_as_returned(tmp_path: Path) -> None:
    made = generate(tmp_path / "g", leads=500, seed=3)
    assert made.leads == 500
    con = connect()
    loaded = load_dataset(con, made.path)
    reports = {Path(r.path).name: r for r in loaded.files}
    assert (reports["dispatches.csv"].loaded, reports["dispatches.csv"].quarantined) == (500, 0)
    callbacks = reports["callbacks.jsonl"]
    assert (callbacks.loaded, callbacks.quarantined) == (made.callbacks, made.garbage_lines)
    assert made.garbage_lines >= 2
    lines = (made.path / "callbacks.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == made.callbacks + made.garbage_lines
    reasons = {r for (r,) in con.execute("SELECT DISTINCT reason FROM quarantine").fetchall()}
    assert reasons <= {"not valid JSON", "bad received_at: not an ISO 8601 timestamp"}
    con.close()


def outcome_count(con: duckdb.DuckDBPyConnection, where: str) -> int:
    (count,) = con.execute(f"SELECT count(*) FROM callback_outcomes WHERE {where}").fetchone()  # type: ignore[misc]
    return int(count)


@pytest.mark.parametrize(("behaviour", "where"), [
    pytest.param("refco-interim", "webhook_id = 'wh-refco' AND outcome = 'interim'", id="wh-refco-interim"),
    pytest.param("refco-no-identifiers", "webhook_id = 'wh-refco' AND outcome = 'no_identifiers'",
                 id="wh-refco-no_identifiers"),
    pytest.param("slowbank-late", "webhook_id = 'wh-slowbank' AND outcome = 'late'", id="wh-slowbank-late"),
    pytest.param("slowbank-gap", "token = 'wh-slowbank' AND outcome = 'unknown_token' "
                 "AND received_at >= '2026-11-05T12:00:00Z' AND received_at < '2026-11-05T12:30:00Z'",
                 id="wh-slowbank-unknown_token-in-gap"),
    pytest.param("extonly-not-found", "webhook_id = 'wh-extonly' AND outcome = 'not_found'",
                 id="wh-extonly-not_found"),
    pytest.param("extonly-by-external", "webhook_id = 'wh-extonly' AND matched_by = 'external_id'",
                 id="wh-extonly-paired-by-external-id"),
    pytest.param("fastpay-early", "webhook_id = 'wh-fastpay' AND outcome = 'early'", id="wh-fastpay-early"),
    pytest.param("old-token", "token = 'wh-fastpay-v1' AND outcome = 'unknown_token'", id="old-token"),
    pytest.param("copy-paste", "webhook_id = 'wh-retry' AND outcome = 'wrong_webhook'", id="wrong-webhook"),
    pytest.param("retry-duplicates", "webhook_id = 'wh-retry' AND outcome = 'duplicate'", id="wh-retry-duplicate"),
])
def test_generate_profile_behaviour_shows_after_replay(sample: Audit,
                                                       behaviour: str, where: str) -> None:
    assert outcome_count(sample.con, where) > 0, behaviour


def test_generate_slowbank_gap_has_only_unknown_tokens(sample: Audit) -> None:
    outcomes = {o for (o,) in sample.con.execute("""
        SELECT DISTINCT outcome FROM callback_outcomes
        WHERE token = 'wh-slowbank' AND received_at >= '2026-11-05T12:00:00Z'
          AND received_at < '2026-11-05T12:30:00Z'""").fetchall()}
    assert outcomes == {"unknown_token"}


def test_generate_retry_has_duplicate_storms(sample: Audit) -> None:
    (storms,) = sample.con.execute("""
        SELECT count(*) FROM (SELECT lead_id FROM callback_outcomes
                              WHERE webhook_id = 'wh-retry' AND outcome IN ('duplicate', 'late')
                              GROUP BY lead_id HAVING count(*) >= 3)""").fetchone()  # type: ignore[misc]
    assert storms > 0


def test_generate_nightly_does_not_wait(sample: Audit) -> None:
    states = {s for (s,) in sample.con.execute(
        "SELECT DISTINCT state FROM lead_outcomes WHERE webhook_id = 'wh-nightly'").fetchall()}
    assert "timed_out" not in states
    assert outcome_count(sample.con, "webhook_id = 'wh-nightly' AND outcome = 'late'") == 0


def test_generate_extonly_not_found_rescued_by_near_misses(sample: Audit) -> None:
    frame = near_misses(sample).set_index(["webhook_id", "transform"])
    for transform in ("trim", "case_fold", "leading_zeros"):
        assert int(frame.loc[("wh-extonly", transform), "rescued"]) > 0, transform  # type: ignore[arg-type]


def test_generate_refco_unmapped_reference_key_is_discovered(
        sample: Audit) -> None:
    found = discover_locations(sample)
    flagged = found[found.unmapped & (found.webhook_id == "wh-refco")]
    assert flagged.location.tolist() == ["json.data.reference"]


def test_generate_disagreements_are_the_planted_incidents(sample: Audit) -> None:
    frame = disagreements(sample)
    duplicate_day = (frame.received_at >= pd.Timestamp("2026-11-06", tz="UTC")) & \
        (frame.received_at < pd.Timestamp("2026-11-07", tz="UTC"))
    bug = duplicate_day & (frame.outcome == "duplicate") & (frame.recorded_status == 200) & (frame.model_status == 404)
    gateway = frame.recorded_status == 502
    assert bug.sum() > 0
    assert (bug | gateway).all()
    assert (frame[~gateway].outcome == "duplicate").all()


# =========================================================================== timeout advice
#
# Observation end T0 + 100 s. A finishing wait is the time to the callback that would be matched with no
# timeout (neither early nor interim), at or before the end.
# wh-adv waits 5 s (no candidate anywhere below), interim "pending" in query.status:
#   A1 pending at 1, final at 3.2 · A2 final at exactly 7 · A3 early at −2, final at 7 · A4 final at 40,
#   again at 41 · A5 pending at 1, final at 150 (after the end: censored at 100) · A6 created at 90, never
#   (censored at 10). Finishing waits 3.2, 7, 7, 40: answered 4 of 6 leads.
# wh-free waits without a timeout: B1 at 0.4 · B2 never (censored at 100) · B3 at 2.5.
# wh-mute waits 10 s: M1 only an early callback, never answered. wh-off does not wait.
ADVICE_END = moment(100)
A1_WAIT = Fraction(32, 10)
ADVICE_WEBHOOKS = [
    webhook("wh-adv", "A", wait=True, timeout_s=5, status_location="query.status", interim_statuses=["pending"]),
    webhook("wh-free", "F", wait=True),
    webhook("wh-mute", "M", wait=True, timeout_s=10),
    webhook("wh-off", "O"),
]
ADVICE_LEADS = [
    *(lead(f"A{n}", f"CA{n}", "wh-adv", "A") for n in range(1, 6)), lead("A6", "CA6", "wh-adv", "A", at=90),
    *(lead(f"B{n}", f"CB{n}", "wh-free", "F") for n in range(1, 4)),
    lead("M1", "CM1", "wh-mute", "M"), lead("O1", "CO1", "wh-off", "O"),
]
ADVICE_CALLBACKS = [
    call("a1i", "wh-adv", "pcid=CA1&status=pending", at=1), call("a1", "wh-adv", "pcid=CA1&status=ok", at=3.2),
    call("a2", "wh-adv", "pcid=CA2", at=7), call("a3e", "wh-adv", "pcid=CA3", at=-2),
    call("a3", "wh-adv", "pcid=CA3", at=7), call("a4", "wh-adv", "pcid=CA4", at=40),
    call("a4d", "wh-adv", "pcid=CA4", at=41), call("a5i", "wh-adv", "pcid=CA5&status=pending", at=1),
    call("a5", "wh-adv", "pcid=CA5", at=150),
    call("b1", "wh-free", "pcid=CB1", at=0.4), call("b3", "wh-free", "pcid=CB3", at=2.5),
    call("m1e", "wh-mute", "pcid=CM1", at=-1), call("o1", "wh-off", "pcid=CO1", at=2),
]


@pytest.fixture(scope="module")
def advice_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    yield from module_case(tmp_path_factory, "advice", ADVICE_WEBHOOKS, ADVICE_LEADS, ADVICE_CALLBACKS,
                           observation_end=ADVICE_END)


def advice_row(advice: pd.DataFrame, webhook_id: str) -> Row:
    return records(advice[advice.webhook_id == webhook_id])[0]


def test_advice_hand_built_table(advice_case: Audit) -> None:
    advice = timeout_advice(advice_case, target=0.75)
    assert tuple(advice.columns) == ADVICE_COLUMNS
    assert_rows(records(advice), [
        # 3 of 4 answers needed: the third finishing wait is 7 s. The current 5 s keeps only A1's 3.2 s.
        {"webhook_id": "wh-adv", "leads": 6, "answered": 4, "current_timeout_s": 5.0,
         "current_capture_rate": Fraction(1, 4), "recommended_timeout_s": 7.0,
         "recommended_capture_rate": Fraction(3, 4), "capped": False,
         "mean_block_s_current": (A1_WAIT + 5 * 5) / 6, "mean_block_s_recommended": (A1_WAIT + 5 * 7) / 6},
        # No timeout: keeps every answer; blocks B2 for the 100 s to the end.
        {"webhook_id": "wh-free", "leads": 3, "answered": 2, "current_timeout_s": None,
         "current_capture_rate": 1.0, "recommended_timeout_s": 3.0, "recommended_capture_rate": 1.0,
         "capped": False, "mean_block_s_current": (Fraction(4, 10) + 100 + Fraction(25, 10)) / 3,
         "mean_block_s_recommended": (Fraction(4, 10) + 3 + Fraction(25, 10)) / 3},
        # Never answered: no share to keep, no recommendation.
        {"webhook_id": "wh-mute", "leads": 1, "answered": 0, "current_timeout_s": 10.0,
         "current_capture_rate": None, "recommended_timeout_s": None, "recommended_capture_rate": None,
         "capped": False, "mean_block_s_current": 10.0, "mean_block_s_recommended": None},
    ])


@pytest.mark.parametrize(("webhook_id", "target", "recommended", "kept"), [
    pytest.param("wh-adv", 0.25, 4.0, Fraction(1, 4), id="3.2-s-rounds-up-to-4"),
    pytest.param("wh-adv", 0.5, 7.0, Fraction(3, 4), id="exactly-7.0-s-is-7"),  # A2 and A3 both
    pytest.param("wh-adv", 0.75, 7.0, Fraction(3, 4), id="target-0.75-is-7"),
    pytest.param("wh-adv", 0.76, 40.0, 1.0, id="target-0.76-needs-all-four"),
    pytest.param("wh-adv", 1.0, 40.0, 1.0, id="target-1"),
    pytest.param("wh-free", 0.5, 1.0, Fraction(1, 2), id="sub-second-is-1"),
    pytest.param("wh-free", 0.75, 3.0, 1.0, id="2.5-s-is-3"),
])
def test_advice_smallest_whole_second_reaching_the_target(
        advice_case: Audit, webhook_id: str, target: float, recommended: float, kept: Fraction | float) -> None:
    row = advice_row(timeout_advice(advice_case, target=target), webhook_id)
    assert (row["recommended_timeout_s"], row["capped"]) == (recommended, False)
    assert close(row["recommended_capture_rate"], kept)


@pytest.mark.parametrize(("target", "recommended"), [
    pytest.param(0.07, 7.0, id="0.07-of-100-is-7"),     # 0.07 × 100 is 7.000000000000001 in floating point
    pytest.param(0.14, 14.0, id="0.14-of-100-is-14"),   # 14.000000000000002
    pytest.param(0.56, 56.0, id="0.56-of-100-is-56"),   # 56.00000000000001
    pytest.param(0.1, 10.0, id="0.1-of-100-is-10"),     # the binary 0.1 is a hair above 1/10
    pytest.param(0.95, 95.0, id="0.95-of-100-is-95"),
])
def test_advice_reads_the_target_as_written(dataset: MakeDataset, con: duckdb.DuckDBPyConnection,
                                            target: float, recommended: float) -> None:
    leads = [lead(f"T{n}", f"CT{n}", "wh-100", "T") for n in range(1, 101)]
    calls = [call(f"t{n}", "wh-100", f"pcid=CT{n}", at=n) for n in range(1, 101)]  # finishing waits 1 … 100 s
    audit = replayed(con, dataset([webhook("wh-100", "T", wait=True, timeout_s=60)], leads, calls))
    row = advice_row(timeout_advice(audit, target=target), "wh-100")
    assert row["recommended_timeout_s"] == recommended
    assert close(row["recommended_capture_rate"], Fraction(int(recommended), 100))


def test_advice_a_wait_of_zero_still_gets_one_second(dataset: MakeDataset, con: duckdb.DuckDBPyConnection) -> None:
    # Answered at the instant the lead was created: not early (M5), a finishing wait of 0 s; T >= 1 all the same.
    calls = [call("z", "wh-z", "pcid=CZ1", at=0)]
    audit = replayed(con, dataset([webhook("wh-z", "Z", wait=True, timeout_s=5)], [lead("Z1", "CZ1", "wh-z", "Z")],
                                  calls))
    row = advice_row(timeout_advice(audit, target=1.0), "wh-z")
    assert (row["recommended_timeout_s"], row["recommended_capture_rate"], row["mean_block_s_recommended"]) == \
        (1.0, 1.0, 0.0)


@pytest.mark.parametrize(("cap", "recommended", "capped", "kept", "block"), [
    pytest.param(30.0, 30.0, True, Fraction(3, 4), (A1_WAIT + 7 + 7 + 30 + 30 + 10) / 6, id="cap-30"),
    pytest.param(39.0, 39.0, True, Fraction(3, 4), (A1_WAIT + 7 + 7 + 39 + 39 + 10) / 6, id="cap-39"),
    pytest.param(40.0, 40.0, False, 1.0, (A1_WAIT + 7 + 7 + 40 + 40 + 10) / 6, id="cap-40-binds-nothing"),
])
def test_advice_max_timeout_caps_and_says_what_the_cap_keeps(
        advice_case: Audit, cap: float, recommended: float, capped: bool, kept: Fraction | float,
        block: Fraction) -> None:
    advice = timeout_advice(advice_case, target=0.76, max_timeout_s=cap)
    assert_rows([advice_row(advice, "wh-adv")], [
        {"recommended_timeout_s": recommended, "capped": capped, "recommended_capture_rate": kept,
         "mean_block_s_recommended": block}])
    # wh-free needs 3 s, under every cap; wh-mute has nothing to cap.
    assert (advice_row(advice, "wh-free")["recommended_timeout_s"], advice_row(advice, "wh-free")["capped"]) == \
        (3.0, False)
    assert (advice_row(advice, "wh-mute")["recommended_timeout_s"], advice_row(advice, "wh-mute")["capped"]) == \
        (None, False)


@pytest.mark.parametrize(("target", "cap", "message"), [
    pytest.param(0.0, None, "target must be in (0, 1]", id="target-zero"),
    pytest.param(1.5, None, "target must be in (0, 1]", id="target-above-one"),
    pytest.param(float("nan"), None, "target must be in (0, 1]", id="target-nan"),
    pytest.param(0.95, 0.0, "max_timeout_s must be a whole number of seconds, at least 1", id="cap-zero"),
    pytest.param(0.95, 0.5, "max_timeout_s must be a whole number of seconds, at least 1", id="cap-below-one"),
    pytest.param(0.95, 39.5, "max_timeout_s must be a whole number of seconds, at least 1", id="cap-not-whole"),
    pytest.param(0.95, float("inf"), "max_timeout_s must be a whole number of seconds, at least 1", id="cap-inf"),
    pytest.param(0.95, float("nan"), "max_timeout_s must be a whole number of seconds, at least 1", id="cap-nan"),
])
def test_advice_rejects_bad_arguments(advice_case: Audit, target: float, cap: float | None, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        timeout_advice(advice_case, target=target, max_timeout_s=cap)
    assert str(caught.value) == message


def assert_advice_agrees_with_whatifs(audit: Audit, target: float) -> None:
    """At the current and the recommended timeout, the advice's capture rate and mean block equal those of
    ``timeout_whatifs`` with that timeout as a candidate (no timeout: a candidate longer than any wait);
    the recommendation reaches the target and one second less does not."""
    advice = timeout_advice(audit, target=target)
    forever = 1e9
    shorter = [t - 1 for t in advice.recommended_timeout_s.dropna() if t > 1]
    candidates = {*advice.current_timeout_s.dropna(), *advice.recommended_timeout_s.dropna(), *shorter, forever}
    whatifs = timeout_whatifs(audit, sorted(candidates)).set_index(["webhook_id", "timeout_s"])
    assert len(advice) == whatifs.index.get_level_values(0).nunique()
    for row in records(advice):
        webhook_id = row["webhook_id"]
        current = forever if row["current_timeout_s"] is None else row["current_timeout_s"]
        for timeout, kept, block in ((current, row["current_capture_rate"], row["mean_block_s_current"]),
                                     (row["recommended_timeout_s"], row["recommended_capture_rate"],
                                      row["mean_block_s_recommended"])):
            if timeout is None:
                assert row["answered"] == 0 and kept is None and block is None
                continue
            expected = whatifs.loc[(webhook_id, timeout)]
            assert (row["leads"], row["answered"]) == (expected.leads, expected.ever_answered), webhook_id
            assert close(kept, None if pd.isna(expected.capture_rate) else float(expected.capture_rate)), \
                (webhook_id, timeout)
            assert close(block, float(expected.mean_block_s)), (webhook_id, timeout)
        recommended = row["recommended_timeout_s"]
        if recommended is not None:
            assert row["recommended_capture_rate"] >= target
            if recommended > 1:
                assert whatifs.loc[(webhook_id, recommended - 1)].capture_rate < target, webhook_id


def test_advice_agrees_with_whatifs_on_the_hand_built_case(advice_case: Audit, timeout_case: Audit) -> None:
    assert_advice_agrees_with_whatifs(advice_case, 0.75)
    assert_advice_agrees_with_whatifs(timeout_case, 0.9)


@pytest.mark.parametrize("target", [0.95, 0.8])
def test_advice_agrees_with_whatifs_on_sample(sample: Audit, target: float) -> None:
    assert_advice_agrees_with_whatifs(sample, target)


@pytest.mark.parametrize("seed", GENERATED_SEEDS, ids=[f"seed-{s}" for s in GENERATED_SEEDS])
def test_advice_agrees_with_whatifs_on_generated(generated_replays: dict[int, Audit], seed: int) -> None:
    assert_advice_agrees_with_whatifs(generated_replays[seed], 0.95)


def test_advice_on_sample_keeps_95_percent_of_refcos_finishing_answers(sample: Audit) -> None:
    """wh-refco sends interim statuses first: by time to the first callback 900 s looked enough, yet it keeps
    under 90 % of the answers that finish a wait; the advice keeps 95 %."""
    row = advice_row(timeout_advice(sample, target=0.95), "wh-refco")
    assert row["current_timeout_s"] is None and row["current_capture_rate"] == 1.0
    assert row["recommended_capture_rate"] >= 0.95
    at_900 = timeout_whatifs(sample, [900]).set_index("webhook_id").loc["wh-refco"]
    assert at_900.capture_rate < 0.9 and row["recommended_timeout_s"] > 900


def finishing_durations(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The finishing-wait oracle, in Python from the replayed callbacks (not survival.py's SQL): per lead of a
    webhook that waits, created by the end, the time to its first resolved callback at or after its creation,
    not interim, by the end (an event), else to the end (censored)."""
    (end,) = con.execute("SELECT max(observation_end) FROM lead_outcomes").fetchone() or (None,)
    end_us = _us(end)
    created = {lead_id: (webhook_id, _us(at)) for lead_id, webhook_id, at
               in con.execute("SELECT lead_id, webhook_id, created_at FROM lead_outcomes WHERE waits").fetchall()}
    finish: dict[str, int] = {}
    for lead_id, outcome, received_at, interim in con.execute(
            "SELECT lead_id, outcome, received_at, is_interim FROM callback_outcomes").fetchall():
        if lead_id not in created or outcome == "wrong_webhook" or interim:
            continue
        received = _us(received_at)
        if created[lead_id][1] <= received <= end_us:
            finish[lead_id] = min(received, finish.get(lead_id, received))
    rows = [(webhook_id, (finish.get(lead_id, end_us) - at) / 1e6, lead_id in finish)
            for lead_id, (webhook_id, at) in created.items() if at <= end_us]
    return pd.DataFrame(rows, columns=["webhook_id", "t", "event"])


def test_km_finishing_curve_hand_built(advice_case: Audit) -> None:
    curve = finishing_curve(advice_case)
    assert tuple(curve.columns) == CURVE_COLUMNS
    assert set(curve.webhook_id) == {"wh-adv", "wh-free"}  # waits and was answered
    s3, s7, s40 = Fraction(5, 6), Fraction(5, 6) * Fraction(3, 5), Fraction(5, 6) * Fraction(3, 5) * Fraction(1, 2)
    g3 = Fraction(1, 6 * 5)
    g7 = g3 + Fraction(2, 5 * 3)
    g40 = g7 + Fraction(1, 2 * 1)
    expected = []
    # 6 at risk at 3.2; at 7, A2 and A3 of 5; A6 censored at 10; at 40, A4 of A4 and A5.
    for t, at_risk, events, s, g in [(3.2, 6, 1, s3, g3), (7.0, 5, 2, s7, g7), (40.0, 2, 1, s40, g40)]:
        low, high = exponential_greenwood(float(s), float(g))
        expected.append({"t_s": t, "at_risk": at_risk, "events": events, "captured": 1 - s,
                         "ci_low": low, "ci_high": high})
    assert_rows(records(curve[curve.webhook_id == "wh-adv"]), expected)
    # Time to the first callback counts the interim updates at 1 s: another curve.
    first = capture_curve(advice_case)
    assert first[first.webhook_id == "wh-adv"].t_s.tolist() == [1.0, 7.0, 40.0]


@pytest.mark.parametrize("case", ["sample", "seed-11", "earlier-end"])
def test_km_finishing_curve_equals_lifelines(sample: Audit, generated_replays: dict[int, Audit], case: str) -> None:
    if case == "earlier-end":
        with replayed(connect(), SAMPLE, observation_end=datetime(2026, 11, 5, 12, tzinfo=UTC)) as audit:
            data = finishing_durations(audit.con)
            assert_matches_lifelines(audit, data, curve=finishing_curve(audit))
        return
    audit = sample if case == "sample" else generated_replays[11]
    data = finishing_durations(audit.con)
    assert (~data.event).sum() > 0 and data.event.sum() > 0
    assert_matches_lifelines(audit, data, curve=finishing_curve(audit))


# --------------------------------------------------------------------------- curves thinned for drawing


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_a_curve_thinned_in_sql_keeps_the_steps_the_chart_would(generated_replays: dict[int, Audit],
                                                                 steps: int) -> None:
    """capture_curve(max_steps) thins before pandas holds the curve, exactly as the chart thins a full one."""
    from webhook_core.report.charts import _thin_steps

    audit = next(iter(generated_replays.values()))
    for curve_of in (wc.capture_curve, wc.finishing_curve):
        full = curve_of(audit)
        assert len(full) > steps * full.webhook_id.nunique()  # the case that thins
        thinned = curve_of(audit, max_steps=steps)
        expected = _thin_steps(full, per_webhook=steps).reset_index(drop=True)
        pd.testing.assert_frame_equal(thinned, expected, check_dtype=False)
        assert curve_of(audit, max_steps=10**9).equals(full)
