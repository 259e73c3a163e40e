"""Filters (issue 23, item 3; docs/analysis.md "Filters"): --advertiser, --webhook, --since, --until narrow
every analysis to rows; they never judge again."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import webhook_core as wc
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.cli import cli
from webhook_core.exceptions import ReplayError

from datasets import write_dataset

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WEBHOOKS = [
    {"webhook_id": "wh-a", "advertiser_id": "acme", "wait": True, "timeout_s": 60},
    {"webhook_id": "wh-b", "advertiser_id": "bolt", "wait": True, "timeout_s": 60},
]


def at(minutes: int, seconds: int = 0) -> str:
    return f"2026-11-20T10:{minutes:02d}:{seconds:02d}Z"


def lead(n: int, webhook: str, minute: int) -> dict[str, Any]:
    return {"lead_id": f"L{n}", "conversion_id": f"PC-{n}", "advertiser_id": "acme" if webhook == "wh-a" else "bolt",
            "external_id": None, "webhook_id": webhook, "created_at": at(minute)}


def callback(n: int, webhook: str, pcid: str, minute: int, second: int) -> dict[str, Any]:
    return {"request_id": f"r{n}", "received_at": at(minute, second), "url": f"/webhooks/{webhook}?pcid={pcid}"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wh-a: L1 (10:00, answered 10:00:10), L2 (10:05, answered 10:05:20), L3 (10:10, never answered).
    wh-b: L4 (10:01, answered 10:01:05), and r5 to wh-b naming nothing (10:06)."""
    leads = [lead(1, "wh-a", 0), lead(2, "wh-a", 5), lead(3, "wh-a", 10), lead(4, "wh-b", 1)]
    callbacks = [callback(1, "wh-a", "PC-1", 0, 10), callback(2, "wh-a", "PC-2", 5, 20),
                 callback(4, "wh-b", "PC-4", 1, 5), callback(5, "wh-b", "PC-99", 6, 0)]
    return write_dataset(tmp_path_factory.mktemp("filters") / "dataset", WEBHOOKS, leads, callbacks)


def figures(audit: wc.Audit) -> list[tuple[Any, ...]]:
    frame = wc.rates(audit)
    return list(frame[["webhook_id", "callbacks", "matched", "leads", "received", "waiting"]]
                .itertuples(index=False, name=None))


def test_no_filter_is_the_whole_audit(folder: Path) -> None:
    with wc.open_audit(folder) as audit:
        assert figures(audit) == [("wh-a", 2, 2, 3, 2, 1), ("wh-b", 2, 1, 1, 1, 0), ("(all)", 4, 3, 4, 3, 1)]


@pytest.mark.parametrize(("filters", "expected"), [
    pytest.param(Filters(webhooks=("wh-b",)), [("wh-b", 2, 1, 1, 1, 0), ("(all)", 2, 1, 1, 1, 0)], id="webhook"),
    pytest.param(Filters(advertisers=("acme",)), [("wh-a", 2, 2, 3, 2, 1), ("(all)", 2, 2, 3, 2, 1)],
                 id="advertiser"),
    # Leads created in [10:01, 10:06): L2, L4; callbacks received in it: r2, r4, and r5 is at 10:06, out.
    pytest.param(Filters(since=datetime(2026, 11, 20, 10, 1, tzinfo=UTC),
                         until=datetime(2026, 11, 20, 10, 6, tzinfo=UTC)),
                 [("wh-a", 1, 1, 1, 1, 0), ("wh-b", 1, 1, 1, 1, 0), ("(all)", 2, 2, 2, 2, 0)], id="window"),
])
def test_a_filter_keeps_exactly_its_rows(folder: Path, filters: Filters, expected: list[tuple[Any, ...]]) -> None:
    with wc.open_audit(folder) as audit:
        narrowed = apply_filters(audit, filters)
        assert narrowed.filters == filters
        assert figures(narrowed) == expected


def test_a_filter_narrows_the_settings_the_analyses_list(folder: Path) -> None:
    with wc.open_audit(folder) as audit:
        narrowed = apply_filters(audit, Filters(webhooks=("wh-a",)))
        assert narrowed.webhooks.webhook_ids == ("wh-a",)
        assert wc.timeout_advice(narrowed).webhook_id.tolist() == ["wh-a"]
        assert set(wc.pairing_validation(narrowed).webhook_id) == {"wh-a"}


def test_states_stay_those_of_the_whole_replay(folder: Path) -> None:
    """A window ending before L1's answer does not make L1 waiting: states are as of the observation end."""
    with wc.open_audit(folder) as audit:
        narrowed = apply_filters(audit, Filters(until=datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)))
        assert narrowed.con.execute("SELECT lead_id, state FROM lead_outcomes").fetchall() == [("L1", "received")]
        assert narrowed.con.execute("SELECT count(*) FROM callback_outcomes").fetchall() == [(0,)]


@pytest.mark.parametrize(("filters", "message"), [
    (Filters(webhooks=("wh-x",)), "--webhook 'wh-x' is not in webhooks.json; it has wh-a, wh-b"),
    (Filters(advertisers=("nobody",)), "--advertiser 'nobody' is not in webhooks.json; it has acme, bolt"),
    (Filters(since=datetime(2026, 11, 21, tzinfo=UTC), until=datetime(2026, 11, 20, tzinfo=UTC)),
     "--until 2026-11-20T00:00:00+00:00 is not after --since 2026-11-21T00:00:00+00:00; give a window that ends "
     "after it starts"),
])
def test_a_filter_that_names_nothing_is_one_line(folder: Path, filters: Filters, message: str) -> None:
    with wc.open_audit(folder) as audit, pytest.raises(ReplayError) as raised:
        apply_filters(audit, filters)
    assert str(raised.value) == message


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("command", [("summary",), ("wait-times", "--out", "{tmp}/km.csv"),
                                     ("timeouts", "--out", "{tmp}/t.csv"), ("pairing", "--out", "{tmp}/p.csv"),
                                     ("timeline", "L2")])
def test_every_analysis_command_takes_the_filters(folder: Path, tmp_path: Path, command: tuple[str, ...]) -> None:
    name, *rest = command
    args = [a.replace("{tmp}", str(tmp_path)) for a in rest]
    result = invoke(name, folder, *args, "--advertiser", "acme", "--since", "2026-11-20T10:01:00Z")
    assert result.exit_code == 0, result.output
    assert "Only advertiser acme, since 2026-11-20T10:01:00+00:00" in ANSI.sub("", result.stderr).splitlines()
    refused = invoke(name, folder, *args, "--webhook", "wh-x")
    assert refused.exit_code == 1
    assert ANSI.sub("", refused.stderr).splitlines()[-1] == (
        "Error: --webhook 'wh-x' is not in webhooks.json; it has wh-a, wh-b")


def test_summary_of_one_advertiser_prints_only_its_webhooks(folder: Path) -> None:
    result = invoke("summary", folder, "--advertiser", "bolt")
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    assert "wh-b" in text and "wh-a" not in text
