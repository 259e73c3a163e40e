"""Chart builders, checked through their Vega-Lite specs (chart.to_dict()), not pixels."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import pytest

import webhook_core as wc
from webhook_core.analysis.pairing import discover_locations, near_misses
from webhook_core.analysis.rates import disagreements, lead_headline, rates
from webhook_core.analysis.survival import capture_curve, finishing_curve
from webhook_core.analysis.timeouts import timeout_advice, timeout_whatifs
from webhook_core.report import charts

from datasets import write_dataset


@pytest.fixture(scope="module")
def sample() -> Iterator[wc.Audit]:
    with wc.open_audit("data/sample") as audit:
        yield audit


def _encodings(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every encoding block in a (possibly layered or faceted) spec."""
    found = []
    stack = [spec]
    while stack:
        node = stack.pop()
        if "encoding" in node:
            found.append(node["encoding"])
        stack.extend(node.get("layer", []))
        if "spec" in node:
            stack.append(node["spec"])
    return found


def _titles(spec: dict[str, Any]) -> set[str]:
    return {channel["title"] for encoding in _encodings(spec) for channel in encoding.values()
            if isinstance(channel, dict) and isinstance(channel.get("title"), str)}


def build_all(con: duckdb.DuckDBPyConnection, webhooks: wc.WebhookVersions,
              source: Path) -> dict[str, alt.TopLevelMixin]:
    result = wc.replay(con, webhooks)
    audit = wc.Audit(con, webhooks, result.observation_end or None, source, read_only=False)
    return {
        "outcome": charts.outcome_chart(result.outcome_counts()),
        "rates": charts.rates_chart(rates(audit)),
        "lead_states": charts.lead_states_chart(lead_headline(audit)),
        "reasons": charts.reasons_chart(rates(audit)),
        "daily": charts.daily_rates_chart(rates(audit, per_day=True)),
        "disagreement": charts.disagreement_chart(disagreements(audit)),
        "km": charts.km_chart(capture_curve(audit)),
        "tradeoff": charts.timeout_tradeoff_chart(timeout_whatifs(audit), timeout_advice(audit)),
        "finishing": charts.finishing_chart(capture_curve(audit), finishing_curve(audit), timeout_advice(audit)),
        "discovery": charts.discovery_chart(discover_locations(audit)),
        "near_miss": charts.near_miss_chart(near_misses(audit)),
    }


def test_every_chart_has_a_title_and_axis_titles_with_units(sample: wc.Audit) -> None:
    for name, chart in build_all(sample.con, sample.webhooks, sample.source).items():
        spec = chart.to_dict()
        assert spec.get("title"), name
        titles = _titles(spec)
        assert titles, f"{name}: no axis titles"
        for encoding in _encodings(spec):
            for channel in ("x", "y"):
                if channel in encoding and "field" in encoding[channel]:
                    assert encoding[channel].get("title"), f"{name}: {channel} has no title"


def test_km_chart_draws_the_band_and_a_log_time_axis(sample: wc.Audit) -> None:
    spec = charts.km_chart(capture_curve(sample)).to_dict()
    layers = spec["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["area", "line"]
    band = layers[0]["encoding"]
    assert band["y"]["field"] == "ci_low" and band["y2"]["field"] == "ci_high"
    x = spec["encoding"]["x"] if "encoding" in spec else layers[0]["encoding"]["x"]
    assert x["scale"]["type"] == "log"
    assert "(s, log scale)" in x["title"]


def test_outcome_chart_uses_one_colour_per_outcome_in_rule_order(sample: wc.Audit) -> None:
    counts = wc.replay(sample.con, sample.webhooks).outcome_counts()
    spec = charts.outcome_chart(counts).to_dict()
    color = spec["encoding"]["color"]
    assert color["scale"]["domain"] == [o.value for o in wc.Outcome]
    assert color["scale"]["range"] == [charts.OUTCOME_COLORS[o.value] for o in wc.Outcome]


def _advice(*rows: tuple[str, int, float | None, float | None, float | None, float | None, float | None,
                         float | None]) -> Any:
    import pandas as pd

    columns = ["webhook_id", "answered", "current_timeout_s", "current_capture_rate", "mean_block_s_current",
               "recommended_timeout_s", "recommended_capture_rate", "mean_block_s_recommended"]
    return pd.DataFrame([dict(zip(columns, row, strict=True)) for row in rows]).astype(
        {c: float for c in columns[2:]})


def test_tradeoff_chart_marks_current_and_recommended_candidates_or_not() -> None:
    import pandas as pd

    whatifs = pd.DataFrame({"webhook_id": ["wh-a"] * 3 + ["wh-b"] * 2 + ["wh-c"],
                            "timeout_s": [5.0, 30.0, 60.0, 5.0, 30.0, 10.0],
                            "capture_rate": [0.2, 0.6, 0.9, 0.5, 0.95, 0.97],
                            "mean_block_s": [4.0, 20.0, 40.0, 5.0, 25.0, 8.0]})
    advice = _advice(
        ("wh-a", 9, 30.0, 0.6, 20.0, 45.0, 0.8, 30.0),      # current a candidate, recommended not
        ("wh-b", 4, None, 1.0, 500.0, 30.0, 0.95, 25.0),    # waits without a timeout; recommended a candidate
        ("wh-c", 3, 10.0, 0.97, 8.0, 10.0, 0.97, 8.0),      # current = recommended
        ("wh-d", 0, 10.0, None, 10.0, None, None, None),    # never answered: left out
    )
    data = charts.timeout_tradeoff_chart(whatifs, advice).data
    assert data[["webhook_id", "label", "mark", "capture_rate", "mean_block_s"]].values.tolist() == [
        ["wh-a", "5 s", "candidate", 0.2, 4.0], ["wh-a", "30 s", "current", 0.6, 20.0],
        ["wh-a", "45 s", "recommended", 0.8, 30.0], ["wh-a", "60 s", "candidate", 0.9, 40.0],
        ["wh-b", "5 s", "candidate", 0.5, 5.0], ["wh-b", "30 s", "recommended", 0.95, 25.0],
        ["wh-b", "no timeout", "current", 1.0, 500.0],
        ["wh-c", "10 s", "current = recommended", 0.97, 8.0],
    ]
    assert data["order"].is_monotonic_increasing  # the line runs through them by timeout, no timeout last


def test_tradeoff_chart_on_sample_marks_what_the_advice_says(sample: wc.Audit) -> None:
    whatifs = timeout_whatifs(sample, [5, 30, 60, 900])
    advice = timeout_advice(sample)
    data = charts.timeout_tradeoff_chart(whatifs, advice).data
    for row in advice.itertuples():
        points = data[data.webhook_id == row.webhook_id]
        recommended = points[points["mark"].str.contains("recommended")]
        assert recommended.timeout_s.tolist() == [row.recommended_timeout_s]
        assert recommended.capture_rate.tolist() == [row.recommended_capture_rate]
        current = points[points["mark"].str.startswith("current")]
        assert len(current) == 1 and current.capture_rate.tolist() == [row.current_capture_rate]


def test_finishing_chart_draws_both_curves_and_the_timeouts_per_webhook_that_waits(sample: wc.Audit) -> None:
    advice = timeout_advice(sample)
    chart = charts.finishing_chart(capture_curve(sample), finishing_curve(sample), advice)
    data = chart.data
    assert set(data.webhook_id) == set(advice.webhook_id) and "wh-nightly" not in set(data.webhook_id)
    finals = finishing_curve(sample).groupby("webhook_id").captured.max()
    for row in advice.itertuples():
        drawn = data[data.webhook_id == row.webhook_id]
        assert set(drawn.line) >= {charts.FIRST_CALLBACK, charts.FINISHING, charts.RECOMMENDED}
        assert drawn[drawn.line == charts.RECOMMENDED].t_s.tolist() == [row.recommended_timeout_s]
        current = drawn[drawn.line == charts.CURRENT].t_s.tolist()
        assert current == ([] if math.isnan(row.current_timeout_s) else [row.current_timeout_s])
        assert drawn[drawn.line == charts.FINISHING].captured.max() == finals[row.webhook_id]
    spec = chart.to_dict()
    assert spec["facet"]["field"] == "webhook_id"
    layers = spec["spec"]["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["line", "rule", "rule"]
    assert layers[0]["encoding"]["color"]["scale"]["domain"] == [
        charts.FIRST_CALLBACK, charts.FINISHING, charts.CURRENT, charts.RECOMMENDED]
    assert layers[0]["encoding"]["x"]["scale"]["type"] == "log"


def test_offline_renderer_is_png() -> None:
    charts.use_offline_renderer()
    assert alt.renderers.active == "png"
    bundle = charts.rates_chart(rates_fixture()).to_dict()
    assert bundle["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


def rates_fixture() -> Any:
    import pandas as pd

    # wh-a: 2 matched, 1 interim, 1 late of 4; wh-q: no callback (no bar); (all) is never drawn.
    reasons = {f"404_{r}": [1 if r == "late" else 0, 0, 1 if r == "late" else 0] for r in wc.REASONS_404}
    return pd.DataFrame({"webhook_id": ["wh-a", "wh-q", "(all)"], "callbacks": [4, 0, 4], "matched": [2, 0, 2],
                         "interim": [1, 0, 1], **reasons})


def test_rates_chart_stacks_matched_interim_and_each_404_reason_to_one_per_bar() -> None:
    chart = charts.rates_chart(rates_fixture())
    data = chart.data
    assert set(data.webhook_id) == {"wh-a"}
    shares = dict(zip(data.outcome, data.share, strict=True))
    assert shares == {"matched": 0.5, "interim": 0.25, "404: late": 0.25,
                      **{f"404: {r}": 0.0 for r in wc.REASONS_404 if r != "late"}}
    encoding = chart.to_dict()["encoding"]
    assert encoding["x"]["stack"] == "zero" and encoding["x"]["field"] == "share"
    # One colour per outcome, the outcome chart's.
    domain = ["matched", "interim", *(f"404: {r}" for r in wc.REASONS_404)]
    assert encoding["color"]["scale"]["domain"] == domain
    assert encoding["color"]["scale"]["range"] == [charts.OUTCOME_COLORS[d.removeprefix("404: ")] for d in domain]


def test_rates_chart_on_sample_shows_interim_so_refco_adds_up_to_one(sample: wc.Audit) -> None:
    data = charts.rates_chart(rates(sample)).data
    assert (data.groupby("webhook_id").share.sum() - 1).abs().max() < 1e-12
    refco = sample.con.execute("SELECT count(*) FILTER (outcome = 'interim') / count(*) FROM callback_outcomes "
                               "WHERE webhook_id = 'wh-refco'").fetchone()
    assert refco is not None and refco[0] > 0
    assert data[(data.webhook_id == "wh-refco") & (data.outcome == "interim")].share.item() == refco[0]


def test_lead_states_chart_splits_leads_into_four_disjoint_parts_from_the_replays_leads(sample: wc.Audit) -> None:
    chart = charts.lead_states_chart(lead_headline(sample))
    data = chart.data
    leads = sample.con.execute("SELECT webhook_id, state, callbacks FROM lead_outcomes").df()
    part = leads.state.where(leads.callbacks > 0, "never called back").map(
        {"received": "answered in time", "timed_out": "timed out after a callback",
         "waiting": "still waiting after a callback", "never called back": "never called back"})
    expected = leads.assign(part=part).groupby(["webhook_id", "part"]).size()
    drawn = data.set_index(["webhook_id", "state"]).n
    assert {k: v for k, v in drawn.items() if v} == dict(expected.items())
    assert (data.groupby("webhook_id").share.sum() - 1).abs().max() < 1e-12
    # (unknown) has callbacks but no leads: no bar.
    assert "(unknown)" not in set(data.webhook_id) and "(all)" not in set(data.webhook_id)
    encoding = chart.to_dict()["encoding"]
    assert encoding["x"]["stack"] == "zero"
    assert encoding["color"]["scale"]["domain"] == list(charts.LEAD_SEGMENTS)
    assert len(set(encoding["color"]["scale"]["range"])) == 4


def test_km_chart_thins_a_huge_curve_but_keeps_its_ends() -> None:
    import numpy as np
    import pandas as pd

    t = np.sort(np.random.default_rng(1).lognormal(2, 1.5, 100_000))
    curve = pd.DataFrame({"webhook_id": "wh-big", "t_s": t, "at_risk": np.arange(100_000, 0, -1), "events": 1,
                          "captured": np.arange(1, 100_001) / 100_000, "ci_low": np.nan, "ci_high": np.nan})
    data = charts.km_chart(curve).data
    assert 50 < len(data) <= 401
    assert data["captured"].is_monotonic_increasing
    assert data["captured"].iloc[-1] == 1.0 and data["t_s"].iloc[-1] == t[-1]


def test_km_chart_starts_each_curve_at_zero_so_a_single_step_shows() -> None:
    import pandas as pd

    # One lead, answered at 7 s: a curve of one step, which a step line alone draws as a lone point.
    curve = pd.DataFrame({"webhook_id": ["wh-one"], "t_s": [7.0], "at_risk": [1], "events": [1], "captured": [1.0],
                          "ci_low": [1.0], "ci_high": [1.0]})
    chart = charts.km_chart(curve)
    data = chart.data
    assert data[["t_s", "captured", "ci_low", "ci_high", "events"]].values.tolist() == [
        [7.0, 0.0, 0.0, 0.0, 0], [7.0, 1.0, 1.0, 1.0, 1]]
    line = chart.to_dict()["layer"][1]
    assert line["encoding"]["order"]["field"] == "step"


def test_tradeoff_chart_leaves_out_webhooks_never_answered(sample: wc.Audit) -> None:
    whatifs = timeout_whatifs(sample, [5, 30])
    advice = timeout_advice(sample)
    silent = whatifs[whatifs.webhook_id == "wh-fastpay"].assign(webhook_id="wh-silent", ever_answered=0,
                                                                 capture_rate=float("nan"))
    unanswered = advice[advice.webhook_id == "wh-fastpay"].assign(
        webhook_id="wh-silent", answered=0, current_capture_rate=float("nan"), recommended_timeout_s=float("nan"),
        recommended_capture_rate=float("nan"), mean_block_s_recommended=float("nan"))
    import pandas as pd

    data = charts.timeout_tradeoff_chart(pd.concat([whatifs, silent], ignore_index=True),
                                         pd.concat([advice, unanswered], ignore_index=True)).data
    assert "wh-silent" not in set(data.webhook_id) and set(data.webhook_id) == set(whatifs.webhook_id)


def test_every_chart_builds_from_empty_tables(tmp_path: Path) -> None:
    """A dataset where nothing resolves: every analysis table is empty, and no chart may warn (a tooltip
    field's type cannot be inferred from no rows) or fail."""
    folder = write_dataset(tmp_path / "void", [{"webhook_id": "wh-n", "advertiser_id": "n", "wait": False}],
                           [{"lead_id": "L1", "conversion_id": "PC-1", "advertiser_id": "n", "external_id": None,
                             "webhook_id": "wh-n", "created_at": "2026-11-20T10:00:00Z"}],
                           [{"received_at": "2026-11-20T10:00:05Z", "url": "/webhooks/wh-zzz?pcid=PC-1",
                             "response_status": 404}])
    con = wc.connect()
    loaded = wc.load_dataset(con, folder)
    built = build_all(con, loaded.webhooks, folder)
    assert len(built["km"].data) == len(built["tradeoff"].data) == len(built["finishing"].data) == 0
    for name, chart in built.items():
        assert chart.to_dict()["$schema"], name
    con.close()
