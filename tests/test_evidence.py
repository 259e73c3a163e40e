"""Evidence for advertisers (issue 23, item 1; docs/analysis.md "Evidence"): every callback answered 404 as
captured, with its reason, hint and near-miss, and ``webhook-audit evidence`` writing it as CSV or XLSX."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner, Result

import webhook_core as wc
from webhook_core.analysis.evidence import EVIDENCE_COLUMNS, GENERAL_HINTS, evidence, evidence_summary
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.cli import cli
from webhook_core.cli.evidence_commands import SUMMARY_SHEET, TERMINAL_TITLE, sheet_names
from webhook_core.load.dataset import connect
from webhook_core.timeutil import human_duration

from datasets import write_dataset

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# wh-acme (advertiser acme) waits 30 s and reads interim statuses from query.status; wh-fastpay (bolt) waits
# 30 s; wh-old (bolt) was live only in the first half of 2026. L6's dispatch is quarantined (bad created_at).
WEBHOOKS = [
    {"webhook_id": "wh-acme", "advertiser_id": "acme", "wait": True, "timeout_s": 30,
     "status_location": "query.status", "interim_statuses": ["pending"]},
    {"webhook_id": "wh-fastpay", "advertiser_id": "bolt", "wait": True, "timeout_s": 30},
    {"webhook_id": "wh-old", "advertiser_id": "bolt", "active_from": "2026-01-01T00:00:00Z",
     "active_to": "2026-06-01T00:00:00Z"},
]


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-20T10:{minute:02d}:{second:02d}Z"


def lead(lead_id: str, pcid: str, webhook: str, advertiser: str, minute: int, **extra: Any) -> dict[str, Any]:
    return {"lead_id": lead_id, "conversion_id": pcid, "advertiser_id": advertiser, "external_id": None,
            "webhook_id": webhook, "created_at": at(minute), **extra}


def call(request_id: str, minute: int, second: int, url: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": request_id, "received_at": at(minute, second), "url": url, **extra}


LEADS = [lead("L1", "PC-1", "wh-acme", "acme", 0), lead("L2", "PC-2", "wh-acme", "acme", 1),
         lead("L3", "PC-3", "wh-acme", "acme", 20), lead("L4", "PC-123", "wh-acme", "acme", 2),
         lead("L5", "PC-5", "wh-fastpay", "bolt", 3), lead("L6", "PC-6", "wh-acme", "acme", 4, created_at="yesterday")]
CALLBACKS = [
    call("r-interim", 0, 5, "/webhooks/wh-acme?pcid=PC-1&status=pending"),
    call("r-match", 0, 10, "/webhooks/wh-acme?pcid=PC-1"),
    call("r-dup", 0, 20, "/webhooks/wh-acme?pcid=PC-1"),
    call("r-space", 2, 5, "/webhooks/wh-acme?pcid=PC-123%20"),
    call("r-ext", 2, 30, "/webhooks/wh-acme?external_id=E9"),
    call("r-wrong", 3, 10, "/webhooks/wh-acme?pcid=PC-5"),
    call("r-noid", 3, 30, "/webhooks/wh-acme", method="PUT", headers={"Content-Type": "application/json"},
         body='{"status": "sold"}'),
    call("r-nope", 4, 0, "https://api.example/webhooks/wh-nope?pcid=PC-1"),
    call("r-old", 4, 30, "/webhooks/wh-old?pcid=PC-1"),
    call("r-quar", 5, 0, "/webhooks/wh-acme?pcid=PC-6"),
    call("r-refused", 6, 0, "/other/path", refused=True, response_status=404),
    call("r-late", 13, 33, "/webhooks/wh-acme?pcid=PC-2"),
    call("r-early", 19, 55, "/webhooks/wh-acme?pcid=PC-3"),
]

NOT_FOUND_HINT = "send the pcid exactly as we sent it with the lead, to the webhook the lead came from"
#: (request_id, webhook_id, advertiser_id, outcome, lead_quarantined, reason, hint, near_miss), in the evidence's
#: order: advertiser, webhook, received_at; a token no webhook ever had last.
EXPECTED_404S = [
    ("r-dup", "wh-acme", "acme", "duplicate", False, "another callback had already finished this lead's wait",
     "the lead was already answered at 2026-11-20 10:00:10 UTC (request 'r-match'): send one final callback per lead",
     None),
    ("r-space", "wh-acme", "acme", "not_found", False, "no waiting webhook of wh-acme has pcid 'PC-123 '",
     NOT_FOUND_HINT, "your pcid is 'PC-123 ' with a trailing space: send it trimmed"),
    ("r-ext", "wh-acme", "acme", "not_found", False, "no waiting webhook of wh-acme has external ID 'E9' for "
     "advertiser 'acme'", "send the external ID exactly as in the lead we sent you, with your advertiser ID", None),
    ("r-wrong", "wh-acme", "acme", "wrong_webhook", False, "pcid 'PC-5' names lead 'L5' of wh-fastpay, not a lead of "
     "wh-acme", "the lead belongs to wh-fastpay: call /webhooks/wh-fastpay", None),
    ("r-noid", "wh-acme", "acme", "no_identifiers", False, "neither a pcid nor an external ID where wh-acme reads them",
     "no pcid: send pcid in the query string, or map your field with Lead ID pairing", None),
    ("r-quar", "wh-acme", "acme", "not_found", True, "no waiting webhook of wh-acme has pcid 'PC-6': its dispatch "
     "was quarantined when the data was loaded", "our side: the lead's dispatch was quarantined; not your fault", None),
    ("r-late", "wh-acme", "acme", "late", False, "arrived 12 min 3.0 s after the 30 s timeout",
     "call back within 30 s of receiving the lead (wh-acme's timeout)", None),
    ("r-early", "wh-acme", "acme", "early", False, "arrived 5.0 s before the lead was sent (2026-11-20 10:20:00 UTC)",
     "call back only after the lead reaches you: a callback before the lead was sent pairs with nothing (a reused "
     "pcid, or a clock that is off?)", None),
    ("r-old", "wh-old", "bolt", "unknown_token", False, "wh-old was not live at this time",
     "call a webhook that is live: wh-old was not at this time", None),
    ("r-nope", None, "(unknown)", "unknown_token", False, "no webhook has the token 'wh-nope'",
     GENERAL_HINTS["unknown_token"], None),
]
ROW_KEYS = ["request_id", "webhook_id", "advertiser_id", "outcome", "lead_quarantined", "reason", "hint", "near_miss"]


def rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    shown = frame[ROW_KEYS].astype(object).where(frame[ROW_KEYS].notna(), None)
    return list(shown.itertuples(index=False, name=None))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("evidence") / "dataset", WEBHOOKS, LEADS, CALLBACKS)


@pytest.fixture(scope="module")
def audit(folder: Path) -> Any:
    with wc.open_audit(folder) as opened:
        yield opened


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_404_with_its_reason_hint_and_near_miss(audit: wc.Audit) -> None:
    frame = evidence(audit)
    assert tuple(frame.columns) == EVIDENCE_COLUMNS
    assert rows(frame) == EXPECTED_404S
    # The request as captured: method, URL, headers as JSON text, the body untouched.
    noid = frame[frame.request_id == "r-noid"].iloc[0]
    assert (noid.method, noid.url, noid.headers, noid.body) == (
        "PUT", "/webhooks/wh-acme", '[{"name":"Content-Type","value":"application/json"}]', '{"status": "sold"}')
    assert noid.received_at == datetime(2026, 11, 20, 10, 3, 30, tzinfo=UTC)


def test_all_callbacks_adds_matched_interim_and_refused(audit: wc.Audit) -> None:
    frame = evidence(audit, all_callbacks=True)
    assert sorted(frame.request_id) == sorted(c["request_id"] for c in CALLBACKS)
    others = rows(frame[~frame.request_id.isin([r[0] for r in EXPECTED_404S])])
    assert others == [
        ("r-interim", "wh-acme", "acme", "interim", False, "an interim status: the lead keeps waiting", None, None),
        ("r-match", "wh-acme", "acme", "matched", False, "finished the lead's wait after 10.0 s", None, None),
        ("r-refused", None, "(unknown)", "refused", False, "not judged: the receiver answered it 404 before judging it",
         GENERAL_HINTS["refused"], None),
    ]
    # The 404s keep their rows and order among the others.
    assert rows(frame[frame.request_id.isin([r[0] for r in EXPECTED_404S])]) == EXPECTED_404S


@pytest.mark.parametrize(("timeout_s", "late_us", "timeout_text"), [
    pytest.param(30, 59_960_000, "30 s", id="rounds-up-to-a-minute"),
    pytest.param(0.5, 7_200_050_000, "0.5 s", id="hours-half-up"),
    pytest.param(3600, 450_000, "3,600 s", id="thousands"),
])
def test_late_durations_and_timeouts_in_words(tmp_path: Path, timeout_s: float, late_us: int,
                                              timeout_text: str) -> None:
    created = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    received = pd.Timestamp(created) + pd.Timedelta(seconds=timeout_s) + pd.Timedelta(microseconds=late_us)
    folder = write_dataset(tmp_path / "late", [{"webhook_id": "wh-t", "advertiser_id": "t", "wait": True,
                                                "timeout_s": timeout_s}],
                           [lead("T1", "PC-T", "wh-t", "t", 0)],
                           [{"request_id": "r", "received_at": received.isoformat(),
                             "url": "/webhooks/wh-t?pcid=PC-T"}])
    with wc.open_audit(folder) as opened:
        frame = evidence(opened)
    assert frame[["reason", "hint"]].values.tolist() == [[
        f"arrived {human_duration(late_us / 1e6)} after the {timeout_text} timeout",
        f"call back within {timeout_text} of receiving the lead (wh-t's timeout)"]]


NEAR_MISS_WEBHOOKS = [{"webhook_id": "wh-n", "advertiser_id": "n"}]
NEAR_MISS_LEADS = [lead("N1", "ABC-2", "wh-n", "n", 0), lead("N2", "C/1", "wh-n", "n", 0),
                   lead("N3", "0042X", "wh-n", "n", 0), lead("N4", "12345", "wh-n", "n", 0),
                   lead("N5", "R-5", "wh-n", "n", 0), lead("N6", "T-6", "wh-n", "n", 0)]
NEAR_MISS_CALLBACKS = [
    call("n1", 1, 0, "/webhooks/wh-n?pcid=abc-2"),
    call("n2", 1, 1, "/webhooks/wh-n?pcid=C%252F1"),
    call("n3", 1, 2, "/webhooks/wh-n?pcid=42X"),
    call("n4", 1, 3, "/webhooks/wh-n?pcid=12345.00"),
    call("n5", 1, 4, "/webhooks/wh-n", body='{"ref": "R-5"}'),
    call("n6", 1, 5, "/webhooks/wh-n?pcid=%20%20T-6"),
]


def test_each_near_miss_says_what_to_send(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "near", NEAR_MISS_WEBHOOKS, NEAR_MISS_LEADS, NEAR_MISS_CALLBACKS)
    with wc.open_audit(folder) as opened:
        frame = evidence(opened)
    assert frame[["request_id", "near_miss"]].values.tolist() == [
        ["n1", "your pcid is 'abc-2' where the lead's is 'ABC-2': send it in the same case"],
        ["n2", "your pcid is 'C%2F1', still URL-encoded: encode it once, so that it reads 'C/1'"],
        ["n3", "your pcid is '42X' where the lead's is '0042X': keep the leading zeros as we sent them"],
        ["n4", "your pcid is '12345.00', a number written differently from the lead's '12345': send it exactly as "
               "we sent it"],
        ["n5", "your pcid 'R-5' is in json.ref, which wh-n does not read: send it as pcid, or map json.ref with "
               "Lead ID pairing"],
        ["n6", "your pcid is '  T-6' with leading spaces: send it trimmed"],
    ]


def test_a_database_without_the_stored_owner_and_token_columns_gives_the_same_rows(audit: wc.Audit) -> None:
    expected = evidence(audit, all_callbacks=True)
    # As a database written before callback_outcomes stored them: the same facts from the lead and the settings.
    audit.con.execute("CREATE TEMP VIEW callback_outcomes AS SELECT * EXCLUDE (owner_webhook_id, token_webhook_id, "
                      "token_status) FROM memory.main.callback_outcomes")
    try:
        pd.testing.assert_frame_equal(evidence(audit, all_callbacks=True), expected)
    finally:
        audit.con.execute("DROP VIEW temp.callback_outcomes")


def test_an_audit_database_gives_the_same_rows(folder: Path, audit: wc.Audit, tmp_path: Path) -> None:
    database = tmp_path / "audit.duckdb"
    con = connect(str(database))
    try:
        wc.write_audit_database(con, folder)
    finally:
        con.close()
    with wc.open_audit(database) as stored:
        pd.testing.assert_frame_equal(evidence(stored, all_callbacks=True), evidence(audit, all_callbacks=True))


def test_filters_narrow_the_rows_not_their_reasons(folder: Path) -> None:
    with wc.open_audit(folder) as opened:
        since = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
        narrowed = apply_filters(opened, Filters(webhooks=("wh-acme",), since=since))
        # r-late's lead was created at 10:01, before the window: its deadline is still the whole audit's.
        assert rows(evidence(narrowed)) == [r for r in EXPECTED_404S if r[0] in ("r-quar", "r-late", "r-early")]
    # Whatever rows a filter keeps (filters.py decides), evidence lists exactly its 404s, reasons unchanged.
    with wc.open_audit(folder) as opened:
        narrowed = apply_filters(opened, Filters(advertisers=("bolt",)))
        kept = {r for (r,) in narrowed.con.execute(
            "SELECT request_id FROM callback_outcomes WHERE status_code = 404 AND outcome <> 'refused'").fetchall()}
        assert "r-old" in kept and "r-space" not in kept
        assert rows(evidence(narrowed)) == [r for r in EXPECTED_404S if r[0] in kept]


def hint_of(request_id: str) -> str:
    (hint,) = [r[6] for r in EXPECTED_404S if r[0] == request_id]
    return str(hint)


def test_summary_groups_by_advertiser_webhook_and_outcome(audit: wc.Audit) -> None:
    summary = evidence_summary(evidence(audit))
    assert list(summary.itertuples(index=False, name=None)) == [
        ("acme", "wh-acme", "early", False, 1, 0, hint_of("r-early")),
        ("acme", "wh-acme", "duplicate", False, 1, 0, hint_of("r-dup")),
        ("acme", "wh-acme", "late", False, 1, 0, hint_of("r-late")),
        ("acme", "wh-acme", "wrong_webhook", False, 1, 0, hint_of("r-wrong")),
        # r-space and r-ext have different hints: the outcome's general one.
        ("acme", "wh-acme", "not_found", False, 2, 1, GENERAL_HINTS["not_found"]),
        ("acme", "wh-acme", "not_found", True, 1, 0, hint_of("r-quar")),
        ("acme", "wh-acme", "no_identifiers", False, 1, 0, hint_of("r-noid")),
        ("bolt", "wh-old", "unknown_token", False, 1, 0, hint_of("r-old")),
        ("(unknown)", "", "unknown_token", False, 1, 0, GENERAL_HINTS["unknown_token"]),
    ]


def test_summary_hint_is_the_outcomes_general_one_when_rows_differ() -> None:
    frame = pd.DataFrame({"advertiser_id": ["a", "a"], "webhook_id": ["w", "w"], "outcome": ["wrong_webhook"] * 2,
                          "lead_quarantined": [False, False], "near_miss": [None, None],
                          "hint": ["the lead belongs to x: call /webhooks/x",
                                   "the lead belongs to y: call /webhooks/y"]})
    assert evidence_summary(frame).hint.tolist() == [GENERAL_HINTS["wrong_webhook"]]


# ------------------------------------------------------------------------------------------------ the command

def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def terminal_counts(output: str) -> list[tuple[str, ...]]:
    """The terminal table's rows, cells stripped."""
    text = ANSI.sub("", output)
    table = text[text.index(TERMINAL_TITLE):].split("└")[0]
    return [tuple(cell.strip() for cell in line.strip("│").split("│")) for line in table.splitlines()
            if line.startswith("│")]


@pytest.fixture(scope="module")
def csv_out(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("csv") / "evidence.csv"
    return out, run("evidence", folder, "--out", out, "--max-quarantined", "100%")


@pytest.fixture(scope="module")
def xlsx_out(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    out = tmp_path_factory.mktemp("xlsx") / "sub" / "evidence.xlsx"
    return out, run("evidence", folder, "--out", out, "--max-quarantined", "100%")


def test_csv_holds_the_rows_and_the_terminal_the_counts(csv_out: tuple[Path, Result], audit: wc.Audit) -> None:
    out, result = csv_out
    assert result.exit_code == 0, result.output
    written = read_csv(out)
    assert list(written[0]) == list(EVIDENCE_COLUMNS)
    frame = evidence(audit)
    assert [(r["request_id"], r["reason"], r["hint"], r["near_miss"], r["body"], r["headers"]) for r in written] == [
        (r.request_id, r.reason, r.hint, r.near_miss or "", r.body or "", r.headers) for r in frame.itertuples()]
    assert terminal_counts(result.output) == [
        ("acme", "early", "1", "0", "0"), ("acme", "duplicate", "1", "0", "0"), ("acme", "late", "1", "0", "0"),
        ("acme", "wrong_webhook", "1", "0", "0"), ("acme", "not_found", "3", "1", "1"),
        ("acme", "no_identifiers", "1", "0", "0"), ("bolt", "unknown_token", "1", "0", "0"),
        ("(unknown)", "unknown_token", "1", "0", "0")]
    assert f"wrote {out}" in result.output


def xlsx_rows(sheet: Any) -> list[dict[str, Any]]:
    values = list(sheet.iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def test_xlsx_summary_first_then_a_sheet_per_advertiser(xlsx_out: tuple[Path, Result],
                                                        csv_out: tuple[Path, Result]) -> None:
    out, result = xlsx_out
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == [SUMMARY_SHEET, "acme", "bolt", "(unknown)"]
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.b for cell in sheet[1])
        assert all(8 <= (sheet.column_dimensions[cell.column_letter].width or 0) <= 60 for cell in sheet[1])
    # The summary's counts are the CSV's rows counted.
    csv_rows = read_csv(csv_out[0])
    expected = Counter((r["advertiser_id"], r["webhook_id"], r["outcome"], r["lead_quarantined"]) for r in csv_rows)
    summary = xlsx_rows(book[SUMMARY_SHEET])
    assert {(s["advertiser_id"], s["webhook_id"] or "", s["outcome"], str(s["lead_quarantined"]).lower()):
            s["callbacks"] for s in summary} == expected
    assert sum(s["near_misses"] for s in summary) == sum(1 for r in csv_rows if r["near_miss"])
    # Each advertiser's sheet holds that advertiser's CSV rows, the same values.
    for advertiser in ("acme", "bolt", "(unknown)"):
        sheet = [{k: "" if v is None else v for k, v in row.items()} for row in xlsx_rows(book[advertiser])]
        mine = [r for r in csv_rows if r["advertiser_id"] == advertiser]
        assert len(sheet) == len(mine)
        for in_sheet, in_csv in zip(sheet, mine, strict=True):
            assert pd.Timestamp(in_sheet.pop("received_at"), tz=UTC) == pd.Timestamp(in_csv.pop("received_at"))
            assert str(in_sheet.pop("lead_quarantined")).lower() == in_csv.pop("lead_quarantined")
            assert in_sheet == in_csv


def test_xlsx_keeps_text_as_text(tmp_path: Path) -> None:
    """A formula-looking pcid stays text, leading zeros stay, and control characters XML cannot hold are
    written as \\xNN rather than failing the file."""
    folder = write_dataset(tmp_path / "hostile", [{"webhook_id": "wh-h", "advertiser_id": "h"}],
                           [lead("H1", "PC-H", "wh-h", "h", 0)],
                           [call("007", 1, 0, "/webhooks/wh-h?pcid=%3D1%2B1", body="=SUM(A1)\x01")])
    out = tmp_path / "h.xlsx"
    result = run("evidence", folder, "--out", out)
    assert result.exit_code == 0, result.output
    row = xlsx_rows(openpyxl.load_workbook(out)["h"])[0]
    assert (row["request_id"], row["url"], row["body"]) == ("007", "/webhooks/wh-h?pcid=%3D1%2B1", "=SUM(A1)\\x01")
    assert row["reason"] == "no waiting webhook of wh-h has pcid '=1+1'"
    sheet = openpyxl.load_workbook(out)["h"]
    assert {cell.data_type for cell in sheet[2] if cell.value is not None} <= {"s", "d", "b"}


def test_the_command_takes_the_analysis_options_and_filters(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.csv"
    result = run("evidence", folder, "--out", out, "--max-quarantined", "100%", "--all", "--webhook", "wh-acme",
                 "--until", "2026-11-20T10:05:00Z", "--observation-end", "2026-11-20T10:30:00Z")
    assert result.exit_code == 0, result.output
    with wc.open_audit(folder, observation_end=datetime(2026, 11, 20, 10, 30, tzinfo=UTC)) as opened:
        expected = evidence(apply_filters(opened, Filters(webhooks=("wh-acme",),
                                                          until=datetime(2026, 11, 20, 10, 5, tzinfo=UTC))),
                            all_callbacks=True)
    assert [r["request_id"] for r in read_csv(out)] == expected.request_id.tolist() == [
        "r-interim", "r-match", "r-dup", "r-space", "r-ext", "r-wrong", "r-noid"]
    help_text = run("evidence", "--help").output
    for option in ("--all", "--out", "--observation-end", "--max-quarantined", "--timestamp-format", "--advertiser",
                   "--webhook", "--since", "--until"):
        assert option in help_text


def test_no_404_writes_the_headers_only(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "clean", [{"webhook_id": "wh-c", "advertiser_id": "c"}],
                           [lead("C1", "PC-C", "wh-c", "c", 0)], [call("ok", 0, 1, "/webhooks/wh-c?pcid=PC-C")])
    for name in ("e.csv", "e.xlsx"):
        result = run("evidence", folder, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert "No callback was answered 404." in result.output
    assert read_csv(tmp_path / "e.csv") == []
    assert (tmp_path / "e.csv").read_text(encoding="utf-8").strip() == ",".join(EVIDENCE_COLUMNS)
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    assert book.sheetnames == [SUMMARY_SHEET]
    assert [cell.value for cell in book[SUMMARY_SHEET][1]] == ["advertiser_id", "webhook_id", "outcome",
                                                               "lead_quarantined", "callbacks", "near_misses", "hint"]


def test_a_wrong_out_extension_is_one_line_before_loading(tmp_path: Path) -> None:
    result = run("evidence", tmp_path / "no-such-folder", "--out", "e.txt")
    assert result.exit_code == 1
    assert result.output == "Error: e.txt: --out must end in .csv or .xlsx; give FILE.csv or FILE.xlsx\n"


def test_sheet_names_are_valid_and_unique() -> None:
    assert sheet_names(["a/b:c", "summary", "x" * 40, "X" * 40, "'quoted'", "Acme", "acme"]) == {
        "a/b:c": "a_b_c", "summary": "summary (2)", "x" * 40: "x" * 31, "X" * 40: "X" * 27 + " (2)",
        "'quoted'": "quoted", "Acme": "Acme", "acme": "acme (2)"}
