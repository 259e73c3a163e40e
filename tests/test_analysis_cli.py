"""The analysis commands of ``webhook-audit``: summary, wait-times, timeouts, pairing, timeline, generate.

Every command is driven in-process with click's ``CliRunner`` on a small hand-built dataset (a few on the
bundled sample). Files written with ``--out`` are re-read with DuckDB and compared with the library
function the command wraps, run on the same dataset in this process. A user's mistake must be one
``Error:`` line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from webhook_core import Audit, open_audit
from webhook_core.analysis.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.analysis.rates import lead_headline, rates
from webhook_core.analysis.survival import CURVE_COLUMNS, capture_curve
from webhook_core.analysis.timeouts import timeout_advice, timeout_whatifs
from webhook_core.cli import cli
from webhook_core.cli.analysis_commands import (
    ADVICE_TITLE,
    ATTRIBUTION_LEGEND,
    ATTRIBUTION_TITLE,
    CALLBACKS_TITLE,
    HEADLINE_TITLE,
    REASONS_TITLE,
)
from webhook_core.synth.generate import generate

from datasets import write_dataset

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


def table(text: str, title: str) -> list[list[str]]:
    """Header and body rows of the table printed under ``title``."""
    printed = lines(text)
    start = printed.index(title) + 1
    end = next(i for i in range(start, len(printed)) if printed[i].startswith("└"))
    return cells("\n".join(printed[start:end]))


def test_summary_prints_load_report_leads_first_then_callbacks_and_disagreements(small: Path) -> None:
    result = invoke("summary", small)
    assert result.exit_code == 0, result.output
    printed = lines(result.stdout)
    assert printed[:3] == ["dispatches.jsonl: read 5 = loaded 5 + quarantined 0",
                           "callbacks.jsonl: read 8 = loaded 8 + quarantined 0", HEADLINE_TITLE]
    # wh-a: L1 received (r1), L2 timed out after its late r3. wh-b: L3 received (r5, after the interim r4),
    # L4 never called back (r6 named no lead). 404s per lead: r2 and r3 for wh-a's 2 leads; r6 for wh-b's 2;
    # (all): r2, r3, r6 and the unknown token's r8 for 5 leads.
    assert table(result.stdout, HEADLINE_TITLE) == [
        ["webhook_id", "leads", "received", "timed_out", "waiting", "never_called_back", "answer_rate",
         "404s_per_lead"],
        ["(unknown)", "0", "0", "0", "0", "0", "", ""],
        ["wh-a", "2", "1", "1", "0", "0", "50.0%", "1.00"],
        ["wh-b", "2", "1", "0", "1", "1", "50.0%", "0.50"],
        ["wh-n", "1", "1", "0", "0", "0", "100.0%", "0.00"],
        ["(all)", "5", "3", "1", "1", "1", "60.0%", "0.80"],
    ]
    # Shares of callbacks add up to 100 % with interim shown (wh-b: r4 interim, r5 matched, r6 404).
    assert table(result.stdout, CALLBACKS_TITLE) == [
        ["webhook_id", "callbacks", "match_rate", "interim_rate", "rate_404", "agreement_rate"],
        ["(unknown)", "1", "0.0%", "0.0%", "100.0%", "100.0%"],
        ["wh-a", "3", "33.3%", "0.0%", "66.7%", "66.7%"],
        ["wh-b", "3", "33.3%", "33.3%", "33.3%", "100.0%"],
        ["wh-n", "1", "100.0%", "0.0%", "0.0%", ""],
        ["(all)", "8", "37.5%", "12.5%", "50.0%", "83.3%"],
    ]
    assert table(result.stdout, REASONS_TITLE) == [
        ["webhook_id", "early", "duplicate", "late", "wrong_webhook", "not_found", "no_identifiers", "unknown_token"],
        ["(unknown)", "0", "0", "0", "0", "0", "0", "1"],
        ["wh-a", "0", "1", "1", "0", "0", "0", "0"],
        ["wh-b", "0", "0", "0", "0", "0", "1", "0"],
        ["wh-n", "0", "0", "0", "0", "0", "0", "0"],
        ["(all)", "0", "1", "1", "0", "0", "1", "1"],
    ]
    assert "1 callbacks where production's recorded answer differs from the model (first 10):" in printed
    assert cells(result.stdout)[-1] == ["r2", "2026-11-20 10:00:06", "wh-a", "duplicate", "404", "200"]
    # No misroute and no configured token called while not live: no such table.
    assert ATTRIBUTION_TITLE not in printed


def test_summary_by_advertiser(small: Path) -> None:
    result = invoke("summary", small, "--by", "advertiser")
    assert result.exit_code == 0, result.output
    # A: wh-a and wh-n (3 leads, 2 answered); B: wh-b.
    assert [r[:3] for r in table(result.stdout, HEADLINE_TITLE)] == [
        ["advertiser_id", "leads", "received"], ["(unknown)", "0", "0"], ["A", "3", "2"], ["B", "2", "1"],
        ["(all)", "5", "3"]]
    assert [r[:2] for r in table(result.stdout, CALLBACKS_TITLE)] == [
        ["advertiser_id", "callbacks"], ["(unknown)", "1"], ["A", "4"], ["B", "3"], ["(all)", "8"]]


def test_summary_per_day(small: Path) -> None:
    result = invoke("summary", small, "--per-day")
    assert result.exit_code == 0, result.output
    # The leads over the whole observation; the callback tables per UTC day.
    assert [r[0] for r in table(result.stdout, HEADLINE_TITLE)] == ["webhook_id", "(unknown)", "wh-a", "wh-b",
                                                                    "wh-n", "(all)"]
    for title in (CALLBACKS_TITLE, REASONS_TITLE):
        rows = table(result.stdout, title)
        assert rows[0][:2] == ["webhook_id", "day"]
        assert [(r[0], r[1]) for r in rows[1:]] == [
            ("(unknown)", "2026-11-20"), ("wh-a", "2026-11-20"), ("wh-b", "2026-11-20"), ("wh-n", "2026-11-21")]
    assert table(result.stdout, CALLBACKS_TITLE)[2][2] == "3"


def test_summary_prints_misrouted_and_token_not_live_for_the_groups_concerned(tmp_path: Path) -> None:
    webhooks = [*WEBHOOKS, {"webhook_id": "wh-old", "advertiser_id": "O", "active_to": "2026-11-20T00:00:00Z"}]
    callbacks = [
        _call("m1", 1, "/webhooks/wh-b?pcid=C1"),               # wrong_webhook: to wh-b (B), names wh-a's L1 (A)
        _call("m2", 2, "/webhooks/wh-b?pcid=C1", day=21),       # again, the next day
        _call("old", 3, "/webhooks/wh-old?pcid=C1"),            # unknown_token: wh-old retired the day before
        _call("never", 4, "/webhooks/wh-never?pcid=C1"),        # unknown_token: never configured, (unknown)'s
    ]
    folder = write_dataset(tmp_path / "both", webhooks, LEADS, callbacks)
    legend = list(ATTRIBUTION_LEGEND)
    result = invoke("summary", folder)
    assert result.exit_code == 0, result.output
    assert table(result.stdout, ATTRIBUTION_TITLE) == [
        ["webhook_id", "misrouted_out", "misrouted_in", "token_not_live"],
        ["wh-a", "0", "2", "0"], ["wh-b", "2", "0", "0"], ["wh-old", "0", "0", "1"], ["(all)", "2", "2", "1"]]
    printed = lines(result.stdout)
    end = printed.index(ATTRIBUTION_TITLE) + 1 + len(table(result.stdout, ATTRIBUTION_TITLE)) + 3
    assert printed[end:end + 3] == legend
    # By advertiser, and per day: summed over the days.
    for options in (("--by", "advertiser"), ("--by", "advertiser", "--per-day")):
        result = invoke("summary", folder, *options)
        assert result.exit_code == 0, result.output
        assert table(result.stdout, ATTRIBUTION_TITLE) == [
            ["advertiser_id", "misrouted_out", "misrouted_in", "token_not_live"],
            ["A", "0", "2", "0"], ["B", "2", "0", "0"], ["O", "0", "0", "1"], ["(all)", "2", "2", "1"]]


@pytest.mark.parametrize("options", [(), ("--by", "advertiser"), ("--per-day",)], ids=["webhook", "advertiser",
                                                                                       "per-day"])
def test_summary_tables_fit_a_120_column_terminal_on_sample(options: tuple[str, ...]) -> None:
    result = invoke("summary", SAMPLE, *options)
    assert result.exit_code == 0, result.output
    tables = [line for line in lines(result.stdout) if line[:1] in "┏┃┡│└"]
    assert len(tables) > 30
    assert max(len(line) for line in tables) <= 120


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
    # The per-lead headline beside it, whatever --per-day says.
    leads = tmp_path / "x.leads.csv"
    assert lines(result.stdout)[-2] == f"wrote {leads}"
    assert_same_table(read_file(leads), lead_headline(small_library, by=by))  # type: ignore[arg-type]


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


def test_timeouts_out_csv_equals_timeout_whatifs_and_advice_beside_it(
        small: Path, small_library: Audit, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = invoke("timeouts", small, "--out", out, "--candidates", "5,30", "--target", "0.9")
    assert result.exit_code == 0, result.output
    assert_same_table(read_file(out), timeout_whatifs(small_library, [5, 30]))
    advice_file = tmp_path / "x.advice.csv"
    assert_same_table(read_file(advice_file), timeout_advice(small_library, 0.9))
    printed = lines(result.stdout)
    # wh-b waits without a timeout and L4 never got an answer: blocked from the 20th 10:00:00 to the observation
    # end, the 21st 10:00:07 (r7).
    assert ("warning: wh-b waits without a timeout and 1 of 2 leads never got an answer: the ping tree is blocked "
            "for them (longest 24.0 h). Set a timeout.") in printed
    assert printed[-2:] == [f"wrote {out}", f"wrote {advice_file}"]
    assert table(result.stdout, f"{ADVICE_TITLE} (target 90%)") == [
        ["webhook_id", "leads", "answered", "current", "current_keeps", "current_mean_block", "recommended",
         "recommended_keeps", "recommended_mean_block"],
        # Finishing waits 4 s and 40 s (L2's late callback finishes it with no timeout): 2 of 2 needed → 40 s.
        # Mean block: at 30 s (4 + 30) / 2, at 40 s (4 + 40) / 2.
        ["wh-a", "2", "2", "30 s", "50.0%", "17.0 s", "40 s", "100.0%", "22.0 s"],
        # L3's final answer at 50 s (the interim at 5 s finishes nothing); no timeout: L4 blocks 24 h 7 s.
        ["wh-b", "2", "1", "no timeout", "100.0%", "12.0 h", "50 s", "100.0%", "50.0 s"],
    ]


def test_timeouts_max_timeout_caps_the_advice_and_says_what_the_cap_keeps(
        small: Path, small_library: Audit, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    result = invoke("timeouts", small, "--out", out, "--target", "0.9", "--max-timeout", "35")
    assert result.exit_code == 0, result.output
    assert_same_table(read_file(tmp_path / "x.advice.parquet"), timeout_advice(small_library, 0.9, 35))
    rows = table(result.stdout, f"{ADVICE_TITLE} (target 90%)")
    assert [r[6:] for r in rows[1:]] == [["35 s (cap)", "50.0%", "19.5 s"], ["35 s (cap)", "0.0%", "35.0 s"]]
    printed = lines(result.stdout)
    assert "wh-a: --max-timeout 35 s keeps 50.0% of the answers that finish a wait, short of the target 90%." \
        in printed
    assert "wh-b: --max-timeout 35 s keeps 0.0% of the answers that finish a wait, short of the target 90%." \
        in printed


def test_timeouts_on_sample_out_parquet_equals_timeout_whatifs(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    result = invoke("timeouts", SAMPLE, "--out", out, "--candidates", "10,60,300")
    assert result.exit_code == 0, result.output
    with open_audit(SAMPLE) as audit:
        expected = timeout_whatifs(audit, [10, 60, 300])
        advice = timeout_advice(audit)
    assert_same_table(read_file(out), expected)
    assert_same_table(read_file(tmp_path / "t.advice.parquet"), advice)
    rows = {r[0]: r for r in table(result.stdout, f"{ADVICE_TITLE} (target 95%)")}
    # wh-retry's current 20 s is no candidate, and is evaluated all the same.
    assert rows["wh-retry"][3:5] == ["20 s", f"{advice.set_index('webhook_id').current_capture_rate['wh-retry']:.1%}"]
    assert rows["wh-refco"][3:5] == ["no timeout", "100.0%"]


def test_timeouts_advice_does_not_move_with_the_candidates(tmp_path: Path) -> None:
    """Issue 22: adding 20 to the candidates moved wh-fastpay's recommendation from 30 s to 20 s."""
    runs = {}
    for name, candidates in (("without", "5,10,30,60"), ("with", "5,10,20,30,60")):
        out = tmp_path / name / "t.csv"
        result = invoke("timeouts", SAMPLE, "--out", out, "--candidates", candidates)
        assert result.exit_code == 0, result.output
        runs[name] = (table(result.stdout, f"{ADVICE_TITLE} (target 95%)"),
                      (tmp_path / name / "t.advice.csv").read_bytes())
    assert runs["with"] == runs["without"]
    assert "wh-fastpay" in {row[0] for row in runs["with"][0]}


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("0", "0 is not in the range x>=1.", id="zero"),
    pytest.param("-3", "-3 is not in the range x>=1.", id="negative"),
    pytest.param("1.5", "'1.5' is not a valid integer range.", id="not-whole"),
    pytest.param("inf", "'inf' is not a valid integer range.", id="infinite"),
])
def test_timeouts_max_timeout_not_a_whole_second_is_a_usage_error(small: Path, tmp_path: Path, value: str,
                                                                  message: str) -> None:
    result = invoke("timeouts", small, "--out", tmp_path / "x.csv", "--max-timeout", value)
    assert_usage_error(result, f"Invalid value for '--max-timeout': {message}")
    assert not (tmp_path / "x.csv").exists()


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
    # --wide: the events as one table (its URLs and details are wider than a terminal; see the split test).
    result = invoke("--wide", "timeline", small, lead)
    assert result.exit_code == 0, result.output
    assert f"Lead {lead}" in lines(result.stdout)
    rows = cells(result.stdout)
    assert rows[0] == ["time", "since_created", "event", "outcome", "status_code", "recorded_status", "request_id",
                       "method", "url", "body", "detail"]
    # The state row of a received lead stands where the wait finished (lead_timeline's docstring, W1).
    assert [(r[1], r[2], r[3], r[6]) for r in rows[1:]] == [
        ("0.0 s", "created", "", ""), ("4.0 s", "callback", "matched", "r1"), ("4.0 s", "received", "", ""),
        ("6.0 s", "callback", "duplicate", "r2"), ("30.0 s", "deadline", "", "")]
    assert [r[10] for r in rows[1:] if r[2] == "received"] == ["finished after 4.0 s"]


def test_timeline_out_csv(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    result = invoke("timeline", small, "L2", "--out", out)
    assert result.exit_code == 0, result.output
    frame = read_file(out)
    assert frame["event"].tolist() == ["created", "timed_out", "callback"]
    assert frame["since_created_s"].tolist() == [0.0, 30.0, 40.0]


@pytest.fixture(scope="module")
def sample_timed_out() -> dict[str, Any]:
    """The first wh-slowbank lead of data/sample that timed out after a late callback, with that callback as
    captured (its callbacks.jsonl line) and the webhook's timeout."""
    with open_audit(SAMPLE) as audit:
        lead_id, created, request_id = audit.con.execute("""
            SELECT l.lead_id, l.created_at, o.request_id FROM lead_outcomes l JOIN callback_outcomes o
              ON o.lead_id = l.lead_id AND o.webhook_id = l.webhook_id
            WHERE l.webhook_id = 'wh-slowbank' AND l.state = 'timed_out' AND o.outcome = 'late'
            ORDER BY l."row", o.seq LIMIT 1""").fetchone()
    captured = [json.loads(line) for line in (SAMPLE / "callbacks.jsonl").read_text(encoding="utf-8").splitlines()
                if f'"{request_id}"' in line]
    timeouts = {w["timeout_s"] for w in json.loads((SAMPLE / "webhooks.json").read_text(encoding="utf-8"))
                if w["webhook_id"] == "wh-slowbank"}
    assert len(captured) == 1 and len(timeouts) == 1
    return {"lead": lead_id, "created": created, "request_id": request_id, "captured": captured[0],
            "timeout_s": timeouts.pop()}


def test_timeline_out_json_on_sample_stamps_the_deadline_and_keeps_headers(
        sample_timed_out: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    result = invoke("timeline", SAMPLE, sample_timed_out["lead"], "--out", out)
    assert result.exit_code == 0, result.output
    events = json.loads(out.read_text(encoding="utf-8"))
    assert [e["event"] for e in events][:2] == ["created", "timed_out"]
    deadline = sample_timed_out["created"] + timedelta(seconds=sample_timed_out["timeout_s"])
    assert events[1]["time"] == deadline.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert events[1]["since_created_s"] == sample_timed_out["timeout_s"]
    late = [e for e in events if e["request_id"] == sample_timed_out["request_id"]]
    assert len(late) == 1 and events.index(late[0]) > 1 and late[0]["outcome"] == "late"
    assert late[0]["headers"] == [{"name": n, "value": v} for n, v in sample_timed_out["captured"]["headers"]]
    assert late[0]["status_code"] == 404 and events[0]["status_code"] is None


def test_timeline_out_csv_headers_cell_is_json(sample_timed_out: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert invoke("timeline", SAMPLE, sample_timed_out["lead"], "--out", out).exit_code == 0
    with out.open(encoding="utf-8", newline="") as file:
        rows = [r for r in csv.DictReader(file) if r["request_id"] == sample_timed_out["request_id"]]
    assert [json.loads(r["headers"]) for r in rows] == [
        [{"name": n, "value": v} for n, v in sample_timed_out["captured"]["headers"]]]


def test_timeline_out_with_a_bad_extension_error_text(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.xlsx"
    assert_user_error(invoke("timeline", small, "L1", "--out", out),
                      f"{out}: --out must end in .csv, .json or .parquet")
    assert not out.exists()


def test_timeline_unknown_lead_error_text(small: Path) -> None:
    assert_user_error(invoke("timeline", small, "NOPE"), "no lead with lead_id or conversion_id 'NOPE'")


# --------------------------------------------------------------------------- --out and dataset errors


@pytest.mark.parametrize("args", [
    pytest.param(("summary", "{ds}", "--out", "{tmp}/x.txt"), id="summary"),
    pytest.param(("wait-times", "{ds}", "--out", "{tmp}/x.json"), id="wait-times"),
    pytest.param(("timeouts", "{ds}", "--out", "{tmp}/x"), id="timeouts-no-extension"),
    pytest.param(("pairing", "{ds}", "--out", "{tmp}/x.PARQUET"), id="pairing-upper-case"),
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


@pytest.mark.parametrize(("command", "title"), [
    ("wait-times", "Time to first callback (Kaplan-Meier)"),
    ("timeouts", "Timeout advice"),
    ("pairing", "Locations read by the replay"),
])
def test_out_is_optional_to_look(small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str,
                                 title: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(command, small)
    assert result.exit_code == 0, result.output
    assert any(line.startswith(title) for line in lines(result.stdout))
    assert not any(line.startswith("wrote ") for line in lines(result.stdout))
    assert list(tmp_path.iterdir()) == []


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
