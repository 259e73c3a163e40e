"""Chart builders, checked through their Vega-Lite specs (chart.to_dict()), not pixels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import altair as alt
import duckdb
import pytest

import webhook_core as wc
from webhook_core import charts
from webhook_core.pairing import discover_locations, near_misses
from webhook_core.rates import disagreements, rates
from webhook_core.survival import capture_curve
from webhook_core.timeouts import timeout_whatifs


@pytest.fixture(scope="module")
def sample() -> Iterator[tuple[duckdb.DuckDBPyConnection, wc.Dataset]]:
    con = wc.connect()
    loaded = wc.load_dataset(con, "data/sample")
    wc.replay(con, loaded.webhooks)
    yield con, loaded
    con.close()


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


def build_all(con: duckdb.DuckDBPyConnection, loaded: wc.Dataset) -> dict[str, alt.TopLevelMixin]:
    result = wc.replay(con, loaded.webhooks)
    return {
        "outcome": charts.outcome_chart(result.outcome_counts()),
        "rates": charts.rates_chart(rates(con)),
        "reasons": charts.reasons_chart(rates(con)),
        "daily": charts.daily_rates_chart(rates(con, per_day=True)),
        "disagreement": charts.disagreement_chart(disagreements(con)),
        "km": charts.km_chart(capture_curve(con)),
        "tradeoff": charts.timeout_tradeoff_chart(timeout_whatifs(con, loaded.webhooks)),
        "discovery": charts.discovery_chart(discover_locations(con, loaded.webhooks)),
        "near_miss": charts.near_miss_chart(near_misses(con, loaded.webhooks)),
    }


def test_every_chart_has_a_title_and_axis_titles_with_units(sample: Any) -> None:
    for name, chart in build_all(*sample).items():
        spec = chart.to_dict()
        assert spec.get("title"), name
        titles = _titles(spec)
        assert titles, f"{name}: no axis titles"
        for encoding in _encodings(spec):
            for channel in ("x", "y"):
                if channel in encoding and "field" in encoding[channel]:
                    assert encoding[channel].get("title"), f"{name}: {channel} has no title"


def test_km_chart_draws_the_band_and_a_log_time_axis(sample: Any) -> None:
    spec = charts.km_chart(capture_curve(sample[0])).to_dict()
    layers = spec["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["area", "line"]
    band = layers[0]["encoding"]
    assert band["y"]["field"] == "ci_low" and band["y2"]["field"] == "ci_high"
    x = spec["encoding"]["x"] if "encoding" in spec else layers[0]["encoding"]["x"]
    assert x["scale"]["type"] == "log"
    assert "(s, log scale)" in x["title"]


def test_outcome_chart_uses_one_colour_per_outcome_in_rule_order(sample: Any) -> None:
    counts = wc.replay(sample[0], sample[1].webhooks).outcome_counts()
    spec = charts.outcome_chart(counts).to_dict()
    color = spec["encoding"]["color"]
    assert color["scale"]["domain"] == [o.value for o in wc.Outcome]
    assert color["scale"]["range"] == [charts.OUTCOME_COLORS[o.value] for o in wc.Outcome]


def test_tradeoff_chart_marks_current_and_recommended(sample: Any) -> None:
    con, loaded = sample
    whatifs = timeout_whatifs(con, loaded.webhooks, [5, 30, 60, 900])
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
