"""The generator's planted truth against the replay (webhook_core/generate.py).

Each generated callback carries the outcome and lead its profile planted, worked out from how
it was sent and not by running the replay; the sample's recorded production answers are built
from them. Here the replay must find exactly what was planted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from webhook_core import Outcome, connect, load_dataset, replay
from webhook_core.synth.generate import generate

#: Outcomes the generator's profiles do not produce: `refused` is a line the receiver refused at capture time.
NOT_GENERATED = {"refused"}


@pytest.mark.parametrize("seed", [7, 8])
def test_planted_outcomes_and_leads_are_the_replays(tmp_path: Path, seed: int) -> None:
    made = generate(tmp_path / "g", leads=3000, seed=seed)
    con = connect()
    try:
        replay(con, load_dataset(con, made.path).webhooks)
        replayed = con.execute("SELECT request_id, outcome, lead_id FROM callback_outcomes ORDER BY request_id").df()
    finally:
        con.close()
    planted = made.planted.sort_values("request_id", ignore_index=True)
    assert planted.request_id.tolist() == replayed.request_id.tolist()
    both = planted.join(replayed[["outcome", "lead_id"]], rsuffix="_replayed")
    differ = both[(both.outcome != both.outcome_replayed)
                  | (both.lead_id.fillna("") != both.lead_id_replayed.fillna(""))]
    assert differ.empty, f"{len(differ)} callbacks differ, e.g.\n{differ.head(10).to_string()}"
    assert set(planted.outcome) == {o.value for o in Outcome} - NOT_GENERATED


def test_recorded_answers_are_the_planted_status_codes_but_for_the_incidents(tmp_path: Path) -> None:
    made = generate(tmp_path / "g", leads=1000, seed=5)
    rows = []
    for line in (made.path / "callbacks.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off mid-write
        if row["received_at"].startswith("2026-"):  # not a copy written by a misconfigured logger
            rows.append(row)
    lines = pd.DataFrame(rows)
    recorded = made.planted.merge(lines[["request_id", "response_status", "received_at"]], on="request_id",
                                  validate="one_to_one")
    assert len(recorded) == made.callbacks
    expected = recorded.outcome.isin(["matched", "interim"]).map({True: 200, False: 404})
    incident = (recorded.response_status == 502) | (
        (recorded.outcome == "duplicate") & recorded.received_at.str.startswith("2026-11-06"))
    assert (recorded.response_status[~incident] == expected[~incident]).all()
    assert (recorded.response_status[incident & (recorded.response_status != 502)] == 200).all()
    assert (recorded.response_status == 502).any() and (incident & (recorded.response_status == 200)).any()
