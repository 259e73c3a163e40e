"""Chart builders, checked through their Vega-Lite specs (chart.to_dict()), not pixels."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import numpy as np
import pandas as pd
import pytest
import vl_convert as vlc

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


#: The charts that show webhooks: each must give every webhook the colour of the report's one palette.
BY_WEBHOOK = ("outcome", "rates", "lead_states", "reasons", "daily", "km", "tradeoff", "finishing", "discovery",
              "near_miss")


def build_all(con: duckdb.DuckDBPyConnection, webhooks: wc.WebhookVersions,
              source: Path) -> dict[str, alt.TopLevelMixin]:
    """Every chart, built as the notebooks build them: with the audit's one webhook palette."""
    result = wc.replay(con, webhooks)
    audit = wc.Audit(con, webhooks, result.observation_end or None, source, read_only=False)
    colors = charts.webhook_colors(webhooks.webhook_ids)
    return {
        "outcome": charts.outcome_chart(result.outcome_counts(), colors=colors),
        "rates": charts.rates_chart(rates(audit), colors=colors),
        "lead_states": charts.lead_states_chart(lead_headline(audit), colors=colors),
        "reasons": charts.reasons_chart(rates(audit), colors=colors),
        "daily": charts.daily_rates_chart(rates(audit, per_day=True), colors=colors),
        "disagreement": charts.disagreement_chart(disagreements(audit)),
        "km": charts.km_chart(capture_curve(audit), colors=colors),
        "tradeoff": charts.timeout_tradeoff_chart(timeout_whatifs(audit), timeout_advice(audit), colors=colors),
        "finishing": charts.finishing_chart(capture_curve(audit), finishing_curve(audit), timeout_advice(audit),
                                            colors=colors),
        "discovery": charts.discovery_chart(discover_locations(audit), colors=colors),
        "near_miss": charts.near_miss_chart(near_misses(audit), colors=colors),
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
    assert data[["webhook_id", "timeout", "mark", "capture_rate", "mean_block_s"]].values.tolist() == [
        ["wh-a", "5 s", "candidate", 0.2, 4.0], ["wh-a", "30 s", "current", 0.6, 20.0],
        ["wh-a", "45 s", "recommended", 0.8, 30.0], ["wh-a", "60 s", "candidate", 0.9, 40.0],
        ["wh-b", "5 s", "candidate", 0.5, 5.0], ["wh-b", "30 s", "recommended", 0.95, 25.0],
        ["wh-b", "no timeout", "current", 1.0, 500.0],
        ["wh-c", "10 s", "current = recommended", 0.97, 8.0],
    ]
    assert data["order"].is_monotonic_increasing  # the line runs through them by timeout, no timeout last
    # Only the current and recommended timeouts are labelled: the longer one above the whole curve, the other
    # below itself.
    assert data[["webhook_id", "label", "label_place", "label_at"]].fillna(-1).values.tolist() == [
        ["wh-a", "", "", -1], ["wh-a", "current\n30 s: 60.0 %", "below right", 0.6],
        ["wh-a", "recommended\n45 s: 80.0 %", "above left", 0.9], ["wh-a", "", "", -1],
        ["wh-b", "", "", -1], ["wh-b", "recommended\n30 s: 95.0 %", "below right", 0.95],
        ["wh-b", "current\nno timeout: 100.0 %", "above left", 1.0],
        ["wh-c", "current = recommended\n10 s: 97.0 %", "above left", 0.97],
    ]


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


def _daily_fixture() -> pd.DataFrame:
    # wh-a: 3,000 callbacks one day, 3 the next; wh-b: one day; a day without callbacks and (all) are not drawn.
    return pd.DataFrame({
        "webhook_id": ["wh-a", "wh-a", "wh-b", "wh-b", "(all)"],
        "day": pd.to_datetime(["2026-11-02", "2026-11-03", "2026-11-02", "2026-11-04", "2026-11-02"]),
        "callbacks": [3000, 3, 40, 0, 3040],
        "match_rate": [0.9, 1 / 3, 0.5, np.nan, 0.89],
        "rate_404": [0.1, 2 / 3, 0.25, np.nan, 0.11],
    })


def test_daily_chart_is_one_panel_per_webhook_with_its_volume_under_its_rates() -> None:
    chart = charts.daily_rates_chart(_daily_fixture())
    assert chart.data[["webhook_id", "day", "callbacks", "match rate", "404 rate"]].values.tolist() == [
        ["wh-a", "2026-11-02", 3000, 0.9, 0.1], ["wh-a", "2026-11-03", 3, 1 / 3, 2 / 3],
        ["wh-b", "2026-11-02", 40, 0.5, 0.25]]
    spec = chart.to_dict()
    assert spec["facet"]["field"] == "webhook_id"  # one panel per webhook, x (the UTC day) shared
    assert spec["spec"]["resolve"]["scale"]["y"] == "independent"
    volume, lines = spec["spec"]["layer"]
    # Volume: grey bars of the day's callbacks on their own axis, one scale for every panel.
    assert volume["mark"]["type"] == "bar" and volume["mark"]["color"] == charts.VOLUME_COLOR
    assert "color" not in volume["encoding"]
    assert volume["encoding"]["y"]["field"] == "callbacks" and volume["encoding"]["y"]["title"].startswith("Callbacks")
    assert volume["encoding"]["y"]["axis"]["orient"] == "right"
    assert volume["encoding"]["y"]["scale"]["domain"] == [0, 3000]
    # Rates: a line per measure, its colour the measure (with a legend), not the webhook.
    assert lines["mark"]["type"] == "line"
    assert lines["transform"] == [{"fold": ["match rate", "404 rate"], "as": ["measure", "share"]}]
    color = lines["encoding"]["color"]
    assert color["field"] == "measure" and color["scale"]["domain"] == ["match rate", "404 rate"]
    assert len(set(color["scale"]["range"])) == 2 and color.get("legend", {}) is not None
    for encoding in (volume["encoding"], lines["encoding"]):
        assert encoding["x"]["field"] == "day" and encoding["x"]["timeUnit"] == "utcyearmonthdate"


def test_daily_chart_on_sample_has_a_panel_per_webhook_with_callbacks(sample: wc.Audit) -> None:
    daily = rates(sample, per_day=True)
    data = charts.daily_rates_chart(daily).data
    with_callbacks = daily[daily.callbacks > 0]
    assert set(data.webhook_id) == set(with_callbacks.webhook_id) - {"(all)"}
    assert data.callbacks.sum() == with_callbacks[with_callbacks.webhook_id != "(all)"].callbacks.sum()


def _svg_panels(svg: str) -> list[dict[str, Any]]:
    """Per panel of a rendered trade-off chart: its webhook, the line's vertices, the points and the labels
    (anchor, text-anchor, lines of text), all in the panel's pixels."""
    panels = []
    for chunk in svg.split("child_layer_0_pathgroup")[1:]:
        line = re.search(r'aria-roledescription="line mark" d="M([^"]+)"', chunk)
        assert line is not None
        vertices = [tuple(map(float, pair.split(","))) for pair in line.group(1).split("L")]
        points = [(float(x), float(y)) for x, y in re.findall(
            r'aria-roledescription="point" transform="translate\(([-\d.e]+),([-\d.e]+)\)"', chunk)]
        webhook = re.search(r"webhook_id: ([^;\"]+)", chunk)
        labels = [(float(x), float(y), anchor, re.findall(r"<tspan[^>]*>([^<]*)</tspan>", body))
                  for anchor, x, y, body in re.findall(
                      r'aria-roledescription="text mark" text-anchor="(\w+)" transform="translate\(([-\d.e]+),'
                      r'([-\d.e]+)\)"[^>]*>(.*?)</text>', chunk)]
        panels.append({"webhook": webhook.group(1) if webhook else "?", "vertices": vertices, "points": points,
                       "labels": labels})
    return panels


def _boxes(labels: list[tuple[float, float, str, list[str]]], size: float = 10) -> list[tuple[float, ...]]:
    """Each label's box: a generous 0.6 em per character, the first line's baseline at the anchor, 1.2 em lines."""
    boxes = []
    for x, y, anchor, lines in labels:
        width = max(len(line) for line in lines) * 0.6 * size
        left = x - width if anchor == "end" else x - width / 2 if anchor == "middle" else x
        boxes.append((left, y - 0.8 * size, left + width, y + 1.2 * size * (len(lines) - 1) + 0.25 * size))
    return boxes


def _tradeoff_fixtures() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    whatifs = pd.DataFrame({"webhook_id": ["wh-a"] * 3 + ["wh-b"] * 2 + ["wh-edge"] * 3,
                            "timeout_s": [5.0, 30.0, 60.0, 5.0, 30.0, 5.0, 30.0, 60.0],
                            "capture_rate": [0.2, 0.6, 0.9, 0.5, 0.95, 0.3, 0.7, 0.9],
                            "mean_block_s": [4.0, 20.0, 40.0, 5.0, 25.0, 3.0, 20.0, 40.0]})
    advice = _advice(
        ("wh-a", 9, 30.0, 0.6, 20.0, 45.0, 0.8, 30.0),
        ("wh-b", 4, None, 1.0, 500.0, 30.0, 0.95, 25.0),
        # The recommendation near the panel's right edge: its label, below it, does not fit on its right.
        ("wh-edge", 9, 100.0, 0.97, 60.0, 70.0, 0.95, 45.0),
    )
    return {"hand-made": (whatifs, advice)}


def test_tradeoff_labels_meet_no_other_label_point_or_line_in_the_rendered_chart(sample: wc.Audit) -> None:
    cases = _tradeoff_fixtures()
    cases["sample"] = (timeout_whatifs(sample), timeout_advice(sample))
    for case, (whatifs, advice) in cases.items():
        chart = charts.timeout_tradeoff_chart(whatifs, advice)
        width = chart.to_dict()["spec"]["width"]
        panels = _svg_panels(vlc.vegalite_to_svg(chart.to_dict()))
        answered = advice[advice.answered > 0]
        assert len(panels) == len(answered), case
        for panel in panels:
            where = f"{case} {panel['webhook']}"
            row = answered[answered.webhook_id == panel["webhook"]].iloc[0]
            # Labelled: the current and the recommended timeout, one label where they are the same.
            same = row.current_timeout_s == row.recommended_timeout_s
            assert len(panel["labels"]) == (1 if same else 2), where
            boxes = _boxes(panel["labels"])
            if len(boxes) == 2:
                (l1, t1, r1, b1), (l2, t2, r2, b2) = boxes
                assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, f"{where}: the labels overlap"
            for left, top, right, bottom in boxes:
                assert left >= 0 and right <= width, f"{where}: a label runs out of its panel"
                for x, y in panel["points"]:  # a marker reaches about 5 px from its centre
                    assert not (left - 5 < x < right + 5 and top - 5 < y < bottom + 5), f"{where}: label on a point"
                for (x0, y0), (x1, y1) in pairwise(panel["vertices"]):
                    for f in np.linspace(0, 1, 50):
                        x, y = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
                        assert not (left < x < right and top < y < bottom), f"{where}: label on the line"


def _color_mappings(spec: Any) -> list[tuple[list[str], list[str]]]:
    """Every webhook colour mapping in a spec: colour scales of a webhook_id field, and the domain and range
    inside each label colour expression (axis labels, facet headers)."""
    found = []
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("field") == "webhook_id" and isinstance(node.get("scale"), dict) and "range" in node["scale"]:
                found.append((node["scale"]["domain"], node["scale"]["range"]))
            color = node.get("labelColor")
            if isinstance(color, dict) and "expr" in color:
                domain, colours = re.match(r"indexof\((\[.*?\]), .*\? (\[.*?\])\[", color["expr"]).groups()
                found.append((json.loads(domain), json.loads(colours)))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_each_webhook_has_one_colour_in_every_chart_of_the_report(sample: wc.Audit) -> None:
    ids = sample.webhooks.webhook_ids
    expected = charts.webhook_colors(ids).to_dict()
    assert expected["domain"] == [*sorted(ids), "(unknown)"]
    assert len(set(expected["range"])) == len(expected["range"])  # the sample's 6 webhooks: 6 colours, + grey
    built = build_all(sample.con, sample.webhooks, sample.source)
    for name in BY_WEBHOOK:
        mappings = _color_mappings(built[name].to_dict())
        assert mappings, f"{name}: no webhook colours"
        for domain, colours in mappings:
            assert (domain, colours) == (expected["domain"], expected["range"]), name
    # A chart that draws fewer webhooks keeps their colours: wh-refco alone is still wh-refco's colour.
    colors = charts.webhook_colors(ids)
    curve, whatifs, advice, misses = (capture_curve(sample), timeout_whatifs(sample), timeout_advice(sample),
                                      near_misses(sample))
    alone = {
        "km": charts.km_chart(curve[curve.webhook_id == "wh-refco"], colors=colors),
        "tradeoff": charts.timeout_tradeoff_chart(whatifs[whatifs.webhook_id == "wh-refco"],
                                                  advice[advice.webhook_id == "wh-refco"], colors=colors),
        "near_miss": charts.near_miss_chart(misses[misses.webhook_id == "wh-refco"], colors=colors),
    }
    for name, chart in alone.items():
        assert set(chart.data.webhook_id) == {"wh-refco"}, name
        assert _color_mappings(chart.to_dict()) and all(
            mapping == (expected["domain"], expected["range"]) for mapping in _color_mappings(chart.to_dict())), name
    # The KM chart's legend lists the webhooks drawn, not the whole palette.
    km = [e["color"] for e in _encodings(built["km"].to_dict()) if "color" in e]
    assert km and all(c["legend"]["values"] == sorted(set(capture_curve(sample).webhook_id)) for c in km)


def test_webhook_colours_depend_only_on_the_sorted_ids() -> None:
    first = charts.webhook_colors(["wh-b", "wh-a", "(unknown)", "wh-a"]).to_dict()
    assert first == charts.webhook_colors(("wh-a", "wh-b")).to_dict()
    assert first["domain"] == ["wh-a", "wh-b", "(unknown)"]
    assert first["range"] == [charts.WEBHOOK_PALETTE[0], charts.WEBHOOK_PALETTE[1], charts.UNKNOWN_COLOR]
    many = charts.webhook_colors(f"wh-{i:02d}" for i in range(len(charts.WEBHOOK_PALETTE) + 1)).to_dict()
    assert many["range"][len(charts.WEBHOOK_PALETTE)] == charts.WEBHOOK_PALETTE[0]  # the palette starts again


def test_the_faceted_and_coloured_charts_render_to_png_offline(sample: wc.Audit) -> None:
    """vl-convert renders in-process, with no network: the dual-axis panels and the coloured labels compile."""
    built = build_all(sample.con, sample.webhooks, sample.source)
    for name in ("daily", "tradeoff", "finishing", "rates"):
        png = vlc.vegalite_to_png(built[name].to_dict(), scale=1)
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 300 and height > 200, name
