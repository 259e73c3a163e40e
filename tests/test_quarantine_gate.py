"""No silent quarantine (issue 22, item 5; docs/analysis.md "Quarantine"): the --max-quarantined stop, the
warnings under it, --timestamp-format for exports, and callbacks of quarantined dispatches flagged, not blamed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner, Result

import webhook_core as wc
from webhook_core.cli import cli
from webhook_core.exceptions import DatasetError, ReplayError
from webhook_core.live.receiver import Receiver, ReceiverConfig
from webhook_core.load.gate import load_warnings

from datasets import write_dataset

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WEBHOOKS = [{"webhook_id": "wh-a", "advertiser_id": "acme", "wait": True, "timeout_s": 60}]


def at(seconds: int) -> str:
    return f"2026-11-20T10:{seconds // 60:02d}:{seconds % 60:02d}Z"


def lead(n: int, created_at: str | None = None) -> dict[str, Any]:
    return {"lead_id": f"L{n}", "conversion_id": f"PC-{n}", "advertiser_id": "acme", "external_id": f"E{n}",
            "webhook_id": "wh-a", "created_at": created_at or at(n)}


def callback(n: int, pcid: str, seconds: int) -> dict[str, Any]:
    return {"request_id": f"r{n}", "received_at": at(seconds), "url": f"/webhooks/wh-a?pcid={pcid}"}


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def stderr_lines(result: Result) -> list[str]:
    return [line.rstrip() for line in ANSI.sub("", result.stderr).splitlines() if line.strip()]


@pytest.fixture
def one_bad_dispatch(tmp_path: Path) -> Path:
    """Ten leads, L3's created_at written the way a spreadsheet writes it: 1 of 10 rows quarantined (10%).

    r1 answers L1; r3 names L3, whose dispatch is quarantined; r9 names a conversion ID no dispatch has.
    """
    leads = [lead(n, "20/11/2026 10:00:03" if n == 3 else None) for n in range(1, 11)]
    callbacks = [callback(1, "PC-1", 20), callback(3, "PC-3", 21), callback(9, "PC-99", 22)]
    return write_dataset(tmp_path / "dataset", WEBHOOKS, leads, callbacks)


QUARANTINED_10 = ("1 of 10 rows quarantined (10.0%{over}); commonest reason: bad created_at: not an ISO 8601 "
                  "timestamp, e.g. line 3")
TIMESTAMP_HINT = ("; or read timestamps written another way (e.g. 02/11/2026 02:12:17) with --timestamp-format "
                  "'%d/%m/%Y %H:%M:%S'")


@pytest.mark.parametrize("command", ["replay", "summary", "wait-times", "timeouts", "pairing", "report"])
def test_a_share_over_the_default_limit_stops_every_command_in_one_line(
        one_bad_dispatch: Path, tmp_path: Path, command: str) -> None:
    out = {"replay": ("--out", tmp_path / "out"), "summary": (), "wait-times": ("--out", tmp_path / "km.csv"),
           "timeouts": ("--out", tmp_path / "t.csv"), "pairing": ("--out", tmp_path / "p.csv"),
           "report": ("--out", tmp_path / "report")}[command]
    result = invoke(command, one_bad_dispatch, *out)
    assert result.exit_code == 1, result.output
    assert stderr_lines(result)[-1] == (
        f"Error: {one_bad_dispatch / 'dispatches.jsonl'}: {QUARANTINED_10.format(over=', over --max-quarantined 1%')}"
        f"; figures from it would mislead: fix those rows{TIMESTAMP_HINT}; or judge the rest anyway with "
        "--max-quarantined 100%")
    assert "Traceback" not in result.output


def test_under_the_limit_the_share_is_a_warning(one_bad_dispatch: Path, tmp_path: Path) -> None:
    result = invoke("replay", one_bad_dispatch, "--out", tmp_path / "out", "--max-quarantined", "10%")
    assert result.exit_code == 0, result.output
    assert f"warning: dispatches.jsonl: {QUARANTINED_10.format(over='')}" in stderr_lines(result)


def test_an_audit_database_is_held_to_the_limit_of_the_command_reading_it(one_bad_dispatch: Path,
                                                                          tmp_path: Path) -> None:
    database = tmp_path / "audit.duckdb"
    assert invoke("replay", one_bad_dispatch, "--database", database, "--max-quarantined", "100%").exit_code == 0
    refused = invoke("summary", database)
    assert refused.exit_code == 1
    assert stderr_lines(refused)[-1].startswith(f"Error: {one_bad_dispatch.resolve() / 'dispatches.jsonl'}: "
                                                f"{QUARANTINED_10.format(over=', over --max-quarantined 1%')}")
    allowed = invoke("summary", database, "--max-quarantined", "100%")
    assert allowed.exit_code == 0, allowed.output
    assert f"warning: dispatches.jsonl: {QUARANTINED_10.format(over='')}" in stderr_lines(allowed)


@pytest.mark.parametrize("value", ["5", "150%", "lots"])
def test_max_quarantined_is_a_percentage(one_bad_dispatch: Path, tmp_path: Path, value: str) -> None:
    result = invoke("replay", one_bad_dispatch, "--out", tmp_path / "out", "--max-quarantined", value)
    assert result.exit_code == 2
    assert stderr_lines(result)[-1] == (f"Error: Invalid value for '--max-quarantined': {value!r} is not a "
                                        "percentage; write it like 1%, 0.5% or 100%")


def test_the_library_stops_only_when_asked(one_bad_dispatch: Path) -> None:
    con = wc.connect()
    loaded = wc.load_dataset(con, one_bad_dispatch)
    assert loaded.warnings == (f"dispatches.jsonl: {QUARANTINED_10.format(over='')}",)
    assert load_warnings(con) == loaded.warnings
    with pytest.raises(DatasetError, match=r"over --max-quarantined 5%"):
        wc.load_dataset(con, one_bad_dispatch, max_quarantined=0.05)


# --------------------------------------------------------------------------- flagged, not blamed


def test_callbacks_of_a_quarantined_dispatch_are_flagged_and_keep_their_outcome(one_bad_dispatch: Path) -> None:
    with wc.open_audit(one_bad_dispatch) as audit:
        rows = audit.con.execute(
            "SELECT request_id, outcome, lead_quarantined FROM callback_outcomes ORDER BY request_id").fetchall()
    assert rows == [("r1", "matched", False), ("r3", "not_found", True), ("r9", "not_found", False)]


def test_a_callback_naming_a_quarantined_dispatch_by_external_id_is_flagged(tmp_path: Path) -> None:
    leads = [lead(1), lead(2, "yesterday")]
    by_external = {"request_id": "r2", "received_at": at(30), "url": "/webhooks/wh-a?external_id=E2&advertiser_id=acme"}
    other_advertiser = {**by_external, "request_id": "r3",
                        "url": "/webhooks/wh-a?external_id=E2&advertiser_id=someone-else"}
    folder = write_dataset(tmp_path / "dataset", WEBHOOKS, leads, [by_external, other_advertiser])
    with wc.open_audit(folder) as audit:
        rows = audit.con.execute(
            "SELECT request_id, outcome, lead_quarantined FROM callback_outcomes ORDER BY request_id").fetchall()
    # M3: an external ID names a lead only together with the advertiser ID.
    assert rows == [("r2", "not_found", True), ("r3", "not_found", False)]


def test_the_flag_is_false_when_every_dispatch_loads(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "dataset", WEBHOOKS, [lead(1)], [callback(9, "PC-99", 22)])
    with wc.open_audit(folder) as audit:
        assert audit.con.execute("SELECT outcome, lead_quarantined FROM callback_outcomes").fetchall() == [
            ("not_found", False)]


def test_timeline_of_a_quarantined_lead_names_its_row(one_bad_dispatch: Path) -> None:
    result = invoke("timeline", one_bad_dispatch, "L3", "--max-quarantined", "100%")
    assert result.exit_code == 1
    assert stderr_lines(result)[-1] == (
        "Error: no lead with lead_id or conversion_id 'L3': its dispatch was quarantined, dispatches.jsonl line 3 "
        "(bad created_at: not an ISO 8601 timestamp); its callbacks are not_found for that reason (flagged "
        "lead_quarantined): fix the row and replay")
    with wc.open_audit(one_bad_dispatch) as audit, pytest.raises(
            ReplayError, match=r"no lead with lead_id or conversion_id 'L77'$"):
        wc.lead_timeline(audit, "L77")


# --------------------------------------------------------------------------- --timestamp-format


def test_an_exports_timestamps_read_with_timestamp_format_equal_the_iso_ones(tmp_path: Path) -> None:
    callbacks = [callback(1, "PC-1", 20), callback(2, "PC-2", 90)]
    iso = write_dataset(tmp_path / "iso", WEBHOOKS, [lead(1), lead(2)], callbacks)
    exported = write_dataset(tmp_path / "export", WEBHOOKS,
                             [lead(n, f"20/11/2026 10:00:{n:02d}") for n in (1, 2)], callbacks)
    result = invoke("replay", exported, "--out", tmp_path / "out-export", "--timestamp-format", "%d/%m/%Y %H:%M:%S")
    assert result.exit_code == 0, result.output
    # Written without a zone: read as UTC, and said so.
    assert "warning: dispatches.jsonl: 2 timestamps name no zone (no Z, no +hh:mm); read as UTC" \
        in stderr_lines(result)
    assert invoke("replay", iso, "--out", tmp_path / "out-iso").exit_code == 0
    for name in ("callback_outcomes.parquet", "lead_outcomes.parquet"):
        query = f"SELECT * FROM read_parquet('{tmp_path}/out-{{}}/{name}')"
        assert duckdb.sql(query.format("export")).fetchall() == duckdb.sql(query.format("iso")).fetchall()


def test_a_timestamp_format_duckdb_does_not_read_is_a_usage_error(one_bad_dispatch: Path, tmp_path: Path) -> None:
    result = invoke("replay", one_bad_dispatch, "--out", tmp_path / "out", "--timestamp-format", "%Q")
    assert result.exit_code == 2
    assert stderr_lines(result)[-1] == ("Error: Invalid value for '--timestamp-format': '%Q' is not a strptime format "
                                        "DuckDB reads; write it like %d/%m/%Y %H:%M:%S")


def test_timestamp_format_on_an_audit_database_is_one_line(one_bad_dispatch: Path, tmp_path: Path) -> None:
    database = tmp_path / "audit.duckdb"
    assert invoke("replay", one_bad_dispatch, "--database", database, "--max-quarantined", "100%").exit_code == 0
    result = invoke("summary", database, "--timestamp-format", "%d/%m/%Y %H:%M:%S", "--max-quarantined", "100%")
    assert result.exit_code == 1
    assert stderr_lines(result)[-1] == (f"Error: {database}: an audit database was loaded already; "
                                        "--timestamp-format applies to a dataset folder (replay it again with the "
                                        "format)")


def test_summary_counts_the_flagged_callbacks_apart(one_bad_dispatch: Path, tmp_path: Path) -> None:
    result = invoke("summary", one_bad_dispatch, "--max-quarantined", "100%", "--out", tmp_path / "rates.csv")
    assert result.exit_code == 0, result.output
    assert ("wh-a: 1 not_found callbacks name a dispatch the load quarantined (flagged lead_quarantined): fix "
            "those rows before blaming the advertiser") in [line.strip() for line in result.stdout.splitlines()]
    written = duckdb.sql(f"SELECT webhook_id, \"404_not_found\", lead_quarantined FROM '{tmp_path}/rates.csv' "
                         "ORDER BY webhook_id").fetchall()
    assert written == [("(all)", 2, 1), ("wh-a", 2, 1)]


def test_serve_is_held_to_the_limit_on_its_dispatches_only(one_bad_dispatch: Path, tmp_path: Path) -> None:
    """serve answers from the dispatches: a quarantined one is a lead it would answer 404 for."""
    refused = invoke("serve", one_bad_dispatch, "--port", "0", "--capture-dir", tmp_path / "capture")
    assert refused.exit_code == 1
    assert stderr_lines(refused)[-1].startswith(
        f"Error: {one_bad_dispatch / 'dispatches.jsonl'}: "
        f"{QUARANTINED_10.format(over=', over --max-quarantined 1%')}")
    # The callbacks file is history serve never reads: all of it quarantined stops nothing.
    (one_bad_dispatch / "dispatches.jsonl").write_text(
        "\n".join(json.dumps(lead(n)) for n in range(1, 11)) + "\n", encoding="utf-8")
    (one_bad_dispatch / "callbacks.jsonl").write_text("not json\n" * 5, encoding="utf-8")
    config = ReceiverConfig(max_quarantined=0.01)
    receiver, report = Receiver.open(one_bad_dispatch, tmp_path / "capture2", config)
    receiver.close()
    assert report.dispatches == 10
