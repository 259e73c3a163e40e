"""The analysis commands of ``webhook-audit``: summary, wait-times, timeouts, pairing, timeline, generate.

Every command is driven in-process with click's ``CliRunner`` on a small hand-built dataset (a few on the
bundled sample). Files written with ``--out`` are re-read with DuckDB and compared with the library
function the command wraps, run on the same dataset in this process. A user's mistake must be one
``Error:`` line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from webhook_core import Audit, open_audit
from webhook_core.analysis.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.analysis.rates import rates
from webhook_core.analysis.survival import CURVE_COLUMNS, capture_curve
from webhook_core.analysis.timeouts import timeout_whatifs
from webhook_core.cli import cli
from webhook_core.synth.generate import generate

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
COMMANDS = ["generate", "summary", "wait-times", "timeouts", "pairing", "timeline"]

# wh-a waits 30 s; wh-b waits without a timeout (interim "pending" in json.status); wh-n does not wait.
WEBHOOKS = [
    {"webhook_id": "wh-a", "advertiser_id": "A", "wait": True, "timeout_s": 30},
    {"webhook_id": "wh-b", "advertiser_id": "B", "wait": True, "status_location": "json.status",
     "interim_statuses": ["pending"]},
    {"webhook_id": "wh-n", "advertiser_id": "A"},
]


def _lead(n: int, webhook: str, advertiser: str, day: int = 20) -> dict[str, Any]:
    return {"lead_id": f"L{n}", "conversion_id": f"C{n}", "advertiser_id": advertiser, "external_id": None,
            "webhook_id": webhook, "created_at": f"2026-11-{day}T10:00:00Z"}


def _call(name: str, seconds: int, url: str, *, day: int = 20, **fields: Any) -> dict[str, Any]:
    return {"request_id": name, "received_at": f"2026-11-{day}T10:00:{seconds:02d}Z", "url": url, **fields}


LEADS = [_lead(1, "wh-a", "A"), _lead(2, "wh-a", "A"), _lead(3, "wh-b", "B"), _lead(4, "wh-b", "B"),
         _lead(5, "wh-n", "A", day=21)]
CALLBACKS = [
    _call("r1", 4, "/webhooks/wh-a?pcid=C1", response_status=200),   # matched
    _call("r2", 6, "/webhooks/wh-a?pcid=C1", response_status=200),   # duplicate: production said 200
    _call("r3", 40, "/webhooks/wh-a?pcid=C2", response_status=404),  # late
    _call("r4", 5, "/webhooks/wh-b", body='{"pcid": "C3", "status": "pending"}', response_status=200),  # interim
    _call("r5", 50, "/webhooks/wh-b", body='{"pcid": "C3", "status": "ok"}', response_status=200),  # matched
    _call("r6", 9, "/webhooks/wh-b", body='{"ref": "C4"}'),          # no_identifiers; C4 under an unmapped key
    _call("r7", 7, "/webhooks/wh-n", body="pcid=C5", day=21),        # matched
    _call("r8", 8, "/webhooks/wh-zzz?pcid=C1", response_status=404),  # unknown_token
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "dataset"
    folder.mkdir()
    (folder / "webhooks.json").write_text(json.dumps(WEBHOOKS), encoding="utf-8")
    (folder / "dispatches.jsonl").write_text("".join(json.dumps(r) + "\n" for r in LEADS), encoding="utf-8")
    (folder / "callbacks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CALLBACKS), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def small_library(small: Path) -> Iterator[Audit]:
    """The same dataset replayed in-process: what the commands' files must equal."""
    with open_audit(small) as audit:
        yield audit


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def lines(text: str) -> list[str]:
    """Non-empty lines without terminal escape codes."""
    return [line.rstrip() for line in ANSI.sub("", text).splitlines() if line.strip()]


def cells(text: str) -> list[list[str]]:
    """Header and body rows of the Rich tables printed, split on the column separators.

    A row Rich wrapped onto several lines appears once, as its first line (the later lines start with an
    empty first cell).
    """
    rows = []
    for line in lines(text):
        if line.startswith(("│", "┃")):
            row = [c.strip() for c in re.split("[│┃]", line.strip()[1:-1])]
            if row[0]:
                rows.append(row)
    return rows


def read_file(path: Path) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        return con.execute(f"SELECT * FROM {reader}('{path}')").df()
    finally:
        con.close()


def assert_same_table(written: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns and rows; numbers equal to 1e-12 relative (CSV prints floats), NULL where NULL."""
    assert list(written.columns) == list(expected.columns)
    assert len(written) == len(expected)
    for column in expected.columns:
        for got, want in zip(written[column].tolist(), expected[column].tolist(), strict=True):
            if want is None or (not isinstance(want, str) and pd.isna(want)):
                assert got is None or pd.isna(got), (column, got, want)
            elif isinstance(want, float) and not isinstance(want, bool):
                assert math.isclose(float(got), want, rel_tol=1e-12, abs_tol=1e-15), (column, got, want)
            else:
                assert got == want, (column, got, want)


def assert_user_error(result: Result, message: str) -> None:
    """Exit code 1, the last stderr line is ``Error: message`` and nothing else is on stderr; no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert lines(result.stderr) == [f"Error: {message}"]
    assert "Traceback" not in result.output


def assert_usage_error(result: Result, message: str) -> None:
    """Click's usage error: exit code 2, a usage hint, and the one ``Error:`` line last."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    err = lines(result.stderr)
    assert err[0].startswith("Usage: ")
    assert err[-1] == f"Error: {message}"
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- --help


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_every_analysis_command(command: str, flag: str) -> None:
    result = invoke(command, flag)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: cli {command} [OPTIONS] ")
    assert "--help" in result.stdout


def test_group_help_lists_every_analysis_command() -> None:
    listed = invoke("--help").stdout
    for command in COMMANDS:
        assert re.search(rf"^\s+{re.escape(command)}\s+\S", listed, re.MULTILINE), command


# --------------------------------------------------------------------------- summary


def test_summary_prints_load_report_rates_and_disagreements(small: Path) -> None:
    result = invoke("summary", small)
    assert result.exit_code == 0, result.output
    printed = lines(result.stdout)
    assert printed[:2] == ["dispatches.jsonl: read 5 = loaded 5 + quarantined 0",
                           "callbacks.jsonl: read 8 = loaded 8 + quarantined 0"]
    assert "Callbacks (rates) and 404s by reason; leads by state" in printed
    rows = cells(result.stdout)
    assert rows[0] == ["webhook_id", "callbacks", "match_rate", "rate_404", "early", "duplicate", "late",
                       "wrong_webhook", "not_found", "no_identifiers", "unknown_token", "received", "timed_out",
                       "waiting", "agreement_rate"]
    # wh-a: r1 matched, r2 duplicate, r3 late; L1 received, L2 timed out; 3 recorded, r2 disagrees.
    assert rows[1:6] == [
        ["(unknown)", "1", "0.0%", "100.0%", "0", "0", "0", "0", "0", "0", "1", "0", "0", "0", "100.0%"],
        ["wh-a", "3", "33.3%", "66.7%", "0", "1", "1", "0", "0", "0", "0", "1", "1", "0", "66.7%"],
        ["wh-b", "3", "33.3%", "33.3%", "0", "0", "0", "0", "0", "1", "0", "1", "0", "1", "100.0%"],
        ["wh-n", "1", "100.0%", "0.0%", "0", "0", "0", "0", "0", "0", "0", "1", "0", "0", ""],
        ["(all)", "8", "37.5%", "50.0%", "0", "1", "1", "0", "0", "1", "1", "3", "1", "1", "83.3%"],
    ]
    assert "1 callbacks where production's recorded answer differs from the model (first 10):" in printed
    assert rows[7][:6] == ["r2", "2026-11-20 10:00:06+00:00", "wh-a", "duplicate", "404", "200"]


def test_summary_by_advertiser(small: Path) -> None:
    result = invoke("summary", small, "--by", "advertiser")
    assert result.exit_code == 0, result.output
    rows = cells(result.stdout)
    assert rows[0][0] == "advertiser_id"
    assert [r[:2] for r in rows[1:5]] == [["(unknown)", "1"], ["A", "4"], ["B", "3"], ["(all)", "8"]]


def test_summary_per_day(small: Path) -> None:
    result = invoke("summary", small, "--per-day")
    assert result.exit_code == 0, result.output
    rows = cells(result.stdout)
    assert rows[0][:3] == ["webhook_id", "day", "callbacks"]
    assert [(r[0], r[1][:10], r[2]) for r in rows[1:5]] == [
        ("(unknown)", "2026-11-20", "1"), ("wh-a", "2026-11-20", "3"), ("wh-b", "2026-11-20", "3"),
        ("wh-n", "2026-11-21", "1")]


@pytest.mark.parametrize(("options", "by", "per_day"), [
    pytest.param((), "webhook_id", False, id="by-webhook"),
    pytest.param(("--by", "advertiser", "--per-day"), "advertiser_id", True, id="by-advertiser-per-day"),
])
def test_summary_out_csv_equals_rates(small: Path, small_library: Audit,
                                      tmp_path: Path, options: tuple[str, ...], by: str, per_day: bool) -> None:
    out = tmp_path / "x.csv"
    result = invoke("summary", small, *options, "--out", out)
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[-1] == f"wrote {out}"
    expected = rates(small_library, by=by, per_day=per_day)  # type: ignore[arg-type]
    written = read_file(out)
    if per_day:
        written["day"] = pd.to_datetime(written["day"])
        expected["day"] = pd.to_datetime(expected["day"])
    assert_same_table(written, expected)


def test_summary_on_sample_reports_the_disagreements(tmp_path: Path) -> None:
    result = invoke("summary", SAMPLE, "--out", tmp_path / "s.parquet")
    assert result.exit_code == 0, result.output
    printed = lines(result.stdout)
    assert "callbacks.jsonl: read 3,540 = loaded 3,537 + quarantined 3" in printed
    written = read_file(tmp_path / "s.parquet")
    disagree = int(written.set_index("webhook_id").loc["(all)", "disagree"])  # type: ignore[arg-type]
    assert disagree > 0
    assert f"{disagree:,} callbacks where production's recorded answer differs from the model (first 10):" in printed


# --------------------------------------------------------------------------- wait-times


def test_wait_times_out_parquet_columns_and_values(small: Path, small_library: Audit, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    result = invoke("wait-times", small, "--out", out)
    assert result.exit_code == 0, result.output
    printed = lines(result.stdout)
    assert "Time to first callback (Kaplan-Meier)" in printed
    assert "* plain percentiles over answered leads only: biased low, they ignore leads still waiting." in printed
    assert printed[-1] == f"wrote {out}"
    written = read_file(out)
    assert list(written.columns) == ["webhook_id", "t_s", "at_risk", "events", "captured", "ci_low", "ci_high"]
    assert tuple(written.columns) == CURVE_COLUMNS
    assert_same_table(written, capture_curve(small_library))


def test_wait_times_at_risk_is_an_integer_column(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    assert invoke("wait-times", small, "--out", out).exit_code == 0
    header, first = out.read_text(encoding="utf-8").splitlines()[:2]
    assert header == "webhook_id,t_s,at_risk,events,captured,ci_low,ci_high"
    assert first.split(",")[2] == "2"  # wh-a at t = 4 s: L1 and L2 at risk


# --------------------------------------------------------------------------- timeouts


def test_timeouts_out_csv_equals_timeout_whatifs(small: Path, small_library: Audit, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = invoke("timeouts", small, "--out", out, "--candidates", "5,30", "--target", "0.9")
    assert result.exit_code == 0, result.output
    expected = timeout_whatifs(small_library, [5, 30], 0.9)
    assert_same_table(read_file(out), expected)
    printed = lines(result.stdout)
    assert "Recommended timeouts (target 90% of the answers that come)" in printed
    # wh-b waits without a timeout and L4 never got an answer: blocked from the 20th 10:00:00 to the observation
    # end, the 21st 10:00:07 (r7).
    assert ("warning: wh-b waits without a timeout and 1 of 2 leads never got an answer: the ping tree is blocked "
            "for them (longest 24.0 h). Set a timeout.") in printed
    # wh-a: first callbacks at 4 s (L1) and 40 s (L2, late), so captured is 1/2 by 30 s, short of 0.9 × 1.
    assert cells(result.stdout)[1] == ["wh-a", "30.0 s", "none reaches the target", "", ""]
    assert printed[-1] == f"wrote {out}"


def test_timeouts_on_sample_out_parquet_equals_timeout_whatifs(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    result = invoke("timeouts", SAMPLE, "--out", out, "--candidates", "10,60,300")
    assert result.exit_code == 0, result.output
    with open_audit(SAMPLE) as audit:
        expected = timeout_whatifs(audit, [10, 60, 300])
    assert_same_table(read_file(out), expected)
    rows = {r[0]: r for r in cells(result.stdout) if r[0].startswith("wh-")}
    assert rows["wh-fastpay"][:3] == ["wh-fastpay", "30.0 s", "60.0 s"]


@pytest.mark.parametrize("candidates", ["abc", "0", "5,-1", "nan", ",", ""])
def test_timeouts_bad_candidates_error_text(small: Path, tmp_path: Path, candidates: str) -> None:
    result = invoke("timeouts", small, "--out", tmp_path / "x.csv", "--candidates", candidates)
    assert_usage_error(result, f"Invalid value for '--candidates': {candidates!r}: write positive seconds separated "
                               "by commas, e.g. 5,30,300")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("candidates", ["inf", "5,1e400"])
def test_timeouts_infinite_candidate_is_a_usage_error(small: Path, tmp_path: Path, candidates: str) -> None:
    result = invoke("timeouts", small, "--out", tmp_path / "x.csv", "--candidates", candidates)
    assert_usage_error(result, f"Invalid value for '--candidates': {candidates!r}: write positive seconds separated "
                               "by commas, e.g. 5,30,300")


@pytest.mark.parametrize("target", ["0", "1.5"])
def test_timeouts_target_outside_zero_one_is_a_usage_error(small: Path, tmp_path: Path, target: str) -> None:
    result = invoke("timeouts", small, "--out", tmp_path / "x.csv", "--target", target)
    assert result.exit_code == 2, result.output
    assert lines(result.stderr)[-1].startswith("Error: Invalid value for '--target': ")
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- pairing


def test_pairing_out_parquet_writes_three_files(small: Path, small_library: Audit, tmp_path: Path) -> None:
    out = tmp_path / "pairs" / "x.parquet"
    result = invoke("pairing", small, "--out", out)
    assert result.exit_code == 0, result.output
    discovered = tmp_path / "pairs" / "x.discovered.parquet"
    misses = tmp_path / "pairs" / "x.near_misses.parquet"
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.discovered.parquet", "x.near_misses.parquet",
                                                           "x.parquet"]
    assert_same_table(read_file(out), pairing_validation(small_library))
    assert_same_table(read_file(discovered), discover_locations(small_library))
    assert_same_table(read_file(misses), near_misses(small_library))
    printed = lines(result.stdout)
    assert ("proposal: wh-b carries conversion_id in json.ref (1 callbacks, precision 100.0%), which no pairing "
            "rule reads") in printed
    assert printed[-3:] == [f"wrote {out}", f"wrote {discovered}", f"wrote {misses}"]


def test_pairing_on_sample_proposes_refcos_unmapped_key(tmp_path: Path) -> None:
    result = invoke("pairing", SAMPLE, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    proposals = [line for line in lines(result.stdout) if line.startswith("proposal: ")]
    assert len(proposals) == 1
    assert proposals[0].startswith("proposal: wh-refco carries conversion_id in json.data.reference (")
    assert (tmp_path / "p.discovered.csv").is_file() and (tmp_path / "p.near_misses.csv").is_file()


# --------------------------------------------------------------------------- timeline


@pytest.mark.parametrize("lead", ["L1", "C1"], ids=["by-lead-id", "by-conversion-id"])
def test_timeline_prints_the_leads_events(small: Path, lead: str) -> None:
    result = invoke("timeline", small, lead)
    assert result.exit_code == 0, result.output
    assert f"Lead {lead}" in lines(result.stdout)
    rows = cells(result.stdout)
    assert rows[0] == ["time", "event", "outcome", "status_code", "recorded_status", "request_id", "method", "url",
                       "body", "detail"]
    # The state row of a received lead stands where the wait finished (lead_timeline's docstring, W1).
    assert [(r[1], r[2], r[5]) for r in rows[1:]] == [
        ("created", "", ""), ("callback", "matched", "r1"), ("received", "", ""), ("callback", "duplicate", "r2"),
        ("deadline", "", "")]
    assert [r[9] for r in rows[1:] if r[1] == "received"] == ["finished after 4.0 s"]


def test_timeline_out_csv(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    result = invoke("timeline", small, "L2", "--out", out)
    assert result.exit_code == 0, result.output
    assert read_file(out)["event"].tolist() == ["created", "deadline", "callback", "timed_out"]


def test_timeline_unknown_lead_error_text(small: Path) -> None:
    assert_user_error(invoke("timeline", small, "NOPE"), "no lead with lead_id or conversion_id 'NOPE'")


# --------------------------------------------------------------------------- --out and dataset errors


@pytest.mark.parametrize("args", [
    pytest.param(("summary", "{ds}", "--out", "{tmp}/x.txt"), id="summary"),
    pytest.param(("wait-times", "{ds}", "--out", "{tmp}/x.json"), id="wait-times"),
    pytest.param(("timeouts", "{ds}", "--out", "{tmp}/x"), id="timeouts-no-extension"),
    pytest.param(("pairing", "{ds}", "--out", "{tmp}/x.PARQUET"), id="pairing-upper-case"),
    pytest.param(("timeline", "{ds}", "L1", "--out", "{tmp}/x.xlsx"), id="timeline"),
])
def test_out_with_a_bad_extension_error_text(small: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    argv = [a.format(ds=small, tmp=tmp_path) for a in args]
    out = Path(argv[argv.index("--out") + 1])
    assert_user_error(invoke(*argv), f"{out}: --out must end in .parquet or .csv")
    assert not out.exists()


@pytest.mark.parametrize("command", ["summary", "wait-times", "timeouts", "pairing", "timeline"])
def test_missing_dataset_folder_is_one_line(tmp_path: Path, command: str) -> None:
    args: list[str | Path] = [command, tmp_path / "nowhere"]
    if command == "timeline":
        args.append("L1")
    if command in ("wait-times", "timeouts", "pairing"):
        args += ["--out", tmp_path / "x.csv"]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    err = lines(result.stderr)
    assert len(err) == 1 and err[0].startswith("Error: ") and "nowhere" in err[0]
    assert "Traceback" not in result.output


def test_out_is_required_where_documented(small: Path) -> None:
    for command in ("wait-times", "timeouts", "pairing"):
        assert_usage_error(invoke(command, small), "Missing option '--out'.")


# --------------------------------------------------------------------------- generate


def test_generate_command_writes_what_the_library_writes(tmp_path: Path) -> None:
    result = invoke("generate", tmp_path / "cli", "--leads", "300", "--seed", "5")
    assert result.exit_code == 0, result.output
    made = generate(tmp_path / "lib", leads=300, seed=5)
    assert lines(result.stdout) == [
        f"wrote {tmp_path / 'cli'}: 300 leads, {made.callbacks:,} callbacks, {made.garbage_lines:,} unparseable "
        "capture lines"]
    for name in ("webhooks.json", "dispatches.csv", "callbacks.jsonl"):
        assert (tmp_path / "cli" / name).read_bytes() == (made.path / name).read_bytes(), name


def test_generate_command_rejects_zero_leads(tmp_path: Path) -> None:
    result = invoke("generate", tmp_path / "g", "--leads", "0")
    assert result.exit_code == 2, result.output
    assert lines(result.stderr)[-1].startswith("Error: Invalid value for '--leads': 0 is not in the range x>=1")
