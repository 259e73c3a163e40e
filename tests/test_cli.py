"""The ``webhook-audit`` command line: ``replay`` end to end, its outputs and its errors.

Most tests drive ``webhook_core.cli.cli`` in-process with click's ``CliRunner``; a few run
the real entry point in a subprocess (``python -m webhook_core.cli``, which is what the
``webhook-audit`` script calls). Output files are re-read with DuckDB and compared exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import webhook_core.cli.replay_commands as replay_commands
from webhook_core import CALLBACK_COLUMNS, LEAD_COLUMNS, ReplayError, connect, load_dataset, parse_webhooks, replay
from webhook_core.cli import cli

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOT_FOUND = '{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

WEBHOOKS = [
    {"webhook_id": "wh-a", "advertiser_id": "A", "wait": True, "timeout_s": 30},  # waits, 30 s timeout
    {"webhook_id": "wh-b", "advertiser_id": "B", "wait": True},                   # waits, no timeout
    {"webhook_id": "wh-n", "advertiser_id": "N"},                                 # does not wait
]


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _dispatch(n: int, webhook: str, advertiser: str, external: str = "") -> dict[str, Any]:
    return {"lead_id": f"L{n}", "conversion_id": f"C{n}", "advertiser_id": advertiser, "external_id": external,
            "webhook_id": webhook, "created_at": "2026-11-20T10:00:00Z"}


def _callback(name: str, seconds: int, url: str, **fields: Any) -> dict[str, Any]:
    return {"request_id": name, "received_at": f"2026-11-20T10:00:{seconds:02d}Z", "url": url, **fields}


#: The dataset's line 7 is quarantined on purpose (1 of 7 rows, over the default --max-quarantined 1%):
#: the tests of anything else judge the six that load.
ITS_BAD_LINE = ("--max-quarantined", "100%")

DISPATCH_LINES = [
    json.dumps(_dispatch(1, "wh-a", "A", "E1")),
    json.dumps(_dispatch(2, "wh-a", "A")),
    json.dumps(_dispatch(3, "wh-b", "B")),
    json.dumps(_dispatch(4, "wh-n", "N")),
    json.dumps(_dispatch(5, "wh-a", "A")),  # never called back
    json.dumps(_dispatch(6, "wh-b", "B")),  # never called back
    "not json",                              # line 7: quarantined
]
CALLBACK_LINES = [
    json.dumps(_callback("r1", 4, "/webhooks/wh-a?pcid=C1", response_status=200, response_body='{"status":"ok"}')),
    json.dumps(_callback("r2", 6, "/webhooks/wh-a?pcid=C1")),
    json.dumps(_callback("r3", 8, "/webhooks/wh-b?pcid=C3")),
    json.dumps(_callback("r4", 20, "/webhooks/wh-a?pcid=C2")),
    json.dumps(_callback("r5", 50, "https://hooks.example.com/webhooks/wh-zzz?pcid=C2")),
    json.dumps(_callback("r6", 7, "/webhooks/wh-n", body="pcid=C4")),
    '{"url": "/webhooks/wh-a"}',  # line 7: quarantined
    json.dumps(_callback("r8", 9, "/webhooks/wh-a?external_id=E1")),
    json.dumps(_callback("r9", 10, "/webhooks/wh-a", body='{"pcid": "C3"}', response_status=404,
                         response_body=NOT_FOUND)),
]

LOAD_REPORT_LINES = [
    "dispatches.jsonl: read 7 = loaded 6 + quarantined 1",
    "callbacks.jsonl: read 9 = loaded 8 + quarantined 1",
]

# callback_outcomes in judging order (received_at, then line), default settings.
CALLBACKS_DEFAULT = [
    ("r1", t(4), "wh-a", "C1", None, "A", "conversion_id", "L1", "matched", 200, 4.0, 200, 1, "wh-a"),
    ("r2", t(6), "wh-a", "C1", None, "A", "conversion_id", "L1", "duplicate", 404, 6.0, None, 2, "wh-a"),
    ("r6", t(7), "wh-n", "C4", None, "N", "conversion_id", "L4", "matched", 200, 7.0, None, 6, "wh-n"),
    ("r3", t(8), "wh-b", "C3", None, "B", "conversion_id", "L3", "matched", 200, 8.0, None, 3, "wh-b"),
    ("r8", t(9), "wh-a", None, "E1", "A", "external_id", "L1", "duplicate", 404, 9.0, None, 8, "wh-a"),
    ("r9", t(10), "wh-a", "C3", None, "A", None, "L3", "wrong_webhook", 404, None, 404, 9, "wh-a"),
    ("r4", t(20), "wh-a", "C2", None, "A", "conversion_id", "L2", "matched", 200, 20.0, None, 4, "wh-a"),
    ("r5", t(50), None, None, None, None, None, None, "unknown_token", 404, None, None, 5, "wh-zzz"),
]

# lead_outcomes in dispatch order, default observation end (10:00:50, the latest timestamp).
LEADS_DEFAULT = [
    ("L1", "wh-a", T0, "received", t(4), 4.0, 3, 4.0, "C1", t(30)),
    ("L2", "wh-a", T0, "received", t(20), 20.0, 1, 20.0, "C2", t(30)),
    ("L3", "wh-b", T0, "received", t(8), 8.0, 1, 8.0, "C3", None),
    ("L4", "wh-n", T0, "received", t(7), 7.0, 1, 7.0, "C4", None),
    ("L5", "wh-a", T0, "timed_out", None, None, 0, None, "C5", t(30)),
    ("L6", "wh-b", T0, "waiting", None, None, 0, None, "C6", None),
]

QUARANTINE = [
    ("callbacks.jsonl", 7, '{"url": "/webhooks/wh-a"}', "missing received_at"),
    ("dispatches.jsonl", 7, "not json", "not valid JSON"),
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def audit_dataset(tmp_path: Path) -> Path:
    """The small hand-built dataset above (overrides nothing from conftest)."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "webhooks.json").write_text(json.dumps(WEBHOOKS), encoding="utf-8")
    (folder / "dispatches.jsonl").write_text("\n".join(DISPATCH_LINES) + "\n", encoding="utf-8")
    (folder / "callbacks.jsonl").write_text("\n".join(CALLBACK_LINES) + "\n", encoding="utf-8")
    return folder


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def lines(text: str) -> list[str]:
    """Non-empty lines, without terminal escape codes (in case FORCE_COLOR is set)."""
    return [line.rstrip() for line in ANSI.sub("", text).splitlines() if line.strip()]


def read_output(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        return con.execute(f"SELECT * FROM {reader}('{path}')").fetchall()
    finally:
        con.close()


def output_columns(path: Path) -> list[str]:
    con = duckdb.connect()
    try:
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}('{path}')").fetchall()]
    finally:
        con.close()


def outcomes(out: Path, file_format: str = "parquet") -> dict[str, str]:
    return {row[0]: row[8] for row in read_output(out / f"callback_outcomes.{file_format}")}


def states(out: Path, file_format: str = "parquet") -> dict[str, str]:
    return {row[0]: row[3] for row in read_output(out / f"lead_outcomes.{file_format}")}


def assert_user_error(result: Result, message: str, *, stdout: str = "") -> None:
    """Exit code 1 and exactly one line on stderr, ``Error: message``; no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert lines(result.stderr) == [f"Error: {message}"]
    assert "Traceback" not in result.output
    assert result.stdout == stdout


def assert_usage_error(result: Result, message: str) -> None:
    """Click's usage error: exit code 2, usage hint, and the one ``Error:`` line last."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    err = lines(result.stderr)
    assert err[0].startswith("Usage: ")
    assert err[-1] == f"Error: {message}"
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- --help


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_group_help(flag: str) -> None:
    result = invoke(flag)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    assert "Audit advertiser webhook callbacks" in result.stdout
    assert re.search(r"^\s+replay\s+Replay DATASET", result.stdout, re.MULTILINE)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_replay_help(flag: str) -> None:
    result = invoke("replay", flag)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: cli replay [OPTIONS] DATASET")
    for option in ("--out", "--format [parquet|csv]", "--parquet-version [1|2]", "--timeout [WEBHOOK_ID=]SECONDS",
                   "--observation-end TIMESTAMP", "--database", "--memory-limit", "--temp-dir"):
        assert option in result.stdout


# --------------------------------------------------------------------------- replay outputs


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_replay_writes_exact_outputs(audit_dataset: Path, tmp_path: Path, file_format: str) -> None:
    out = tmp_path / "out" / "nested"
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--format", file_format)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{name}.{file_format}" for name in ("callback_outcomes", "lead_outcomes", "quarantine", "load_report"))

    assert output_columns(out / f"callback_outcomes.{file_format}") == list(CALLBACK_COLUMNS)
    assert output_columns(out / f"lead_outcomes.{file_format}") == list(LEAD_COLUMNS)
    assert output_columns(out / f"quarantine.{file_format}") == ["source_file", "line", "raw", "reason"]
    assert read_output(out / f"callback_outcomes.{file_format}") == CALLBACKS_DEFAULT
    assert read_output(out / f"lead_outcomes.{file_format}") == LEADS_DEFAULT
    assert read_output(out / f"quarantine.{file_format}") == QUARANTINE

    printed = lines(result.stdout)
    assert printed[:2] == LOAD_REPORT_LINES
    assert "Lead states as of 2026-11-20T10:00:50+00:00:" in printed
    assert printed[-4:] == [f"wrote {out / name}.{file_format}"
                            for name in ("callback_outcomes", "lead_outcomes", "quarantine", "load_report")]


@pytest.mark.parametrize(("options", "format_version", "encoding"), [
    pytest.param((), "2.6", "DELTA_BINARY_PACKED", id="default-version-2"),
    pytest.param(("--parquet-version", "1"), "1.0", "PLAIN", id="version-1-for-old-readers"),
])
def test_parquet_version(audit_dataset: Path, tmp_path: Path, options: tuple[str, ...], format_version: str,
                         encoding: str) -> None:
    out = tmp_path / "out"
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, *options).exit_code == 0
    for name in ("callback_outcomes", "lead_outcomes", "quarantine", "load_report"):
        metadata = pq.ParquetFile(out / f"{name}.parquet").metadata
        assert metadata.format_version == format_version
    seq = pq.ParquetFile(out / "callback_outcomes.parquet").metadata.row_group(0).column(CALLBACK_COLUMNS.index("seq"))
    assert encoding in seq.encodings
    # pyarrow (pandas' reader) reads either the same
    by_pyarrow = [tuple(row.values()) for row in pq.read_table(out / "callback_outcomes.parquet").to_pylist()]
    assert by_pyarrow == read_output(out / "callback_outcomes.parquet") == CALLBACKS_DEFAULT


def test_csv_output_header_and_text(audit_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--format", "csv").exit_code == 0
    text = (out / "callback_outcomes.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == ",".join(CALLBACK_COLUMNS)
    assert text[1] == "r1,2026-11-20 10:00:04+00,wh-a,C1,,A,conversion_id,L1,matched,200,4.0,200,1,wh-a"
    assert (out / "lead_outcomes.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(LEAD_COLUMNS)


def test_outcome_table_is_printed(audit_dataset: Path, tmp_path: Path) -> None:
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out")
    printed = lines(result.stdout)
    assert "Outcomes per webhook" in printed
    row = next(line for line in printed if "wh-a" in line and "│" in line and line.count("│") > 5)
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    # webhook_id, callbacks, matched, interim, early, duplicate, late, wrong_webhook, not_found, ...
    assert cells[:9] == ["wh-a", "5", "2", "0", "0", "2", "0", "1", "0"]


def test_every_output_named_in_help_is_written(audit_dataset: Path, tmp_path: Path) -> None:
    help_text = " ".join(invoke("replay", "--help").stdout.split())
    named = re.search(r"--out PATH Folder for (.*?)\.", help_text)
    assert named is not None
    names = [n.strip() for n in re.split(r",| and ", named.group(1)) if n.strip()]
    out = tmp_path / "out"
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out).exit_code == 0
    assert sorted(p.stem for p in out.iterdir()) == sorted(names)


# --------------------------------------------------------------------------- what-ifs


def test_global_timeout_makes_slow_callbacks_late(audit_dataset: Path, tmp_path: Path) -> None:
    """--timeout 5 applies to every webhook that waits (wh-a and wh-b), not to wh-n."""
    out = tmp_path / "out"
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert outcomes(out) == {"r1": "matched", "r2": "duplicate", "r6": "matched", "r3": "late", "r8": "duplicate",
                             "r9": "wrong_webhook", "r4": "late", "r5": "unknown_token"}
    assert states(out) == {"L1": "received", "L2": "timed_out", "L3": "timed_out", "L4": "received",
                           "L5": "timed_out", "L6": "timed_out"}
    deadlines = {row[0]: row[9] for row in read_output(out / "lead_outcomes.parquet")}
    assert deadlines == {"L1": t(5), "L2": t(5), "L3": t(5), "L4": None, "L5": t(5), "L6": t(5)}


def test_per_webhook_timeout(audit_dataset: Path, tmp_path: Path) -> None:
    """--timeout wh-a=5 changes wh-a only; wh-b keeps waiting without a timeout."""
    out = tmp_path / "out"
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--timeout", "wh-a=5")
    assert result.exit_code == 0, result.output
    assert outcomes(out) == {"r1": "matched", "r2": "duplicate", "r6": "matched", "r3": "matched", "r8": "duplicate",
                             "r9": "wrong_webhook", "r4": "late", "r5": "unknown_token"}
    assert states(out) == {"L1": "received", "L2": "timed_out", "L3": "received", "L4": "received",
                           "L5": "timed_out", "L6": "waiting"}


def test_per_webhook_timeout_wins_over_global(audit_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--timeout", "5", "--timeout", "wh-a=30")
    assert result.exit_code == 0, result.output
    got = outcomes(out)
    assert (got["r4"], got["r3"]) == ("matched", "late")


def test_timeout_at_the_deadline_is_in_time(audit_dataset: Path, tmp_path: Path) -> None:
    """M5.3: the deadline itself is in time (r1 arrives 4 s after creation)."""
    out = tmp_path / "out"
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--timeout", "wh-a=4").exit_code == 0
    assert outcomes(out)["r1"] == "matched"
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--timeout", "wh-a=3.999999").exit_code == 0
    assert outcomes(out)["r1"] == "late"


@pytest.mark.parametrize(("end", "printed", "expected"), [
    pytest.param("2026-11-20T10:00:05Z", "2026-11-20T10:00:05+00:00",
                 {"L1": "received", "L2": "waiting", "L3": "waiting", "L4": "waiting", "L5": "waiting",
                  "L6": "waiting"}, id="early"),
    pytest.param("2026-11-20T10:00:30Z", "2026-11-20T10:00:30+00:00",
                 {"L1": "received", "L2": "received", "L3": "received", "L4": "received", "L5": "waiting",
                  "L6": "waiting"}, id="at-the-deadline"),
    pytest.param("2026-11-20T10:00:31Z", "2026-11-20T10:00:31+00:00",
                 {"L1": "received", "L2": "received", "L3": "received", "L4": "received", "L5": "timed_out",
                  "L6": "waiting"}, id="past-the-deadline"),
    pytest.param("2026-11-20T11:00:31+01:00", "2026-11-20T10:00:31+00:00",
                 {"L1": "received", "L2": "received", "L3": "received", "L4": "received", "L5": "timed_out",
                  "L6": "waiting"}, id="with-offset"),
    pytest.param("2026-11-20T10:00:05", "2026-11-20T10:00:05+00:00",
                 {"L1": "received", "L2": "waiting", "L3": "waiting", "L4": "waiting", "L5": "waiting",
                  "L6": "waiting"}, id="naive-is-utc"),
])
def test_observation_end_changes_lead_states(audit_dataset: Path, tmp_path: Path, end: str, printed: str,
                                             expected: dict[str, str]) -> None:
    out = tmp_path / "out"
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--observation-end", end)
    assert result.exit_code == 0, result.output
    assert f"Lead states as of {printed}:" in lines(result.stdout)
    assert states(out) == expected
    # Callback outcomes do not depend on the observation end.
    assert read_output(out / "callback_outcomes.parquet") == CALLBACKS_DEFAULT


def test_observation_end_limits_callback_counts(audit_dataset: Path, tmp_path: Path) -> None:
    """W4: only callbacks at or before the observation end count."""
    out = tmp_path / "out"
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", out,
                  "--observation-end", "2026-11-20T10:00:06Z").exit_code == 0
    leads = {row[0]: row for row in read_output(out / "lead_outcomes.parquet")}
    assert leads["L1"] == ("L1", "wh-a", T0, "received", t(4), 4.0, 2, 4.0, "C1", t(30))
    assert leads["L3"] == ("L3", "wh-b", T0, "waiting", None, None, 0, None, "C3", None)


# --------------------------------------------------------------------------- errors


def test_missing_dataset(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    result = invoke("replay", missing, "--out", tmp_path / "out")
    assert_user_error(result, f"{missing}: not a folder; a dataset is a folder with webhooks.json, "
                              "dispatches.* and callbacks.*")
    assert not (tmp_path / "out").exists()


def test_replay_needs_out_or_database(audit_dataset: Path) -> None:
    assert_usage_error(invoke("replay", audit_dataset), "give --out DIR for the outcome files, --database FILE for "
                                                         "an audit database, or both")


def test_replay_database_alone_writes_the_audit_database_and_no_files(audit_dataset: Path, tmp_path: Path) -> None:
    database = tmp_path / "audit.duckdb"
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--database", database)
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[-1] == f"wrote {database}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.duckdb", "dataset"]
    assert invoke("summary", database, *ITS_BAD_LINE).exit_code == 0


def test_analysis_command_on_a_missing_path_names_both_things_it_takes(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert_user_error(invoke("summary", missing),
                      f"{missing}: no such folder or file; give a dataset folder (webhooks.json, dispatches.*, "
                      "callbacks.*) or an audit database (webhook-audit replay DATASET --database FILE)")


def test_missing_webhooks_json(audit_dataset: Path, tmp_path: Path) -> None:
    (audit_dataset / "webhooks.json").unlink()
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out", "--timeout", "wh-a=5")
    assert_user_error(result, f"{audit_dataset / 'webhooks.json'}: file not found; a dataset needs webhooks.json")


def test_invalid_webhooks_json(audit_dataset: Path, tmp_path: Path) -> None:
    (audit_dataset / "webhooks.json").write_text('[{"webhook_id": "wh-a", "advertiser_id": "A"},\n  {oops}]')
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out")
    assert_user_error(result, f"{audit_dataset / 'webhooks.json'}: not valid JSON: Expecting property name enclosed in "
                              "double quotes at line 2 column 4")


def test_webhooks_json_breaking_the_settings_rules(audit_dataset: Path, tmp_path: Path) -> None:
    (audit_dataset / "webhooks.json").write_text(json.dumps([{"webhook_id": "wh-a", "advertiser_id": "A",
                                                        "timeout_s": 30}]))
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out")
    assert_user_error(result, f"{audit_dataset / 'webhooks.json'}: webhook 'wh-a' (entry 1): field 'timeout_s': only "
                              'allowed when wait is true; set "wait": true or remove timeout_s')


def test_two_dispatch_files(audit_dataset: Path, tmp_path: Path) -> None:
    (audit_dataset / "dispatches.csv").write_text("lead_id\n")
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out")
    assert_user_error(result, f"{audit_dataset}: several dispatches files (dispatches.csv, dispatches.jsonl); keep one")


def test_timeout_for_unknown_webhook(audit_dataset: Path, tmp_path: Path) -> None:
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out", "--timeout", "wh-x=5")
    assert_user_error(result, "--timeout: webhook 'wh-x': no webhook with this ID; known: wh-a, wh-b, wh-n")
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(audit_dataset: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    # Found before the (possibly long) load.
    assert_user_error(invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", target),
                      f"{target}: --out must be a folder, and this is a file")


# A required file of which no row loads: one line naming it, never a "successful" run judging
# every callback not_found or every lead waiting.

#: Every command that loads a dataset to judge it, with what it needs besides DATASET.
LOADING_COMMANDS = [
    ("replay", "--out", "{out}"),
    ("summary",),
    ("wait-times", "--out", "{out}.csv"),
    ("timeouts", "--out", "{out}.csv"),
    ("pairing", "--out", "{out}.csv"),
    ("timeline", "{dataset}", "L1"),
    ("replay-http", "--target", "http://127.0.0.1:9", "--out", "{out}"),
]


def _run_loading(command: tuple[str, ...], dataset: Path, out: Path) -> Result:
    args = [a.format(out=out, dataset=dataset) for a in command]
    return invoke(args[0], *([] if "{dataset}" in command else [dataset]), *args[1:])


def _bad_created_at(line: str) -> str:
    row = json.loads(line)
    return json.dumps({**row, "created_at": "11/02/2026 02:12:17"})


@pytest.mark.parametrize("command", LOADING_COMMANDS, ids=[c[0] for c in LOADING_COMMANDS])
def test_every_row_of_dispatches_quarantined_is_an_error(audit_dataset: Path, tmp_path: Path,
                                                         command: tuple[str, ...]) -> None:
    rows = [_bad_created_at(line) for line in DISPATCH_LINES[:-1]] + DISPATCH_LINES[-1:]  # 6 bad dates, 1 not JSON
    (audit_dataset / "dispatches.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert_user_error(_run_loading(command, audit_dataset, tmp_path / "out"),
                      f"{audit_dataset / 'dispatches.jsonl'}: 0 of 7 rows loaded (7 quarantined; commonest reason: "
                      "bad created_at: not an ISO 8601 timestamp, e.g. line 1); fix those rows or webhooks.json "
                      "(docs/semantics.md, Q3); or read timestamps written another way (e.g. 02/11/2026 02:12:17) "
                      "with --timestamp-format '%d/%m/%Y %H:%M:%S'")
    assert not (tmp_path / "out").exists()


def test_a_header_only_dispatches_file_is_an_error(audit_dataset: Path, tmp_path: Path) -> None:
    (audit_dataset / "dispatches.jsonl").unlink()
    (audit_dataset / "dispatches.csv").write_text("lead_id,conversion_id,advertiser_id,external_id,webhook_id,"
                                                  "created_at\n", encoding="utf-8")
    assert_user_error(invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out"),
                      f"{audit_dataset / 'dispatches.csv'}: 0 rows: the file has no dispatches; add one row per "
                      "waiting webhook")


def test_every_callback_quarantined_is_an_error(audit_dataset: Path, tmp_path: Path) -> None:
    bad = ['{"url": "/webhooks/wh-a"}', "not json", '{"url": "/webhooks/wh-b?pcid=C3"}']
    (audit_dataset / "callbacks.jsonl").write_text("\n".join(bad) + "\n", encoding="utf-8")
    assert_user_error(invoke("summary", audit_dataset),
                      f"{audit_dataset / 'callbacks.jsonl'}: 0 of 3 rows loaded (3 quarantined; commonest reason: "
                      "missing received_at, e.g. line 1); fix those rows (docs/semantics.md, Q2)")


@pytest.mark.parametrize("command", LOADING_COMMANDS, ids=[c[0] for c in LOADING_COMMANDS])
def test_an_empty_callbacks_file_is_an_error(audit_dataset: Path, tmp_path: Path, command: tuple[str, ...]) -> None:
    (audit_dataset / "callbacks.jsonl").write_text("\n\n", encoding="utf-8")  # blank lines are not rows (Q4)
    assert_user_error(_run_loading(command, audit_dataset, tmp_path / "out"),
                      f"{audit_dataset / 'callbacks.jsonl'}: 0 rows: the file has no callbacks; add the captured "
                      "requests (docs/semantics.md, I3-I5)")


def test_serve_needs_dispatches_but_not_callbacks(audit_dataset: Path, tmp_path: Path) -> None:
    """The receiver never reads the dataset's callbacks; with the admin endpoint on, leads may all come
    by registration, but a dispatches file whose every row was quarantined is still a mistake."""
    from webhook_core.exceptions import DatasetError
    from webhook_core.live.receiver import Receiver, ReceiverConfig

    (audit_dataset / "callbacks.jsonl").write_text("", encoding="utf-8")
    receiver, report = Receiver.open(audit_dataset, tmp_path / "cap1", ReceiverConfig())
    receiver.close()
    assert report.dispatches == 6
    (audit_dataset / "dispatches.jsonl").write_text("", encoding="utf-8")
    receiver, report = Receiver.open(audit_dataset, tmp_path / "cap2", ReceiverConfig(admin_token="secret"))
    receiver.close()
    assert report.dispatches == 0
    empty = f"{audit_dataset / 'dispatches.jsonl'}: 0 rows: the file has no dispatches; add one row per waiting webhook"
    with pytest.raises(DatasetError) as caught:
        Receiver.open(audit_dataset, tmp_path / "cap3", ReceiverConfig())
    assert str(caught.value) == empty
    (audit_dataset / "dispatches.jsonl").write_text("not json\n", encoding="utf-8")
    assert_user_error(invoke("serve", audit_dataset, "--port", "0", "--capture-dir", tmp_path / "cap4",
                             "--admin-token", "secret"),
                      f"{audit_dataset / 'dispatches.jsonl'}: 0 of 1 rows loaded (1 quarantined; commonest reason: "
                      "not valid JSON, e.g. line 1); fix those rows or webhooks.json (docs/semantics.md, Q3)")


@pytest.mark.parametrize(("option", "value", "message"), [
    pytest.param("--timeout", "abc", "Invalid value for '--timeout': 'abc': write SECONDS or WEBHOOK_ID=SECONDS, "
                 "e.g. 30 or wh-acme=30", id="timeout-not-a-number"),
    pytest.param("--timeout", "wh-a=soon", "Invalid value for '--timeout': 'wh-a=soon': write SECONDS or "
                 "WEBHOOK_ID=SECONDS, e.g. 30 or wh-acme=30", id="timeout-webhook-not-a-number"),
    pytest.param("--timeout", "0", "Invalid value for '--timeout': '0': the timeout must be a positive number of "
                 "seconds", id="timeout-zero"),
    pytest.param("--timeout", "wh-a=-5", "Invalid value for '--timeout': 'wh-a=-5': the timeout must be a positive "
                 "number of seconds", id="timeout-negative"),
    pytest.param("--timeout", "inf", "Invalid value for '--timeout': 'inf': the timeout must be a positive number "
                 "of seconds", id="timeout-infinite"),
    pytest.param("--timeout", "nan", "Invalid value for '--timeout': 'nan': the timeout must be a positive number "
                 "of seconds", id="timeout-nan"),
    pytest.param("--observation-end", "tomorrow", "Invalid value for '--observation-end': 'tomorrow' is not an "
                 "ISO 8601 timestamp (e.g. 2026-11-20T10:00:00Z)", id="observation-end-text"),
    pytest.param("--observation-end", "2026-13-01", "Invalid value for '--observation-end': '2026-13-01' is not "
                 "an ISO 8601 timestamp (e.g. 2026-11-20T10:00:00Z)", id="observation-end-impossible-date"),
    pytest.param("--format", "xlsx", "Invalid value for '--format': 'xlsx' is not one of 'parquet', 'csv'.",
                 id="format"),
])
def test_bad_option_value_is_a_usage_error(audit_dataset: Path, tmp_path: Path, option: str, value: str,
                                           message: str) -> None:
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out", option, value)
    assert_usage_error(result, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options", [
    pytest.param(("--database", "{tmp}/no-such-dir/audit.duckdb"), id="database-in-missing-folder"),
    pytest.param(("--database", "{tmp}/not-a-database.txt"), id="database-not-duckdb"),
])
def test_bad_database_options_give_one_line(audit_dataset: Path, tmp_path: Path, options: tuple[str, str]) -> None:
    (tmp_path / "not-a-database.txt").write_text("just text\n" * 100)
    args = [a.replace("{tmp}", str(tmp_path)) for a in options]
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out", *args)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    err = lines(result.stderr)
    assert len(err) == 1
    assert err[0].startswith("Error: ")


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("lots", "'lots' is not a size; write it like 4GB, 512MB or 4GiB", id="not-a-size"),
    pytest.param("4XB", "'4XB' is not a size; write it like 4GB, 512MB or 4GiB", id="unknown-unit"),
    pytest.param("10MB", "'10MB' is too small; give at least 64MB", id="too-small"),
])
def test_memory_limit_must_be_a_size(audit_dataset: Path, tmp_path: Path, value: str, message: str) -> None:
    result = invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out", "--memory-limit", value)
    assert_usage_error(result, f"Invalid value for '--memory-limit': {message}")


@pytest.mark.parametrize(("value", "duckdb_limit"), [
    pytest.param("4GB", "3051MiB", id="GB-powers-of-1000"),
    pytest.param("4GiB", "3276MiB", id="GiB-powers-of-1024"),
    pytest.param("1.5 gb", "1144MiB", id="fraction-and-lower-case"),
])
def test_memory_limit_is_the_process_budget_and_duckdb_gets_80_percent(
        audit_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, duckdb_limit: str) -> None:
    """The process also holds Python and DuckDB's memory outside its pool (docs/benchmarks.md)."""
    given: list[str | None] = []
    real_connect = replay_commands.connect

    def spy(*args: Any, memory_limit: str | None = None, **kwargs: Any) -> Any:
        given.append(memory_limit)
        return real_connect(*args, memory_limit=memory_limit, **kwargs)

    monkeypatch.setattr(replay_commands, "connect", spy)
    assert invoke("replay", audit_dataset, *ITS_BAD_LINE, "--out", tmp_path / "out",
                  "--memory-limit", value).exit_code == 0
    assert given == [duckdb_limit]


# --------------------------------------------------------------------------- the real entry point


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "CLICOLOR_FORCE"}}
    env["NO_COLOR"] = "1"
    return subprocess.run([sys.executable, "-W", "error", "-m", "webhook_core.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_entry_point_help_and_version() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: webhook-audit [OPTIONS] COMMAND [ARGS]...")
    assert result.stderr == ""
    version = _run("--version")
    assert (version.returncode, version.stdout) == (0, "webhook-audit, version 0.1.0\n")


def test_entry_point_error_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = _run("replay", missing, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"Error: {missing}: not a folder; a dataset is a folder with webhooks.json, "
                             "dispatches.* and callbacks.*\n")


def test_entry_point_replay_keeps_a_database_file(audit_dataset: Path, tmp_path: Path) -> None:
    """A real process writes CSV outputs and leaves a DuckDB file whose tables re-open."""
    out, database = tmp_path / "out", tmp_path / "audit.duckdb"
    result = _run("replay", audit_dataset, *ITS_BAD_LINE, "--out", out, "--format", "csv", "--database", database,
                  "--timeout", "wh-a=5")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert lines(result.stdout)[:2] == LOAD_REPORT_LINES
    assert states(out, "csv") == {"L1": "received", "L2": "timed_out", "L3": "received", "L4": "received",
                                  "L5": "timed_out", "L6": "waiting"}

    con = duckdb.connect(str(database), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        assert {"webhook_versions", "dispatches", "callbacks", "quarantine", "load_report",
                "callback_outcomes", "lead_outcomes"} <= tables
        assert con.execute("SELECT source_file, table_name, read, loaded, quarantined FROM load_report "
                           "ORDER BY table_name DESC").fetchall() == [
            ("dispatches.jsonl", "dispatches", 7, 6, 1), ("callbacks.jsonl", "callbacks", 9, 8, 1)]
        assert con.execute("SELECT source_file, line, raw, reason FROM quarantine ORDER BY source_file").fetchall() \
            == QUARANTINE
        assert con.execute("SELECT count(*) FROM callbacks").fetchone() == (8,)
        assert con.execute('SELECT lead_id, state FROM lead_outcomes ORDER BY "row"').fetchall() == [
            ("L1", "received"), ("L2", "timed_out"), ("L3", "received"), ("L4", "received"), ("L5", "timed_out"),
            ("L6", "waiting")]
        assert con.execute("SELECT request_id, outcome FROM callback_outcomes WHERE request_id = 'r4'").fetchall() \
            == [("r4", "late")]
    finally:
        con.close()


def test_keys_loaded_for_other_settings_are_refused(audit_dataset: Path) -> None:
    """Keys depend on pairing, status and active times, not on timeouts: a replay with other such
    settings than the load's fails with one line saying what to do; a what-if timeout is fine."""
    con = connect()
    try:
        loaded = load_dataset(con, audit_dataset, keep_requests=False)
        assert replay(con, loaded.webhooks, timeouts={None: 5.0}).callbacks().shape[0] > 0
        other = parse_webhooks([{"webhook_id": "wh-a", "advertiser_id": "A",
                                 "pairing": [{"identifier": "conversion_id", "location": "query.ref"}]}])
        with pytest.raises(ReplayError) as caught:
            replay(con, other)
        assert str(caught.value) == (
            "the callbacks were loaded with keep_requests=False for other webhook settings (pairing, status "
            "or active times); load the dataset again with these settings, or with keep_requests=True")
    finally:
        con.close()


def test_reading_callbacks_after_a_keys_only_load_says_to_load_again(audit_dataset: Path) -> None:
    """The analysis functions read ``callbacks``; after keep_requests=False it holds no requests, and
    reading it fails with one line saying what to do instead of "no such table"."""
    con = connect()
    try:
        loaded = load_dataset(con, audit_dataset, keep_requests=False)
        replay(con, loaded.webhooks)
        for query in ("SELECT count(*) FROM callbacks", "SELECT url, headers FROM callbacks"):
            with pytest.raises(duckdb.InvalidInputException) as caught:
                con.execute(query)
            assert str(caught.value) == (
                "Invalid Input Error: the callbacks were loaded with keep_requests=False, as their keys for the "
                "replay only: load the dataset again with keep_requests=True to read the requests")
        reloaded = load_dataset(con, audit_dataset)  # with the requests: callbacks reads again
        (callbacks,) = [f.loaded for f in reloaded.files if f.table == "callbacks"]
        assert con.execute("SELECT count(*) FROM callbacks").fetchone() == (callbacks,)
    finally:
        con.close()


def test_replay_over_a_database_holding_the_outcomes_as_tables(audit_dataset: Path) -> None:
    """Databases written before the outcome tables became views hold them as tables: a replay replaces them."""
    con = connect()
    loaded = load_dataset(con, audit_dataset)
    first = replay(con, loaded.webhooks)
    expected = first.callbacks(), first.leads()
    for name in ("callback_outcomes", "lead_outcomes"):
        con.execute(f"DROP VIEW {name}")
        con.execute(f"CREATE TABLE {name} AS SELECT 1 AS stale")
    again = replay(con, loaded.webhooks)
    assert again.callbacks().equals(expected[0]) and again.leads().equals(expected[1])
    con.close()


def test_replay_that_releases_its_inputs_gives_the_same_outcomes(audit_dataset: Path) -> None:
    """What ``webhook-audit replay`` without ``--database`` does: only the callbacks' keys are loaded,
    and the inputs are dropped once read."""
    kept, released = connect(), connect()
    results = []
    for con, release in ((kept, False), (released, True)):
        loaded = load_dataset(con, audit_dataset, keep_requests=not release)
        result = replay(con, loaded.webhooks, release_inputs=release)
        results.append((result.callbacks(), result.leads(), result.observation_end))
    assert results[0][0].equals(results[1][0]) and results[0][1].equals(results[1][1])
    assert results[0][2] == results[1][2] is not None
    relations = {name for (name,) in released.execute("""
        SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal
    """).fetchall()}
    assert relations == {"callback_outcomes", "callback_outcome_rows", "lead_outcomes", "lead_outcome_rows",
                         "quarantine", "dispatch_quarantine", "load_report", "webhook_versions", "replay_versions"}


# --------------------------------------------------------------------------- tables that fit


SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


def test_a_table_wider_than_the_terminal_is_split_and_none_is_cut() -> None:
    narrow = CliRunner(env={"COLUMNS": "100"}).invoke(cli, ["summary", str(SAMPLE)])
    assert narrow.exit_code == 0, narrow.output
    printed = lines(narrow.stdout)
    assert max(len(line) for line in printed) <= 100
    # Every part repeats the key column, and no cell is cut ("wh-…").
    parts = [line for line in printed if line.startswith("Leads: ")]
    assert parts == ["Leads: answered in time, timed out, still waiting, never called back (1/2)",
                     "Leads: answered in time, timed out, still waiting, never called back (2/2)"]
    assert "…" not in narrow.stdout
    wide = CliRunner(env={"COLUMNS": "100"}).invoke(cli, ["--wide", "summary", str(SAMPLE)])
    assert wide.exit_code == 0, wide.output
    assert max(len(line) for line in lines(wide.stdout)) > 100
    assert "Leads: answered in time, timed out, still waiting, never called back" in lines(wide.stdout)
