"""Chart builders, checked through their Vega-Lite specs (chart.to_dict()), not pixels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import pytest

import webhook_core as wc
from webhook_core.analysis.pairing import discover_locations, near_misses
from webhook_core.analysis.rates import disagreements, rates
from webhook_core.analysis.survival import capture_curve
from webhook_core.analysis.timeouts import timeout_whatifs
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
        "reasons": charts.reasons_chart(rates(audit)),
        "daily": charts.daily_rates_chart(rates(audit, per_day=True)),
        "disagreement": charts.disagreement_chart(disagreements(audit)),
        "km": charts.km_chart(capture_curve(audit)),
        "tradeoff": charts.timeout_tradeoff_chart(timeout_whatifs(audit)),
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


def test_tradeoff_chart_marks_current_and_recommended(sample: wc.Audit) -> None:
    whatifs = timeout_whatifs(sample, [5, 30, 60, 900])
    chart = charts.timeout_tradeoff_chart(whatifs)
    data = chart.data
    marks = dict(zip(zip(data.webhook_id, data.timeout_s, strict=True), data["mark"], strict=True))
    assert marks[("wh-fastpay", 30.0)] == "current = recommended"
    assert marks[("wh-slowbank", 60.0)] == "current"
    assert marks[("wh-slowbank", 900.0)] == "recommended"
    assert marks[("wh-fastpay", 5.0)] == "candidate"


def test_offline_renderer_is_png() -> None:
    charts.use_offline_renderer()
    assert alt.renderers.active == "png"
    bundle = charts.rates_chart(rates_fixture()).to_dict()
    assert bundle["$schema"].startswith("https://vega.github.io/schema/vega-lite/")


def rates_fixture() -> Any:
    import pandas as pd

    return pd.DataFrame({"webhook_id": ["wh-a", "(all)"], "match_rate": [0.5, 0.5], "rate_404": [0.5, 0.5]})


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
    silent = whatifs[whatifs.webhook_id == "wh-fastpay"].assign(webhook_id="wh-silent", ever_answered=0,
                                                                 capture_rate=float("nan"))
    import pandas as pd

    data = charts.timeout_tradeoff_chart(pd.concat([whatifs, silent], ignore_index=True)).data
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
    assert len(built["km"].data) == len(built["tradeoff"].data) == 0
    for name, chart in built.items():
        assert chart.to_dict()["$schema"], name
    con.close()
