"""What the two engines share, against values worked out by hand.

The online matcher and the SQL replay read the same loaded tables: the loader's header lists
(the ``wa_headers`` macro, docs/semantics.md I3, I4, I5), the timeouts in microseconds (S4)
and the parsed locations (L). A slip there is the same slip in both, so their agreement
(tests/test_property.py) cannot see it: every expected value below is written out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from webhook_core import Location, LocationError, LocationKind, load_dataset, parse_location, parse_webhooks
from webhook_core.timeutil import seconds_to_us

from datasets import write_dataset

Header = tuple[str, str]

# =========================================================================== headers (wa_headers)

HEADER_SHAPES = [
    pytest.param('{"X-Ref": " A ", "x-empty": "", "nul": null, "a/b~c": "v\\t", "X-Q": "a\\"b "}',
                 [("X-Ref", " A "), ("x-empty", ""), ("nul", ""), ("a/b~c", "v\t"), ("X-Q", 'a"b ')],
                 id="object-in-key-order-values-as-sent"),
    pytest.param('[["X-Ref", " A "], ["x-ref", "B"], ["X-Empty", ""], ["X-Null", null], ["only-name"], [null, "v"]]',
                 [("X-Ref", " A "), ("x-ref", "B"), ("X-Empty", ""), ("X-Null", ""), ("only-name", "")],
                 id="pairs-repeated-kept-nameless-dropped"),
    pytest.param('[{"name": "X-Ref", "value": " A "}, {"name": "X"}, {"value": "v"}, {"name": "Y", "value": null}]',
                 [("X-Ref", " A "), ("X", ""), ("Y", "")], id="name-value-objects-as-HAR-writes-them"),
    pytest.param('["X-Ref: A", 5, null, ["K", " v\\t"], {"name": " sp ", "value": "\\n"}]',
                 [("K", " v\t"), (" sp ", "\n")], id="list-entries-neither-pair-nor-object-dropped"),
    pytest.param('[["X-Ref", "\\u00e9 "], ["X-Tab", "\\t"]]', [("X-Ref", "é "), ("X-Tab", "\t")],
                 id="escapes-decoded-whitespace-kept"),
    pytest.param('"X-Ref: A"', [], id="a-string-is-no-headers"),
    pytest.param("null", [], id="null-is-no-headers"),
    pytest.param("[]", [], id="empty-list"),
    pytest.param("{}", [], id="empty-object"),
]


def _pairs(headers: list[dict[str, str]]) -> list[Header]:
    return [(h["name"], h["value"]) for h in headers]


@pytest.mark.parametrize(("captured", "expected"), HEADER_SHAPES)
def test_I3_wa_headers_every_shape(con: duckdb.DuckDBPyConnection, captured: str, expected: list[Header]) -> None:
    """The captured headers as JSON and as its text: names and values exactly as sent, in order."""
    as_json, as_text = con.execute("SELECT wa_headers(CAST(? AS JSON)), wa_headers(?)", [captured, captured]
                                   ).fetchone() or (None, None)
    assert _pairs(as_json) == expected
    assert _pairs(as_text) == expected


@pytest.mark.parametrize(("captured", "name", "expected"), [
    pytest.param('{"X-REF": "", "x-ref": " A ", "X-Ref": "B"}', "X-Ref", " A ", id="object-first-non-empty"),
    pytest.param('[["X-REF", ""], ["x-Ref", " A "], ["X-Ref", "B"]]', "X-Ref", " A ", id="pairs-first-non-empty"),
    pytest.param('[{"name": "x-ref", "value": "\\tA"}]', "X-REF", "\tA", id="objects-tab-kept"),
    pytest.param('{"X-Ref": ""}', "X-Ref", None, id="object-only-empty"),
    pytest.param('[["X-Refs", "A"], ["X_Ref", "B"]]', "X-Ref", None, id="pairs-name-must-equal"),
    pytest.param('[["ÄX", "A"]]', "äx", None, id="only-ascii-letters-fold"),
    pytest.param('{"ÄX": "A"}', "äx", None, id="object-only-ascii-letters-fold"),
])
def test_L4_captured_header_every_shape(con: duckdb.DuckDBPyConnection, captured: str, name: str,
                                        expected: str | None) -> None:
    """L4 as the replay reads it (``wa_captured_header``) and over the loader's list (``wa_header``)."""
    row = con.execute("SELECT wa_captured_header(CAST(? AS JSON), ?), wa_header(wa_headers(CAST(? AS JSON)), ?)",
                      [captured, name, captured, name]).fetchone()
    assert row == (expected, expected)


def _folder(tmp_path: Path) -> Path:
    """A dataset folder with webhooks and dispatches and no callbacks file yet."""
    folder = write_dataset(tmp_path / "ds", [{"webhook_id": "wh-a", "advertiser_id": "adv"}],
                           [{"lead_id": "L1", "conversion_id": "C1", "advertiser_id": "adv", "external_id": "",
                             "webhook_id": "wh-a", "created_at": "2026-11-20T10:00:00Z"}], [])
    (folder / "callbacks.jsonl").unlink()
    return folder


def _loaded_headers(folder: Path) -> list[list[Header]]:
    con = duckdb.connect()
    try:
        load_dataset(con, folder)
        return [_pairs(headers) for (headers,) in con.execute("SELECT headers FROM callbacks ORDER BY seq").fetchall()]
    finally:
        con.close()


def test_I3_jsonl_headers_every_shape_as_loaded(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    lines = [{"received_at": "2026-11-20T10:00:01Z", "url": "/webhooks/wh-a", "headers": headers} for headers in (
        {"X-Ref": " A ", "X-Empty": ""},
        [["X-Ref", " A "], ["X-Ref", "B\t"]],
        [{"name": "X-Ref", "value": " A "}, {"name": "X-Other", "value": ""}],
    )]
    (folder / "callbacks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert _loaded_headers(folder) == [
        [("X-Ref", " A "), ("X-Empty", "")],
        [("X-Ref", " A "), ("X-Ref", "B\t")],
        [("X-Ref", " A "), ("X-Other", "")],
    ]


def test_I4_har_headers_as_loaded(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    entry = {"startedDateTime": "2026-11-20T10:00:01Z",
             "request": {"method": "POST", "url": "https://h.example/webhooks/wh-a",
                         "headers": [{"name": "X-Ref", "value": " A "}, {"name": "x-ref", "value": "B"}]},
             "response": {"status": 404}}
    (folder / "callbacks.har").write_text(json.dumps({"log": {"entries": [entry]}}), encoding="utf-8")
    assert _loaded_headers(folder) == [[("X-Ref", " A "), ("x-ref", "B")]]


@pytest.mark.parametrize(("headers_sql", "expected"), [
    pytest.param("MAP {'X-Ref': ' A ', 'X-Empty': ''}", [("X-Ref", " A "), ("X-Empty", "")], id="map"),
    pytest.param("[{'name': 'X-Ref', 'value': ' A '}, {'name': 'X-Ref', 'value': 'B'}]",
                 [("X-Ref", " A "), ("X-Ref", "B")], id="list-of-structs"),
    pytest.param("""'[["X-Ref", " A "], ["X-Ref", "B"]]'""", [("X-Ref", " A "), ("X-Ref", "B")], id="json-text"),
])
def test_I5_parquet_headers_as_loaded(tmp_path: Path, headers_sql: str, expected: list[Header]) -> None:
    folder = _folder(tmp_path)
    writer = duckdb.connect()
    try:
        writer.execute(f"COPY (SELECT TIMESTAMPTZ '2026-11-20 10:00:01+00' AS received_at, '/webhooks/wh-a' AS url, "
                       f"{headers_sql} AS headers) TO '{folder / 'callbacks.parquet'}' (FORMAT parquet)")
    finally:
        writer.close()
    assert _loaded_headers(folder) == [expected]


# =========================================================================== timeouts (S4)

#: timeout_s → µs, half up on the decimal as written: every .5 below rounds up (half-even would
#: take 0.5, 2.5, 4.5, 10.5 µs and …0.5 down).
TIMEOUTS_US = [
    (0.0000005, 1), (0.0000015, 2), (0.0000025, 3), (0.0000035, 4), (0.0000045, 5), (0.0000105, 11),
    (1.0000005, 1_000_001), (2.0000025, 2_000_003), (3600.0000015, 3_600_000_002), (86400.0000005, 86_400_000_001),
    (0.0000004999, 0), (1e-07, 0), (0.000001, 1), (0.1, 100_000), (2.5, 2_500_000), (30, 30_000_000),
]


@pytest.mark.parametrize(("timeout_s", "timeout_us"), [pytest.param(s, us, id=f"{s!r}s") for s, us in TIMEOUTS_US])
def test_S4_seconds_to_us_half_up(timeout_s: float, timeout_us: int) -> None:
    assert seconds_to_us(timeout_s) == timeout_us


def test_S4_timeouts_as_loaded_and_as_a_what_if(tmp_path: Path) -> None:
    """From webhooks.json's text to the table the replay joins, and through --timeout's what-if."""
    entries = [{"webhook_id": f"wh-{i}", "advertiser_id": "adv", "wait": True, "timeout_s": s}
               for i, (s, _) in enumerate(TIMEOUTS_US)]
    folder = tmp_path / "ds"
    write_dataset(folder, entries, [], [])
    (folder / "webhooks.json").write_text(  # written as people write them, not as Python's repr
        json.dumps(entries).replace("5e-07", "0.0000005").replace("2.5e-06", "0.0000025"), encoding="utf-8")
    con = duckdb.connect()
    try:
        versions = load_dataset(con, folder).webhooks
        loaded = con.execute("SELECT timeout_us FROM webhook_versions ORDER BY version_no").fetchall()
    finally:
        con.close()
    assert [us for (us,) in loaded] == [us for _, us in TIMEOUTS_US]
    assert [v.timeout_us for v in versions.with_timeouts({None: 0.0000025}).versions] == [3] * len(TIMEOUTS_US)


# =========================================================================== locations (L)

@pytest.mark.parametrize(("text", "kind", "name", "path"), [
    pytest.param("query.pcid", LocationKind.QUERY, "pcid", ("pcid",), id="query"),
    pytest.param("query.a b", LocationKind.QUERY, "a b", ("a b",), id="query-name-with-space"),
    pytest.param("query.%41", LocationKind.QUERY, "%41", ("%41",), id="query-name-as-written"),
    pytest.param("form.lead.ref", LocationKind.FORM, "lead.ref", ("lead", "ref"), id="form-name-with-dot"),
    pytest.param("json.0", LocationKind.JSON, "0", ("0",), id="json-index-or-key"),
    pytest.param("json.data.items.10.id", LocationKind.JSON, "data.items.10.id", ("data", "items", "10", "id"),
                 id="json-deep-path"),
    pytest.param("header.X-Ref.v2", LocationKind.HEADER, "X-Ref.v2", ("X-Ref", "v2"), id="header-name-with-dot"),
    pytest.param("header.x-ref", LocationKind.HEADER, "x-ref", ("x-ref",), id="header-case-as-written"),
])
def test_L_parse_location_every_kind(text: str, kind: LocationKind, name: str, path: tuple[str, ...]) -> None:
    location = parse_location(text)
    assert (location.kind, location.name, location.path, str(location)) == (kind, name, path, text)


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("QUERY.pcid", "'QUERY.pcid' is not a location; write query.NAME, form.NAME, json.PATH or header.NAME",
                 id="kind-is-lower-case"),
    pytest.param(" query.pcid", "' query.pcid' is not a location; write query.NAME, form.NAME, json.PATH or "
                 "header.NAME", id="not-trimmed"),
    pytest.param("header.", "'header.' is not a location; write query.NAME, form.NAME, json.PATH or header.NAME",
                 id="header-without-name"),
    pytest.param("json..a", "'json..a' has an empty path segment; write json.a.b.0.c", id="json-leading-dot"),
    pytest.param(None, "a location must be a string like 'query.pcid', got None", id="null"),
])
def test_L_parse_location_rejects(text: Any, message: str) -> None:
    with pytest.raises(LocationError) as caught:
        parse_location(text)
    assert str(caught.value) == f"<settings>: {message}"


def test_L_locations_as_loaded_from_settings() -> None:
    version = parse_webhooks([{
        "webhook_id": "wh-a", "advertiser_id": "adv", "status_location": "header.X-Status",
        "interim_statuses": ["pending"],
        "pairing": [{"identifier": "conversion_id", "location": "json.data.ref"},
                    {"identifier": "external_id", "location": "form.ext"},
                    {"identifier": "conversion_id", "location": "query.ref"}],
    }]).versions[0]
    assert version.status_location == Location(LocationKind.HEADER, "X-Status")
    assert version.pairing_for("conversion_id") == (Location(LocationKind.JSON, "data.ref"),
                                                    Location(LocationKind.QUERY, "ref"))
    assert version.pairing_for("external_id") == (Location(LocationKind.FORM, "ext"),)
