"""Property: the set-based SQL replay and the online matcher agree row for row.

Hypothesis builds small random datasets dense in the cases the rules care about:
ties in time, offsets, empty and numeric IDs, duplicates, early and late
callbacks, interim statuses, recreated webhooks, pairing rules in every kind of
location, malformed bodies. Each is written to files and loaded, and the online
matcher and the SQL replay (on the loaded requests, and on the keys a second load
computes as it reads) judge it; tests/judge.py asserts they agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from datasets import write_dataset
from judge import judge

BASE = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
WEBHOOK_IDS = ("wh-a", "wh-b", "wh-c")
ADVERTISERS = ("adv-1", "adv-2")
CONVERSION_IDS = ("PC-1", "PC-2", "PC-3", "007", "7", "12345", "pc-1", "A B")
EXTERNAL_IDS = ("E1", "E2", "0042", "42", "")
SECONDS = (0, 0.5, 1, 2, 5, 10, 30, 60, 60.000001, 61, 300, 3600)
LOCATIONS = ("query.ref", "form.lead", "json.data.ref", "json.items.0.id", "header.X-Lead-Id", "json.n")
STATUSES = ("pending", "approved", "rejected", "")

def _timestamp(seconds: float, style: int) -> str:
    moment = BASE + timedelta(seconds=seconds)
    if style == 0:
        return moment.isoformat().replace("+00:00", "Z")
    if style == 1:
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    return moment.replace(tzinfo=None).isoformat()  # naive means UTC


timestamps = st.builds(_timestamp, st.sampled_from(SECONDS), st.integers(0, 2))
lead_timestamps = st.builds(_timestamp, st.sampled_from((0, 1, 1, 1, 30)), st.integers(0, 2))


@st.composite
def webhook_settings(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries = []
    for webhook_id in WEBHOOK_IDS[: draw(st.integers(1, 3))]:
        wait = draw(st.booleans())
        entry: dict[str, Any] = {"webhook_id": webhook_id, "advertiser_id": draw(st.sampled_from(ADVERTISERS)),
                                 "wait": wait}
        if wait and draw(st.booleans()):
            entry["timeout_s"] = draw(st.sampled_from((1, 2.5, 30, 60, 0.000001)))
        rules = draw(st.lists(st.tuples(st.sampled_from(("conversion_id", "external_id", "advertiser_id")),
                                        st.sampled_from(LOCATIONS)), max_size=3))
        entry["pairing"] = [{"identifier": i, "location": loc} for i, loc in rules]
        if draw(st.booleans()):
            entry["status_location"] = draw(st.sampled_from(("json.status", "query.status", "header.X-Status")))
            entry["interim_statuses"] = ["pending"]
        recreated = draw(st.integers(0, 2))
        if recreated:
            # Deleted then recreated: the second version starts at or after the first ends.
            cut = draw(st.sampled_from(SECONDS[1:]))
            gap = 0 if recreated == 1 else draw(st.sampled_from((0.5, 5, 30)))
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
    conversion_ids = draw(st.lists(st.sampled_from(CONVERSION_IDS), max_size=7, unique=True))
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
def callback(draw: st.DrawFn, webhooks: list[dict[str, Any]], leads: list[dict[str, Any]]) -> dict[str, Any]:
    webhook_ids = sorted({w["webhook_id"] for w in webhooks})
    target = draw(st.one_of(st.none(), st.sampled_from(leads))) if leads and draw(st.integers(0, 9)) else None
    if target is not None and draw(st.integers(0, 4)):
        token = target["webhook_id"]
    else:
        token = draw(st.sampled_from((*webhook_ids, "wh-zz")))
    known = [lead["conversion_id"] for lead in leads] + ["PC-404"]
    if target is not None:
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
        where = draw(st.sampled_from(("query", "query", "form", "json", "json", "header", "pairing")))
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
    if status is not None:
        where = draw(st.sampled_from(("json", "query", "header")))
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

    row: dict[str, Any] = {"received_at": draw(timestamps), "url": url, "headers": headers}
    if body is not None:
        row["body"] = body
    return row


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    webhooks = draw(webhook_settings())
    leads = draw(dispatches(webhooks))
    callbacks = draw(st.lists(callback(webhooks, leads), max_size=16))
    # Retry storms: repeat some callbacks verbatim.
    if callbacks and draw(st.booleans()):
        callbacks += draw(st.lists(st.sampled_from(callbacks), max_size=3))
    return webhooks, leads, callbacks


@given(datasets(), st.sampled_from((None, {None: 1.0}, {"wh-a": 30.0})))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_sql_replay_agrees_with_online_matcher(tmp_path_factory: Any, case: Any, timeouts: Any) -> None:
    webhooks, leads, callbacks = case
    folder = write_dataset(Path(tmp_path_factory.mktemp("prop")), webhooks, leads, callbacks)
    if timeouts and "wh-a" in timeouts and not any(w["webhook_id"] == "wh-a" for w in webhooks):
        timeouts = None
    judged = judge(folder, timeouts=timeouts)
    assert len(judged.callbacks) == len(callbacks)
    for outcome in set(judged.outcomes()):
        event(f"outcome {outcome}")
    for row in judged.callbacks:
        if row["matched_by"]:
            event(f"matched_by {row['matched_by']}")
