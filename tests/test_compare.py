"""Period comparison (webhook_core.analysis.compare, ``webhook-audit compare``; docs/analysis.md, "Period
comparison"): the statistics against scipy computed here independently, Holm's correction on known values,
exact rows on hand-made pairs, and the acceptance test on generated data: one advertiser degraded in AFTER
while every webhook is drawn again with another seed is flagged, and nothing else is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from scipy import stats

from webhook_core import Audit, compare, compare_split, open_audit, rates, timeout_advice
from webhook_core.analysis.compare import COMPARE_COLUMNS, holm, two_proportions
from webhook_core.analysis.survival import finishing_curve, finishing_waits_sql
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.cli import cli
from webhook_core.cli.compare_commands import FLAGGED_TITLE
from webhook_core.synth.generate import generate

from datasets import write_dataset

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
T0 = datetime(2026, 11, 2, tzinfo=UTC)
#: Where the split dataset's planted change starts.
SPLIT = datetime(2026, 11, 5, tzinfo=UTC)
WEBHOOKS = [{"webhook_id": "wh-a", "advertiser_id": "acme", "wait": True, "timeout_s": 60},
            {"webhook_id": "wh-b", "advertiser_id": "bravo", "wait": False}]


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def lead(name: str, webhook: str, created_s: float) -> dict[str, Any]:
    return {"lead_id": name, "conversion_id": f"C-{name}", "advertiser_id": "acme" if webhook == "wh-a" else "bravo",
            "external_id": None, "webhook_id": webhook, "created_at": at(created_s)}


def call(name: str, webhook: str, pcid: str, received_s: float) -> dict[str, Any]:
    return {"request_id": name, "received_at": at(received_s), "url": f"/webhooks/{webhook}?pcid={pcid}"}


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def table_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the table printed under ``title``, split into cells."""
    lines = [line.rstrip() for line in ANSI.sub("", text).splitlines()]
    start = lines.index(title)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([c.strip() for c in line.strip()[1:-1].split("│")])
    return rows


def wilson(x: int, n: int) -> tuple[float, float]:
    interval = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval of x2/n2 − x1/n1 (his method 10), from scipy's Wilson intervals."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson(x1, n1), wilson(x2, n2)
    return p2 - p1 - math.hypot(p2 - l2, u1 - p1), p2 - p1 + math.hypot(u2 - p2, p1 - l1)


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """The pooled z-test's two-sided p: the χ² test of the 2×2 table without continuity correction."""
    if x1 + x2 in (0, n1 + n2):
        return 1.0  # nothing varies; scipy refuses a table with an expected count of 0
    return float(stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False).pvalue)


# --------------------------------------------------------------------------- the statistics


def test_two_proportions_by_hand() -> None:
    """80/100 before, 60/100 after: change −0.20, Newcombe's interval from scipy's Wilson bounds, p from the
    χ² test of the table (equal to the pooled z-test's)."""
    result = two_proportions(np.array([80]), np.array([100]), np.array([60]), np.array([100])).iloc[0]
    assert result["before"] == 0.8 and result["after"] == 0.6
    assert result["change"] == pytest.approx(-0.2, abs=1e-15)
    low, high = newcombe(80, 100, 60, 100)
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert result["p_value"] == pytest.approx(two_proportion_p(80, 100, 60, 100), rel=1e-9)
    z = -0.2 / math.sqrt(0.7 * 0.3 * (1 / 100 + 1 / 100))  # pooled share 140/200
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)


def test_a_design_effect_of_two_counts_as_half_the_callbacks() -> None:
    """Clustered callbacks (a retry storm) carry less information than as many independent ones: with a design
    effect of 2 on each side, 80/100 against 60/100 is tested and bounded as 40/50 against 30/50."""
    clustered = two_proportions(np.array([80]), np.array([100]), np.array([60]), np.array([100]),
                                np.array([2.0]), np.array([2.0])).iloc[0]
    halved = two_proportions(np.array([40]), np.array([50]), np.array([30]), np.array([50])).iloc[0]
    for column in ("change", "ci_low", "ci_high", "p_value"):
        assert clustered[column] == pytest.approx(halved[column], rel=1e-12), column
    assert clustered["p_value"] > two_proportion_p(80, 100, 60, 100)


def test_holm_on_known_p_values() -> None:
    """m = 4: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 give 0.02, 0.03, 0.06, 0.04; step-down keeps
    each at least the one before (0.04 → 0.06); in the order given."""
    assert holm(np.array([0.01, 0.04, 0.03, 0.005])) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm(np.array([0.5, 0.6])).tolist() == [1.0, 1.0]  # capped at 1
    assert holm(np.array([])).tolist() == []


# --------------------------------------------------------------------------- exact rows on a hand-made pair


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Audit, Audit]]:
    """wh-a waits 60 s, wh-b does not wait. Before: wh-a's leads answered after 5, 10, 20 s, the fourth never
    (censored at 700 s); after: 10 (a tie across the sides), 40 and 90 s (late: past the timeout), the fourth
    never. A not_found call at 1000 s ends both observations. wh-b: one of two leads answered before, both after."""
    folder = tmp_path_factory.mktemp("hand")
    leads = [lead("A1", "wh-a", 0), lead("A2", "wh-a", 100), lead("A3", "wh-a", 200), lead("A4", "wh-a", 300),
             lead("B1", "wh-b", 0), lead("B2", "wh-b", 50)]
    nowhere = call("nf", "wh-a", "NOPE", 1000)
    before = write_dataset(folder / "before", WEBHOOKS, leads, [
        call("a1", "wh-a", "C-A1", 5), call("a2", "wh-a", "C-A2", 110), call("a3", "wh-a", "C-A3", 220), nowhere,
        call("b1", "wh-b", "C-B1", 60)])
    after = write_dataset(folder / "after", WEBHOOKS, leads, [
        call("a1", "wh-a", "C-A1", 10), call("a2", "wh-a", "C-A2", 140), call("a3", "wh-a", "C-A3", 290), nowhere,
        call("b1", "wh-b", "C-B1", 60), call("b2", "wh-b", "C-B2", 110)])
    with open_audit(before) as first, open_audit(after) as second:
        yield first, second


def test_exact_rows_on_a_hand_made_pair(hand_made: tuple[Audit, Audit]) -> None:
    frame = compare(*hand_made)
    assert list(frame.columns) == ["webhook_id", *COMPARE_COLUMNS]
    zero = ("404_duplicate", "404_early", "404_no_identifiers", "404_unknown_token", "404_wrong_webhook")
    # (x, n) before and after per rate row
    counted = {
        ("wh-a", "answer_rate"): (3, 4, 2, 4), ("wh-a", "match_rate"): (3, 4, 2, 4),
        ("wh-a", "rate_404"): (1, 4, 2, 4), ("wh-a", "404_late"): (0, 4, 1, 4),
        ("wh-a", "404_not_found"): (1, 4, 1, 4), ("wh-a", "capture_rate"): (3, 3, 2, 3),
        **{("wh-a", metric): (0, 4, 0, 4) for metric in zero},
        ("wh-b", "answer_rate"): (1, 2, 2, 2), ("wh-b", "match_rate"): (1, 1, 2, 2),
        ("wh-b", "rate_404"): (0, 1, 0, 2), ("wh-b", "404_late"): (0, 1, 0, 2),
        ("wh-b", "404_not_found"): (0, 1, 0, 2), **{("wh-b", metric): (0, 1, 0, 2) for metric in zero},
    }
    rows = {(r["webhook_id"], r["metric"]): r for r in frame.to_dict("records")}
    # wh-b does not wait: no finishing wait, no timeout to keep answers.
    assert set(rows) == {*counted, ("wh-a", "wait_median_s"), ("wh-a", "wait_p90_s")}
    for key, (x1, n1, x2, n2) in counted.items():
        row = rows[key]
        assert (row["n_before"], row["n_after"]) == (n1, n2), key
        assert (row["before"], row["after"]) == (x1 / n1, x2 / n2), key
        assert row["change"] == pytest.approx(x2 / n2 - x1 / n1, abs=1e-15), key
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(newcombe(x1, n1, x2, n2), abs=1e-12), key
        assert row["p_value"] == pytest.approx(two_proportion_p(x1, n1, x2, n2), rel=1e-9), key
        assert row["worse"] == (key in {("wh-a", "answer_rate"), ("wh-a", "match_rate"), ("wh-a", "rate_404"),
                                        ("wh-a", "404_late"), ("wh-a", "capture_rate")}), key
    # Kaplan–Meier: before 5, 10, 20 s and one censored at 700 s reach 1/2 at 10 s; after, at 40 s; neither 0.9.
    median, p90 = rows[("wh-a", "wait_median_s")], rows[("wh-a", "wait_p90_s")]
    assert (median["before"], median["after"], median["change"]) == (10.0, 40.0, 30.0)
    assert math.isnan(p90["before"]) and math.isnan(p90["after"]) and math.isnan(p90["change"])
    logrank = stats.logrank(stats.CensoredData(uncensored=[5, 10, 20], right=[700]),
                            stats.CensoredData(uncensored=[10, 40, 90], right=[700])).pvalue
    for row in (median, p90):
        assert (row["n_before"], row["n_after"]) == (4, 4)
        assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
        assert row["p_value"] == pytest.approx(logrank, rel=1e-9)
    assert median["worse"] and not p90["worse"]
    # Holm over 21 rate tests and one log-rank test (the median and p90 rows share it).
    family = [rows[key]["p_value"] for key in counted] + [logrank]
    adjusted = dict(zip([*counted, "waits"], holm(np.array(family)), strict=True))
    for key, row in rows.items():
        want = adjusted["waits"] if key[1].startswith("wait_") else adjusted[key]
        assert row["p_holm"] == pytest.approx(want, rel=1e-9), key
    assert frame.attrs["tests"] == 22
    assert not frame["flagged"].any()
    # Nothing flagged: changes in the bad direction first, each part by p-value.
    assert frame["worse"].tolist() == sorted(frame["worse"], reverse=True)
    for _, part in frame.groupby("worse"):
        assert part["p_value"].tolist() == sorted(part["p_value"])


def test_by_advertiser_groups_leads_by_their_advertiser(hand_made: tuple[Audit, Audit]) -> None:
    frame = compare(*hand_made, by="advertiser_id")
    assert frame.columns[0] == "advertiser_id"
    by_webhook = compare(*hand_made).replace({"webhook_id": {"wh-a": "acme", "wh-b": "bravo"}})
    key = ["advertiser_id", "metric"]
    assert frame.sort_values(key, ignore_index=True).equals(
        by_webhook.rename(columns={"webhook_id": "advertiser_id"}).sort_values(key, ignore_index=True))


def test_min_change_and_alpha(stark: tuple[Path, Path], generated: dict[str, Audit]) -> None:
    """A rate's min_change is in proportion points (a change of exactly min_change counts); a wait's is relative
    to its value before; alpha bounds the p-value after Holm's correction."""
    with open_audit(stark[0]) as first, open_audit(stark[1]) as second:
        def flagged(**options: float) -> list[str]:
            frame = compare(first, second, **options)  # type: ignore[arg-type]
            return frame[frame["flagged"]]["metric"].tolist()

        assert flagged() == ["answer_rate", "404_not_found", "match_rate", "rate_404"]
        assert flagged(min_change=0.98) == ["answer_rate"]  # -100 pp; the others ±97.6 pp
        assert flagged(min_change=1.0) == ["answer_rate"]
        assert flagged(alpha=1e-12) == ["answer_rate"]  # p ≈ 4e-19 × 11; the others ≈ 1e-6
    frame = compare(generated["before"], generated["degraded"], min_change=5.0)
    median = frame[(frame["webhook_id"] == "wh-fastpay") & (frame["metric"] == "wait_median_s")].iloc[0]
    relative = median["change"] / median["before"]
    assert relative > 5  # fastpay's median wait is several times longer: no rate can change by 500 points
    for share, wanted in ((relative * 0.99, [("wh-fastpay", "wait_median_s")]), (relative * 1.01, [])):
        frame = compare(generated["before"], generated["degraded"], min_change=share)
        assert frame[frame["flagged"]][["webhook_id", "metric"]].apply(tuple, axis=1).tolist() == wanted


# --------------------------------------------------------------------------- generated data: the acceptance test


def degrade(folder: Path, webhook: str, *, since: datetime | None = None, drop: float = 0.4,
            delay_s: float = 20.0, seed: int = 0) -> None:
    """The advertiser answers less often and later: of the callbacks to ``webhook`` (received at or after
    ``since``), drop a share and send the rest ``delay_s`` later. Lines that are no callback stay as written."""
    path = folder / "callbacks.jsonl"
    rng = np.random.default_rng(seed)
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            received = datetime.fromisoformat(record["received_at"])
        except ValueError:  # the generator's planted garbage lines
            kept.append(line)
            continue
        if record["url"].startswith(f"/webhooks/{webhook}?") and (since is None or received >= since):
            if rng.random() < drop:
                continue
            record["received_at"] = (received + timedelta(seconds=delay_s)).isoformat().replace("+00:00", "Z")
        kept.append(json.dumps(record))
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Audit]]:
    """Before (seed 106), after (seed 107: every webhook drawn again) and after with fastpay degraded. The seeds
    are ones where the plain per-callback test, blind to wh-retry's storms, flags wh-retry's 404s."""
    folder = tmp_path_factory.mktemp("generated")
    generate(folder / "before", leads=4000, seed=106)
    generate(folder / "after", leads=4000, seed=107)
    generate(folder / "degraded", leads=4000, seed=107)
    degrade(folder / "degraded", "wh-fastpay")
    audits = {name: open_audit(folder / name) for name in ("before", "after", "degraded")}
    yield audits
    for audit in audits.values():
        audit.close()


@pytest.mark.parametrize(("by", "degraded"), [("webhook_id", "wh-fastpay"), ("advertiser_id", "fastpay")])
def test_a_planted_regression_is_flagged_and_nothing_else(generated: dict[str, Audit], by: str,
                                                          degraded: str) -> None:
    frame = compare(generated["before"], generated["degraded"], by=by)  # type: ignore[arg-type]
    flagged = frame[frame["flagged"]]
    assert set(flagged[by]) == {degraded}
    assert {"answer_rate", "wait_median_s"} <= set(flagged["metric"])
    assert flagged["worse"].all()
    assert frame["flagged"].tolist() == sorted(frame["flagged"], reverse=True)  # printed first


@pytest.mark.parametrize("by", ["webhook_id", "advertiser_id"])
def test_only_the_random_draw_differs_nothing_is_flagged(generated: dict[str, Audit], by: str) -> None:
    frame = compare(generated["before"], generated["after"], by=by)  # type: ignore[arg-type]
    assert frame["p_value"].notna().sum() > 50  # many tests, each a chance to be wrong
    assert not frame["flagged"].any()


def test_the_figures_agree_with_the_other_analyses_and_scipy(generated: dict[str, Audit]) -> None:
    """Counts equal rates(), the capture rate timeout_advice()'s, the medians the finishing curve's, and the
    log-rank p-value scipy's on the leads' finishing waits."""
    before, after = generated["before"], generated["degraded"]
    frame = compare(before, after)
    rows = {(r["webhook_id"], r["metric"]): r for r in frame.to_dict("records")}
    counts = rates(before).set_index("webhook_id")
    for webhook, row in counts.drop(index="(all)").iterrows():
        assert rows[(webhook, "match_rate")]["n_before"] == row["callbacks"]
        assert rows[(webhook, "rate_404")]["before"] == pytest.approx(row["rate_404"], rel=1e-12)
        if row["leads"]:
            assert rows[(webhook, "answer_rate")]["before"] == row["received"] / row["leads"]
    for advice in timeout_advice(before).to_dict("records"):
        assert rows[(advice["webhook_id"], "capture_rate")]["before"] == pytest.approx(
            advice["current_capture_rate"], rel=1e-12)
    curve = finishing_curve(before)
    for webhook, steps in curve.groupby("webhook_id"):
        assert rows[(webhook, "wait_median_s")]["before"] == steps[steps["captured"] >= 0.5 - 1e-12]["t_s"].min()

    def waits(audit: Audit) -> pd.DataFrame:
        return audit.con.execute(f"""SELECT webhook_id, coalesce(wait_us, end_us - created_us) / 1e6 AS t,
                                            wait_us IS NOT NULL AS event
                                     FROM ({finishing_waits_sql()}) WHERE created_us <= end_us""").df()

    first, second = waits(before), waits(after)
    for webhook in sorted(set(first["webhook_id"])):
        sides = [w[w["webhook_id"] == webhook] for w in (first, second)]
        data = [stats.CensoredData(uncensored=s["t"][s["event"]].to_numpy(), right=s["t"][~s["event"]].to_numpy())
                for s in sides]
        assert rows[(webhook, "wait_median_s")]["p_value"] == pytest.approx(stats.logrank(*data).pvalue,
                                                                              rel=1e-9, abs=1e-300)


# --------------------------------------------------------------------------- one dataset, --split-at


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One week (seed 6: the plain test flags wh-retry here too); fastpay degrades from SPLIT on."""
    folder = tmp_path_factory.mktemp("split") / "dataset"
    generate(folder, leads=4000, seed=6)
    degrade(folder, "wh-fastpay", since=SPLIT)
    return folder


def test_split_at_compares_the_periods_of_one_dataset(split_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.csv"
    result = invoke("compare", split_dataset, "--split-at", SPLIT.isoformat(), "--out", out)
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    # Two opens narrowed with the filters: before until TS, after since TS.
    with open_audit(split_dataset) as first, open_audit(split_dataset) as second:
        want = compare(apply_filters(first, Filters(until=SPLIT)), apply_filters(second, Filters(since=SPLIT)))
    assert list(written.columns) == list(want.columns)
    assert written[["webhook_id", "metric", "flagged", "n_before", "n_after"]].equals(
        want[["webhook_id", "metric", "flagged", "n_before", "n_after"]])
    for column in ("before", "after", "change", "ci_low", "ci_high", "p_value", "p_holm"):
        np.testing.assert_allclose(written[column], want[column], rtol=1e-12, equal_nan=True)
    assert set(written[written["flagged"]]["webhook_id"]) == {"wh-fastpay"}
    flagged = table_rows(result.output, FLAGGED_TITLE)
    assert {row[0] for row in flagged} == {"wh-fastpay"} and {row[-1] for row in flagged} == {"worse"}


def test_split_at_with_filters_and_the_audit_given_back(split_dataset: Path) -> None:
    """The filters narrow both periods; the audit is given back narrowed as it came, not to the last period."""
    with open_audit(split_dataset) as audit:
        whole = rates(audit)
        frame = compare_split(audit, SPLIT, filters=Filters(advertisers=("fastpay",)))
        assert set(frame["webhook_id"]) == {"wh-fastpay"}
        pd.testing.assert_frame_equal(rates(audit), whole)
        narrowed = apply_filters(audit, Filters(webhooks=("wh-retry",)))
        only = rates(narrowed)
        assert set(compare_split(narrowed, SPLIT)["webhook_id"]) == {"wh-retry"}
        pd.testing.assert_frame_equal(rates(narrowed), only)


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def stark(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """wh-a's 40 leads all answered after 5 s before; none after. One not_found call on each side."""
    folder = tmp_path_factory.mktemp("stark")
    leads = [lead(f"A{i}", "wh-a", 10 * i) for i in range(40)]
    nowhere = call("nf", "wh-a", "NOPE", 1000)
    before = write_dataset(folder / "before", WEBHOOKS[:1], leads,
                           [call(f"a{i}", "wh-a", f"C-A{i}", 10 * i + 5) for i in range(40)] + [nowhere])
    after = write_dataset(folder / "after", WEBHOOKS[:1], leads, [nowhere])
    return before, after


def test_the_command_prints_the_flagged_rows_first_and_writes_every_row(stark: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "compare.parquet"
    result = invoke("compare", *stark, "--out", out)
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.output)
    # 10 rate tests (capture has no answer after: no test) and one log-rank test.
    assert "11 tests; flagged: p < 0.05 after Holm's correction across all of them, and a change\nof at least 5 " \
           "percentage points (finishing waits: 5 % of the value before)." in text
    answer = newcombe(40, 40, 0, 40)
    found = newcombe(1, 41, 1, 1)
    assert table_rows(result.output, FLAGGED_TITLE) == [
        ["wh-a", "answer_rate", "100.0%", "0.0%", "-100.0 pp", f"{answer[0] * 100:+.1f}, {answer[1] * 100:+.1f}",
         "<0.001", "worse"],
        ["wh-a", "404_not_found", "2.4%", "100.0%", "+97.6 pp", f"{found[0] * 100:+.1f}, {found[1] * 100:+.1f}",
         "<0.001", "worse"],
        ["wh-a", "match_rate", "97.6%", "0.0%", "-97.6 pp", f"{-found[1] * 100:+.1f}, {-found[0] * 100:+.1f}",
         "<0.001", "worse"],
        ["wh-a", "rate_404", "2.4%", "100.0%", "+97.6 pp", f"{found[0] * 100:+.1f}, {found[1] * 100:+.1f}",
         "<0.001", "worse"],
    ]
    with open_audit(stark[0]) as first, open_audit(stark[1]) as second:
        want = compare(first, second)
    pd.testing.assert_frame_equal(pd.read_parquet(out), want, check_dtype=False)
    assert text.index(FLAGGED_TITLE) < text.index("Every metric, worst regression first")
    assert "* flagged. Not shown: 6 rates that are 0 on both sides." in text


def test_the_printed_tables_fit_100_columns(generated: dict[str, Audit], tmp_path: Path) -> None:
    folders = [generated[name].source for name in ("before", "degraded")]
    result = CliRunner(env={"COLUMNS": "100"}).invoke(cli, ["compare", *map(str, folders), "--by", "advertiser"])
    assert result.exit_code == 0, result.output
    tables = [line for line in ANSI.sub("", result.output).splitlines() if line.startswith(("│", "┃", "┏"))]
    assert tables and max(len(line) for line in tables) <= 100
    assert "(1/2)" not in result.output  # not split either


@pytest.mark.parametrize(("args", "message"), [
    (["{before}"], "Error: {before}: nothing to compare it with; give AFTER (a second dataset or audit database) "
                   "or --split-at TS to cut this one in two"),
    (["{before}", "{after}", "--split-at", "2026-11-02T00:05:00Z"],
     "Error: {after}: --split-at cuts one dataset in two; give AFTER or --split-at, not both"),
    (["{before}", "--split-at", "2026-11-02T00:05:00Z", "--since", "2026-11-02T00:10:00Z"],
     "Error: --split-at 2026-11-02T00:05:00+00:00 is not inside the window (since 2026-11-02T00:10:00+00:00), so "
     "one period would be empty; split inside --since/--until"),
    (["{before}", "{after}", "--advertiser", "nobody"],
     "Error: --advertiser 'nobody' is not in webhooks.json; it has acme"),
])
def test_a_users_mistake_is_one_line(stark: tuple[Path, Path], args: list[str], message: str) -> None:
    names = {"before": str(stark[0]), "after": str(stark[1])}
    result = invoke("compare", *(a.format(**names) for a in args))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == message.format(**names)
    assert "Traceback" not in result.output
