"""Property: the set-based SQL replay and the online matcher agree row for row.

Hypothesis builds small random datasets dense in the cases the rules care about:
ties in time, offsets, empty and numeric IDs, duplicates, early and late
callbacks, interim statuses, recreated webhooks, pairing rules in every kind of
location, malformed bodies, lines the receiver refused. Each is written to files and loaded, and the online
matcher and the SQL replay (on the loaded requests, and on the keys a second load
computes as it reads) judge it; tests/judge.py asserts they agree.

Agreement alone cannot see a slip both engines share, nor a case the examples never
reach. So callbacks aimed at a lead land on its boundaries (1 µs before its creation,
at it, at its deadline, 1 µs past it, a second callback after a match), statuses go
where the webhook reads them, and the run fails (at the module's teardown) when an
outcome or boundary kind shows up in fewer than ``MIN_EXAMPLES`` examples. What the
engines share is checked against what the generator planted: each lead's creation
and deadline (S4's rounding worked out by hand in ``TIMEOUT_US``) and each callback's
``received_at``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from webhook_core import Outcome

from datasets import write_dataset
from judge import Judged, judge

BASE = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
SECOND = 1_000_000  # µs
WEBHOOK_IDS = ("wh-a", "wh-b", "wh-c")
ADVERTISERS = ("adv-1", "adv-2")
CONVERSION_IDS = ("PC-1", "PC-2", "PC-3", "007", "7", "12345", "pc-1", "A B")
EXTERNAL_IDS = ("E1", "E2", "0042", "42", "")
SECONDS = (0, 0.5, 1, 2, 5, 10, 30, 60, 60.000001, 61, 300, 3600)
LOCATIONS = ("query.ref", "form.lead", "json.data.ref", "json.items.0.id", "header.X-Lead-Id", "json.n")
STATUSES = ("pending", "approved", "rejected", "")
#: Every timeout the settings and what-ifs below use, in µs by S4 (half up), worked out by hand:
#: 2.5 µs and 1.0000005 s are the .5 boundaries that round up (half-even would round them down).
TIMEOUT_US = {1: 1_000_000, 2.5: 2_500_000, 30: 30_000_000, 60: 60_000_000, 5: 5_000_000,
              0.000001: 1, 0.0000025: 3, 1.0000005: 1_000_001}
WHAT_IFS: tuple[dict[str | None, float] | None, ...] = (None, {None: 1.0}, {"wh-a": 30.0})
#: Where a callback aimed at a lead lands, relative to that lead (``_aim``).
AIMS = ("just_before", "at_creation", "soon", "at_deadline", "at_deadline", "past_deadline", "past_deadline",
        "long_after")

#: Callbacks told to one lead, as (aim, status where its webhook reads one, the identifier it sends):
#: between them they reach M5's edges when the lead has a deadline and its webhook reads statuses
#: (told to another lead, they are ordinary callbacks).
C, E = "conversion_id", "external_id"  # (short, to keep the stories readable)
STORIES = (
    # early by 1 µs; interim; the final status at the deadline, in time; a duplicate past the deadline
    (("just_before", "approved", C), ("soon", "pending", C), ("at_deadline", "approved", C),
     ("past_deadline", "approved", C)),
    # a first callback 1 µs late, with an interim status; the final one, late as well
    (("past_deadline", "pending", C), ("long_after", "approved", E)),
    # two at the same instant: a match and a duplicate, judged in input order
    (("at_creation", "approved", C), ("at_creation", "", C)),
    # at the edges of the lead's webhook's versions: 1 µs before one ends, as it ends, as the next starts
    (("version_edge", "approved", C), ("version_edge", "pending", C)),
    # by external ID (M3: among the leads sharing it, by creation time and row)
    (("soon", "approved", E), ("just_before", "approved", E)),
)

#: Each kind below must show up in at least this many examples of a run (150 under the `ci` profile).
MIN_EXAMPLES = 5
BOUNDARIES = (
    "early by 1 µs",                      # M5.1 at its edge
    "at creation, not early",
    "at the deadline, in time",           # M5.3: the deadline itself is in time
    "1 µs past the deadline, late",
    "duplicate past the deadline",        # M5.2 before M5.3
    "duplicate at the instant of the match",  # judged in input order
    "late with an interim status",        # M5.3 before M5.4
    "interim then matched",
    "matched by an external_id several leads share",  # M3's tie rules
    "unknown_token of a webhook with no version live",  # S3
    "lead state received", "lead state timed_out", "lead state waiting",
    "body invalid_json",
)


def _at(us: int, style: int) -> str:
    """BASE + ``us`` µs, written with a Z, with an offset, or naive (UTC)."""
    moment = BASE + timedelta(microseconds=us)
    if style == 0:
        return moment.isoformat().replace("+00:00", "Z")
    if style == 1:
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    return moment.replace(tzinfo=None).isoformat()  # naive means UTC


def _timestamp(seconds: float, style: int) -> str:
    return _at(round(seconds * SECOND), style)


def _us(moment: str | datetime) -> int:
    """µs since BASE of a timestamp written by ``_at``, or of a judged one."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    elif hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    return (moment - BASE) // timedelta(microseconds=1)


timestamps = st.builds(_timestamp, st.sampled_from(SECONDS), st.integers(0, 2))
lead_timestamps = st.builds(_timestamp, st.sampled_from((0, 1, 1, 1, 30)), st.integers(0, 2))


@dataclass(frozen=True)
class Planted:
    """What the generator knows of a lead, in µs since BASE; ``loaded`` is false when no version is live."""

    created_us: int
    deadline_us: int | None
    loaded: bool


@dataclass(frozen=True)
class Case:
    webhooks: list[dict[str, Any]]
    timeouts: dict[str | None, float] | None
    leads: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]
    planted: dict[str, Planted]  # by lead_id


def _live(entry: dict[str, Any], us: int) -> bool:
    start, end = entry.get("active_from"), entry.get("active_to")
    return (start is None or _us(start) <= us) and (end is None or us < _us(end))


def _plant(webhooks: list[dict[str, Any]], timeouts: dict[str | None, float] | None,
           lead: dict[str, Any]) -> Planted:
    created = _us(lead["created_at"])
    version = next((w for w in webhooks if w["webhook_id"] == lead["webhook_id"] and _live(w, created)), None)
    if version is None:
        return Planted(created, None, False)
    timeout = version.get("timeout_s")
    if timeouts and version["wait"]:
        timeout = timeouts.get(lead["webhook_id"], timeouts.get(None, timeout))
    deadline = created + TIMEOUT_US[timeout] if version["wait"] and timeout is not None else None
    return Planted(created, deadline, True)


def _aim(lead: Planted, aim: str) -> int:
    """When a callback aimed at ``lead`` arrives (µs since BASE); a lead without deadline gets a time instead."""
    created, deadline = lead.created_us, lead.deadline_us
    if aim == "just_before":
        return created - 1
    if aim == "at_creation":
        return created
    if aim == "soon":
        return created + SECOND // 2
    if aim == "at_deadline":
        return created + 2 * SECOND if deadline is None else deadline
    if aim == "past_deadline":
        return created + 2 * SECOND + 1 if deadline is None else deadline + 1
    return created + 3600 * SECOND


@st.composite
def webhook_settings(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries = []
    for position, webhook_id in enumerate(WEBHOOK_IDS[: draw(st.integers(1, 3))]):
        # The first mostly waits with a timeout and reads statuses: what the stories need to play out.
        rich = position == 0 and draw(st.integers(0, 3)) > 0
        wait = rich or draw(st.booleans())
        entry: dict[str, Any] = {"webhook_id": webhook_id, "advertiser_id": draw(st.sampled_from(ADVERTISERS)),
                                 "wait": wait}
        if wait and (rich or draw(st.integers(0, 2))):
            entry["timeout_s"] = draw(st.sampled_from((1, 2.5, 30, 60, 0.000001, 0.0000025, 1.0000005)))
        rules = draw(st.lists(st.tuples(st.sampled_from(("conversion_id", "external_id", "advertiser_id")),
                                        st.sampled_from(LOCATIONS)), max_size=3))
        entry["pairing"] = [{"identifier": i, "location": loc} for i, loc in rules]
        if rich or draw(st.integers(0, 2)):
            entry["status_location"] = draw(st.sampled_from(("json.status", "query.status", "header.X-Status")))
            entry["interim_statuses"] = ["pending"]
        recreated = draw(st.integers(0, 3))
        if recreated:
            # Deleted then recreated: the second version starts at or after the first ends.
            cut = draw(st.sampled_from(SECONDS[1:]))
            gap = 0 if recreated == 1 else draw(st.sampled_from((0.5, 5, 30)))  # a gap: no version live
            old = dict(entry, active_to=_timestamp(cut, 0))
            new = dict(entry, active_from=_timestamp(cut + gap, 1),
                       wait=not wait if draw(st.booleans()) else wait)
            if not new["wait"]:
                new.pop("timeout_s", None)
            elif "timeout_s" not in new and draw(st.booleans()):
                new["timeout_s"] = 5
            entries += [old, new]
        else:
            entries.append(entry)
    return entries


@st.composite
def dispatches(draw: st.DrawFn, webhooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = sorted({w["webhook_id"] for w in webhooks})
    conversion_ids = draw(st.lists(st.sampled_from(CONVERSION_IDS), min_size=1, max_size=7, unique=True))
    # Sometimes every lead shares webhook, advertiser and external ID: the M3 tie rules.
    crowded = draw(st.booleans())
    rows = []
    for index, conversion_id in enumerate(conversion_ids):
        if crowded:
            rows.append({"lead_id": f"L{index}", "conversion_id": conversion_id, "advertiser_id": ADVERTISERS[0],
                         "external_id": "E1", "webhook_id": ids[0], "created_at": draw(lead_timestamps)})
            continue
        rows.append({
            "lead_id": f"L{index}",
            "conversion_id": conversion_id,
            # Few distinct values, so leads share external IDs and creation instants (M3 tie rules).
            "advertiser_id": draw(st.sampled_from(ADVERTISERS[:1] * 3 + ADVERTISERS[1:])),
            "external_id": draw(st.sampled_from(("E1", "E1", "E1", "0042", ""))),
            "webhook_id": draw(st.sampled_from(ids)),
            "created_at": draw(lead_timestamps),
        })
    return rows


def _id_value(draw: st.DrawFn, value: str) -> Any:
    """An ID as a callback might carry it: as is, or as a JSON number when it is digits."""
    if value.isdigit() and draw(st.booleans()):
        return draw(st.sampled_from((int(value), float(value))))
    return value


@st.composite
def callback(draw: st.DrawFn, webhooks: list[dict[str, Any]], leads: list[dict[str, Any]],
             planted: dict[str, Planted], *, aims: tuple[str, ...] = ("absolute", "version_edge", *AIMS),
             lead_id: str | None = None, read_statuses: tuple[str, ...] = ("pending", "pending", "approved", ""),
             sure: str | None = None) -> tuple[dict[str, Any], str | None]:
    """A callback, and the lead it is aimed at (None when it aims at no lead): ``lead_id``'s, or one drawn.

    Where the token's webhook reads a status, the callback mostly sends one of ``read_statuses`` there.
    ``sure`` (an identifier): to the lead's webhook, with only that identifier of the lead (and for an
    external ID its advertiser) in the query string, so that it mostly resolves by it.
    """
    webhook_ids = sorted({w["webhook_id"] for w in webhooks})
    if lead_id is not None:
        target: dict[str, Any] | None = next(lead for lead in leads if lead["lead_id"] == lead_id)
    else:
        target = draw(st.sampled_from(leads)) if leads and draw(st.integers(0, 2)) else None
    if target is not None and (sure or draw(st.integers(0, 4))):
        token = target["webhook_id"]
    else:
        token = draw(st.sampled_from((*webhook_ids, "wh-zz")))
    known = [lead["conversion_id"] for lead in leads] + ["PC-404"]
    if target is not None and sure == "conversion_id":
        conversion, external, advertiser = target["conversion_id"], None, None
    elif target is not None and sure == "external_id":
        conversion, external, advertiser = None, target["external_id"], target["advertiser_id"]
    elif target is not None:
        conversion = draw(st.sampled_from((target["conversion_id"], target["conversion_id"], None)))
        external = draw(st.sampled_from((target["external_id"], None, "E1")))
        advertiser = draw(st.sampled_from((None, None, target["advertiser_id"], "adv-2")))
    else:
        conversion = draw(st.one_of(st.none(), st.sampled_from(known)))
        external = draw(st.one_of(st.none(), st.sampled_from(EXTERNAL_IDS)))
        advertiser = draw(st.one_of(st.none(), st.sampled_from(ADVERTISERS)))
    status = draw(st.one_of(st.none(), st.sampled_from(STATUSES)))

    query: list[tuple[str, str]] = []
    form: list[tuple[str, str]] = []
    document: dict[str, Any] = {}
    headers: list[list[str]] = []

    def place(name: str, value: Any) -> None:
        where = "query" if sure else draw(
            st.sampled_from(("query", "query", "form", "json", "json", "header", "pairing")))
        text = str(value)
        if where == "pairing":
            where, name = draw(st.sampled_from(
                (("query", "ref"), ("form", "lead"), ("json", "data.ref"), ("json", "items.0.id"),
                 ("header", "X-Lead-Id"), ("json", "n"))))
        if where == "query":
            query.append((name, text))
        elif where == "form":
            form.append((name, text))
        elif where == "header":
            headers.append([name, text])
        else:
            node = document
            parts = name.split(".")
            for part in parts[:-1]:
                node = node.setdefault("items", [{}])[0] if part == "items" else node.setdefault(part, {})
            node[parts[-1]] = _id_value(draw, text) if isinstance(node, dict) else text

    if conversion is not None:
        place("pcid", conversion)
    if external is not None:
        place("external_id", external)
    if advertiser is not None:
        place("advertiser_id", advertiser)
    # Mostly where the token's webhook reads its status, so that interim statuses count (M5.4).
    reads = next((w["status_location"] for w in webhooks if w["webhook_id"] == token and "status_location" in w),
                 None)
    where = draw(st.sampled_from(("json", "query", "header")))
    read_status = reads is not None and draw(st.integers(0, 3)) > 0
    if read_status:
        status = draw(st.sampled_from(read_statuses))
        where = reads.split(".")[0]
    if status is not None:
        if where == "json":
            document["status"] = status
        elif where == "query":
            query.append(("status", status))
        else:
            headers.append(["X-Status", status])
    if draw(st.booleans()):
        query.insert(0, ("pcid", ""))  # an empty first occurrence counts as absent

    encode = draw(st.booleans())
    query_text = "&".join(f"{quote(k) if encode else k}={quote(v, safe='') if encode else v.replace(' ', '+')}"
                          for k, v in query)
    prefix = draw(st.sampled_from(("/webhooks/", "https://api.example.com/webhooks/", "/v2/hooks/")))
    url = prefix + token + (("?" + query_text) if query_text else "")

    body_style = draw(st.sampled_from(("json", "json", "form", "broken", "none")))
    if read_status and where == "json":
        body_style = "json"
    body: str | None = None
    if body_style == "json" and (document or form):
        document.update({k: v for k, v in form if k not in document})
        body = json.dumps(document)
        if draw(st.booleans()):
            body = body[:-1] + ",}" if body.endswith("}") and len(body) > 2 else body
        headers.append(["Content-Type", "application/json"])
    elif body_style == "form" and (form or document):
        body = "&".join(f"{k}={quote(v, safe='')}" for k, v in form + [(k, str(v)) for k, v in document.items()
                                                                        if not isinstance(v, (dict, list))])
    elif body_style == "broken":
        body = '{"pcid": "' + str(conversion or "x") + '",'
        headers.append(["Content-Type", "application/json"])

    aim = draw(st.sampled_from(aims))
    # S3's edges: where one version of the token's webhook ends or the next starts, or 1 µs before.
    edges = [_us(w[end]) for w in webhooks if w["webhook_id"] == token for end in ("active_to", "active_from")
             if end in w]
    if aim == "version_edge" and edges:
        received_at = _at(draw(st.sampled_from(edges)) + draw(st.sampled_from((-1, 0))), draw(st.integers(0, 2)))
    elif target is None or aim in ("absolute", "version_edge"):
        received_at = draw(timestamps)
    else:
        received_at = _at(_aim(planted[target["lead_id"]], aim), draw(st.integers(0, 2)))
    row: dict[str, Any] = {"received_at": received_at, "url": url, "headers": headers}
    if body is not None:
        row["body"] = body
    return row, None if target is None else target["lead_id"]


@st.composite
def datasets(draw: st.DrawFn) -> Case:
    webhooks = draw(webhook_settings())
    timeouts = draw(st.sampled_from(WHAT_IFS))
    leads = draw(dispatches(webhooks))
    planted = {lead["lead_id"]: _plant(webhooks, timeouts, lead) for lead in leads}
    drawn = draw(st.lists(callback(webhooks, leads, planted), min_size=3, max_size=20))
    # Stories (``STORIES``) told to a lead, mostly one with a deadline whose webhook reads statuses.
    reading = {w["webhook_id"] for w in webhooks if "status_location" in w}
    rich = [lead for lead in leads if planted[lead["lead_id"]].deadline_us is not None
            and lead["webhook_id"] in reading]
    for story in draw(st.lists(st.sampled_from(STORIES), min_size=1, max_size=3)):
        lead_id = draw(st.sampled_from(rich if rich and draw(st.integers(0, 3)) else leads))["lead_id"]
        drawn += [draw(callback(webhooks, leads, planted, aims=(aim,), lead_id=lead_id, read_statuses=(status,),
                                sure=by)) for aim, status, by in story]
    callbacks = [row for row, _ in drawn]
    # Later callbacks to a lead already called: the same one again (after a match, a duplicate at or past
    # the deadline: M5.2 before M5.3), or another one (after an interim status, the final one).
    aimed = [(row, lead_id) for row, lead_id in drawn if lead_id is not None]
    later = ("at_deadline", "past_deadline", "long_after")
    if aimed and draw(st.integers(0, 3)):
        for row, lead_id in draw(st.lists(st.sampled_from(aimed), min_size=1, max_size=6)):
            if draw(st.booleans()):
                aim = draw(st.sampled_from(later))
                callbacks.append(dict(row, received_at=_at(_aim(planted[lead_id], aim), draw(st.integers(0, 2)))))
            else:
                callbacks.append(draw(callback(webhooks, leads, planted, aims=later, lead_id=lead_id,
                                               read_statuses=("approved", "", "pending")))[0])
    # Lines the receiver answered without judging them (M0): they must change no lead's state.
    if draw(st.integers(0, 2)):
        for index in draw(st.lists(st.integers(0, len(callbacks) - 1), min_size=1, max_size=3, unique=True)):
            callbacks[index] = dict(callbacks[index], refused=True,
                                    response_status=draw(st.sampled_from((400, 409, 413, 500))))
    # Retry storms: repeat some callbacks verbatim.
    if draw(st.integers(0, 2)):
        callbacks += draw(st.lists(st.sampled_from(callbacks), max_size=3))
    return Case(webhooks, timeouts, leads, callbacks, planted)


#: How many examples of this run showed each outcome and boundary kind (``kinds_seen``).
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def every_kind_seen(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the run at the module's teardown when an outcome or boundary kind was seen too rarely."""
    failed_before = request.session.testsfailed
    SEEN.clear()
    yield
    if request.session.testsfailed > failed_before:
        return  # a disagreement was found: that is the report, the counts of a cut-short run are not
    required = [f"outcome {o.value}" for o in Outcome] + list(BOUNDARIES)
    rare = {kind: SEEN[kind] for kind in required if SEEN[kind] < MIN_EXAMPLES}
    assert not rare, f"seen in fewer than {MIN_EXAMPLES} examples: {rare}; make the strategies reach them"


@given(datasets())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_sql_replay_agrees_with_online_matcher(tmp_path_factory: Any, case: Case) -> None:
    folder = write_dataset(Path(tmp_path_factory.mktemp("prop")), case.webhooks, case.leads, case.callbacks)
    judged = judge(folder, timeouts=case.timeouts)
    assert_planted(case, judged)
    kinds = kinds_seen(case, judged)
    for kind in sorted(kinds):
        event(kind)
    SEEN.update(kinds)


def assert_planted(case: Case, judged: Judged) -> None:
    """What both engines share (loading, timestamps, S4's rounding) against what the generator planted."""
    assert [row["lead_id"] for row in judged.leads] == [
        lead["lead_id"] for lead in case.leads if case.planted[lead["lead_id"]].loaded]
    for row in judged.leads:
        planted = case.planted[row["lead_id"]]
        deadline = None if row["deadline"] is None else _us(row["deadline"])
        assert (_us(row["created_at"]), deadline) == (planted.created_us, planted.deadline_us), row["lead_id"]
    assert len(judged.callbacks) == len(case.callbacks)
    # A JSONL callback's seq is its line; judging order is (received_at, line).
    planted_order = sorted((_us(row["received_at"]), line) for line, row in enumerate(case.callbacks, 1))
    assert [(_us(row["received_at"]), row["seq"]) for row in judged.callbacks] == planted_order


def kinds_seen(case: Case, judged: Judged) -> set[str]:
    """The outcomes and boundary kinds (``BOUNDARIES``) this example reached, from its judgement."""
    kinds = {f"outcome {outcome}" for outcome in judged.outcomes()}
    kinds |= {f"lead state {row['state']}" for row in judged.leads}
    leads = {row["lead_id"]: row for row in judged.leads}
    sharing = Counter((lead["webhook_id"], lead["advertiser_id"], lead["external_id"]) for lead in case.leads
                      if lead["external_id"] and lead["lead_id"] in leads)
    interim_before: set[str] = set()
    for row in judged.callbacks:
        outcome = row["outcome"]
        if row["matched_by"]:
            kinds.add(f"matched_by {row['matched_by']}")
        if row["body_kind"] == "invalid_json":
            kinds.add("body invalid_json")
        if outcome == "unknown_token" and row["token"] in WEBHOOK_IDS:
            kinds.add("unknown_token of a webhook with no version live")
        lead = leads.get(row["lead_id"]) if outcome != "wrong_webhook" else None
        if lead is None:
            continue
        received, created = _us(row["received_at"]), _us(lead["created_at"])
        deadline = None if lead["deadline"] is None else _us(lead["deadline"])
        if received == created - 1 and outcome == "early":
            kinds.add("early by 1 µs")
        if received == created and outcome != "early":
            kinds.add("at creation, not early")
        if deadline is not None and received == deadline and outcome in ("matched", "interim"):
            kinds.add("at the deadline, in time")
        if deadline is not None and received == deadline + 1 and outcome == "late":
            kinds.add("1 µs past the deadline, late")
        if deadline is not None and received > deadline and outcome == "duplicate":
            kinds.add("duplicate past the deadline")
        if outcome == "duplicate" and lead["finished_at"] is not None and received == _us(lead["finished_at"]):
            kinds.add("duplicate at the instant of the match")
        if outcome == "late" and row["is_interim"]:
            kinds.add("late with an interim status")
        if outcome == "interim":
            interim_before.add(lead["lead_id"])
        if outcome == "matched" and lead["lead_id"] in interim_before:
            kinds.add("interim then matched")
        if row["matched_by"] == "external_id" and sharing[(row["webhook_id"], row["advertiser_id"],
                                                           row["external_id"])] > 1:
            kinds.add("matched by an external_id several leads share")
    return kinds
