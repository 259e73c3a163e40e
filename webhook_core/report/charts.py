"""Altair chart builders for the notebooks and the HTML report.

Each builder takes a DataFrame from the analysis functions and returns a chart;
tests check the specs (``chart.to_dict()``), not pixels. Charts are rendered to
PNG by vl-convert (:func:`use_offline_renderer`): Altair's default renderer loads
Vega from a CDN, which shows nothing offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import altair as alt
import numpy as np
import pandas as pd

from webhook_core.domain import REASONS_404

__all__ = [
    "daily_rates_chart",
    "disagreement_chart",
    "discovery_chart",
    "finishing_chart",
    "http_agreement_chart",
    "km_chart",
    "latency_chart",
    "lead_states_chart",
    "near_miss_chart",
    "outcome_chart",
    "rates_chart",
    "reasons_chart",
    "timeout_tradeoff_chart",
    "use_offline_renderer",
    "webhook_colors",
]

WIDTH = 520
OUTCOME_COLORS = {
    "matched": "#2e7d32", "interim": "#81c784", "early": "#8e24aa", "duplicate": "#fb8c00", "late": "#e53935",
    "wrong_webhook": "#6d4c41", "not_found": "#1e88e5", "no_identifiers": "#00acc1", "unknown_token": "#757575",
    "refused": "#bdbdbd",
}


#: Webhook colours, in the order the sorted webhook IDs take them: dark enough for text on white (axis and
#: panel labels are coloured too), the first ones clear of the outcome palette's green and red.
WEBHOOK_PALETTE = (
    "#4e79a7", "#f28e2b", "#499894", "#b07aa1", "#9d7660", "#b6992d", "#d37295", "#59a14f", "#e15759",
    "#a0cbe8", "#ffbe7d", "#86bcb6", "#d4a6c8", "#d7b5a6", "#fabfd2", "#f1ce63", "#8cd17d", "#ff9d9a",
)
#: Callbacks whose token names no configured webhook, grouped by the analyses under this name.
UNKNOWN_WEBHOOK = "(unknown)"
UNKNOWN_COLOR = "#79706e"


def webhook_colors(webhook_ids: Iterable[str]) -> alt.Scale:
    """The one colour scale for webhooks in every chart of a report: pass it the audit's webhook IDs
    (``audit.webhooks.webhook_ids``) so that a webhook drawn in one chart has its colour in all of them, whichever
    webhooks each chart happens to show. Sorted IDs take :data:`WEBHOOK_PALETTE` in turn (again from the start
    past its end); ``(unknown)`` is always last, in grey."""
    ids = sorted(set(webhook_ids) - {UNKNOWN_WEBHOOK})
    return alt.Scale(domain=[*ids, UNKNOWN_WEBHOOK],
                     range=[*(WEBHOOK_PALETTE[i % len(WEBHOOK_PALETTE)] for i in range(len(ids))), UNKNOWN_COLOR])


def _webhook_scale(colors: alt.Scale | None, shown: Iterable[str]) -> alt.Scale:
    return colors if colors is not None else webhook_colors(shown)


def _webhook_color_expr(colors: alt.Scale, value: str) -> str:
    """A Vega expression giving the colour of the webhook ID ``value`` (an expression) under ``colors``; black
    for one it has none for (``(all)``)."""
    spec = colors.to_dict()
    domain, colours = json.dumps(spec["domain"]), json.dumps(spec["range"])
    return f'indexof({domain}, {value}) >= 0 ? {colours}[indexof({domain}, {value})] : "black"'


def _webhook_axis(colors: alt.Scale | None, value: str = "datum.value") -> alt.Axis:
    """An axis that writes each webhook ID (``value``, from its label's value) in its colour (a plain one without
    ``colors``)."""
    if colors is None:
        return alt.Axis()
    return alt.Axis(labelColor=alt.ExprRef(_webhook_color_expr(colors, value)), labelFontWeight="bold")


def _webhook_header(colors: alt.Scale | None, field: str = "webhook_id") -> alt.Header:
    """A facet header that writes each panel's webhook ID in its colour."""
    if colors is None:
        return alt.Header()
    # Vega-Lite draws a facet's header label from the panel's group, ``parent[field]`` (so it compiles its own
    # labelExpr); a colour expression there has no ``datum``.
    return alt.Header(labelColor=alt.ExprRef(_webhook_color_expr(colors, f"parent[{json.dumps(field)}]")),
                      labelFontWeight="bold", labelFontSize=12)


def use_offline_renderer(scale: float = 1.5) -> None:
    """Render charts as PNG images via vl-convert: visible offline, in JupyterLab, nbconvert HTML and CI."""
    alt.renderers.enable("png", scale_factor=scale)


def _color(outcomes: list[str]) -> alt.Scale:
    return alt.Scale(domain=outcomes, range=[OUTCOME_COLORS[o] for o in outcomes])


def outcome_chart(counts: pd.DataFrame, *, colors: alt.Scale | None = None) -> alt.Chart:
    """Callbacks per webhook, stacked by outcome. ``counts``: ``ReplayResult.outcome_counts()``; ``colors``
    (:func:`webhook_colors`) writes each webhook ID in its colour."""
    outcomes = [o for o in OUTCOME_COLORS if o in counts.columns]
    long = counts[["webhook_id", *outcomes]].melt(id_vars=["webhook_id"], var_name="outcome", value_name="n")
    return alt.Chart(long, title="Callbacks per webhook by outcome").mark_bar().encode(
        y=alt.Y("webhook_id:N", title="Webhook", axis=_webhook_axis(colors)),
        x=alt.X("sum(n):Q", title="Callbacks"),
        color=alt.Color("outcome:N", scale=_color(outcomes), title="Outcome", sort=outcomes),
        order=alt.Order("outcome_order:Q"),
        tooltip=["webhook_id:N", "outcome:N", alt.Tooltip("n:Q", title="callbacks")],
    ).transform_calculate(
        outcome_order=f"indexof({outcomes!r}, datum.outcome)"
    ).properties(width=WIDTH)


#: The segments of :func:`rates_chart`: every callback is one of them, so each bar adds up to 100 %.
RATE_SEGMENTS = {"matched": "matched", "interim": "interim", **{f"404_{r}": f"404: {r}" for r in REASONS_404}}


def rates_chart(frame: pd.DataFrame, key: str = "webhook_id", *, colors: alt.Scale | None = None) -> alt.Chart:
    """Each webhook's (or advertiser's) callbacks as one 100 % bar: matched, interim and the 404s by reason.

    ``frame``: :func:`rates.rates`; a group without callbacks has no bar. ``colors`` (:func:`webhook_colors`)
    writes each webhook ID in its colour.
    """
    data = frame[(frame[key] != "(all)") & (frame["callbacks"] > 0)]
    data = data[[key, "callbacks", *RATE_SEGMENTS]].melt(id_vars=[key, "callbacks"], var_name="outcome",
                                                          value_name="n")
    data["share"] = data["n"] / data["callbacks"]
    segments = list(RATE_SEGMENTS.values())
    data["outcome"] = data["outcome"].map(RATE_SEGMENTS)
    data["outcome_order"] = data["outcome"].map(segments.index)
    segment_colors = [OUTCOME_COLORS[name.removeprefix("404: ")] for name in segments]
    label = "Webhook" if key == "webhook_id" else "Advertiser"
    return alt.Chart(data, title=alt.Title(
        f"Callbacks per {label.lower()}: matched, interim and answered 404 by reason",
        subtitle="Each bar is all of its callbacks (100 %)")).mark_bar().encode(
        y=alt.Y(f"{key}:N", title=label, axis=_webhook_axis(colors if key == "webhook_id" else None)),
        x=alt.X("share:Q", title="Share of callbacks", stack="zero", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("outcome:N", title="Callback outcome", sort=segments,
                        scale=alt.Scale(domain=segments, range=segment_colors)),
        order=alt.Order("outcome_order:Q"),
        tooltip=[f"{key}:N", "outcome:N", alt.Tooltip("n:Q", title="callbacks"),
                 alt.Tooltip("share:Q", format=".1%")],
    ).properties(width=WIDTH)


#: The segments of :func:`lead_states_chart`, disjoint: each bar adds up to the group's leads (100 %).
LEAD_SEGMENTS = {
    "answered in time": "#2e7d32",
    "timed out after a callback": "#e53935",
    "still waiting after a callback": "#fbc02d",
    "never called back": "#424242",
}


def lead_states_chart(headline: pd.DataFrame, key: str = "webhook_id", *,
                      colors: alt.Scale | None = None) -> alt.Chart:
    """Each webhook's (or advertiser's) leads as one 100 % bar: answered in time (the answer rate), timed out
    or still waiting after callbacks none of which finished the wait, and never called back.

    ``headline``: :func:`rates.lead_headline`; a group without leads (``(unknown)``) has no bar. ``colors``
    (:func:`webhook_colors`) writes each webhook ID in its colour.
    """
    data = headline[(headline[key] != "(all)") & (headline["leads"] > 0)]
    never_waiting = data["never_called_back"] - data["never_called_back_timed_out"]
    counts = pd.DataFrame({
        key: data[key],
        "leads": data["leads"],
        "answered in time": data["received"],
        "timed out after a callback": data["timed_out"] - data["never_called_back_timed_out"],
        "still waiting after a callback": data["waiting"] - never_waiting,
        "never called back": data["never_called_back"],
    })
    long = counts.melt(id_vars=[key, "leads"], var_name="state", value_name="n")
    long["share"] = long["n"] / long["leads"]
    segments = list(LEAD_SEGMENTS)
    long["state_order"] = long["state"].map(segments.index)
    label = "Webhook" if key == "webhook_id" else "Advertiser"
    return alt.Chart(long, title=alt.Title(
        f"Leads per {label.lower()}: answered in time, timed out, still waiting, never called back",
        subtitle="Each bar is all of its leads (100 %); the green part is the answer rate")).mark_bar().encode(
        y=alt.Y(f"{key}:N", title=label, axis=_webhook_axis(colors if key == "webhook_id" else None)),
        x=alt.X("share:Q", title="Share of leads", stack="zero", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("state:N", title="Lead at the observation end", sort=segments,
                        scale=alt.Scale(domain=segments, range=list(LEAD_SEGMENTS.values()))),
        order=alt.Order("state_order:Q"),
        tooltip=[f"{key}:N", "state:N", alt.Tooltip("n:Q", title="leads"), alt.Tooltip("share:Q", format=".1%")],
    ).properties(width=WIDTH)


def reasons_chart(frame: pd.DataFrame, key: str = "webhook_id", *, colors: alt.Scale | None = None) -> alt.Chart:
    """404s per webhook or advertiser, stacked by reason. ``frame``: :func:`rates.rates`; ``colors``
    (:func:`webhook_colors`) writes each webhook ID in its colour."""
    columns = [f"404_{r}" for r in REASONS_404]
    data = frame[frame[key] != "(all)"][[key, *columns]].melt(id_vars=[key], var_name="reason", value_name="n")
    data["reason"] = data["reason"].str.removeprefix("404_")
    reasons = list(REASONS_404)
    label = "Webhook" if key == "webhook_id" else "Advertiser"
    return alt.Chart(data, title=f"Why callbacks were answered 404, per {label.lower()}").mark_bar().encode(
        y=alt.Y(f"{key}:N", title=label, axis=_webhook_axis(colors if key == "webhook_id" else None)),
        x=alt.X("sum(n):Q", title="Callbacks answered 404"),
        color=alt.Color("reason:N", scale=_color(reasons), title="Reason", sort=reasons),
        tooltip=[f"{key}:N", "reason:N", "n:Q"],
    ).properties(width=WIDTH)


#: The daily chart's lines: one colour per measure, the outcome palette's matched green and 404 red.
DAILY_MEASURES = {"match rate": OUTCOME_COLORS["matched"], "404 rate": OUTCOME_COLORS["late"]}
VOLUME_COLOR = "#cfcfcf"


def daily_rates_chart(frame: pd.DataFrame, *, colors: alt.Scale | None = None) -> alt.FacetChart:
    """Per webhook, one panel: each UTC day's match rate and 404 rate (lines, left axis) over the day's callbacks
    (grey bars, right axis, one scale for every panel), so a rate on 3 callbacks does not read like one on 3,000.

    ``frame``: ``rates(audit, per_day=True)``; a day without callbacks has no rates and is not drawn. ``colors``
    (:func:`webhook_colors`) writes each panel's webhook ID in its colour.
    """
    data = frame[(frame["webhook_id"] != "(all)") & (frame["callbacks"] > 0)]
    data = pd.DataFrame({
        "webhook_id": data["webhook_id"],
        # Dates as text: Vega reads "YYYY-MM-DD" as UTC midnight, a naive timestamp as the viewer's local time.
        "day": pd.to_datetime(data["day"]).dt.strftime("%Y-%m-%d"),
        "callbacks": data["callbacks"].astype(int),
        "match rate": data["match_rate"].astype(float),
        "404 rate": data["rate_404"].astype(float),
    })
    x = alt.X("day:T", timeUnit="utcyearmonthdate", title="Day (UTC)", axis=alt.Axis(format="%b %d"))
    # One volume scale for every panel, set here: a layer's independent scale is not shared across a facet.
    most = max(int(data["callbacks"].max()), 1) if len(data) else 1
    volume = alt.Chart().mark_bar(color=VOLUME_COLOR, width=alt.RelativeBandSize(0.8)).encode(
        x=x,
        y=alt.Y("callbacks:Q", title="Callbacks per day (bars)", scale=alt.Scale(domain=[0, most]),
                axis=alt.Axis(orient="right", grid=False)),
        tooltip=["webhook_id:N", alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day (UTC)"),
                 "callbacks:Q"],
    )
    measures = list(DAILY_MEASURES)
    lines = alt.Chart().transform_fold([*measures], as_=["measure", "share"]).mark_line(point=True).encode(
        # Each point at the middle of its day's bar.
        x=alt.X("day:T", timeUnit="utcyearmonthdate", bandPosition=0.5, title="Day (UTC)"),
        y=alt.Y("share:Q", title="Share of callbacks", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("measure:N", title=None, sort=measures,
                        scale=alt.Scale(domain=measures, range=list(DAILY_MEASURES.values())),
                        legend=alt.Legend(orient="top", symbolType="stroke")),
        tooltip=["webhook_id:N", alt.Tooltip("day:T", timeUnit="utcyearmonthdate", title="day (UTC)"),
                 "measure:N", alt.Tooltip("share:Q", type="quantitative", format=".1%"), "callbacks:Q"],
    )
    return alt.layer(volume, lines, data=data).resolve_scale(y="independent").properties(
        width=300, height=150).facet(
        facet=alt.Facet("webhook_id:N", title=None, header=_webhook_header(colors)), columns=2,
        title=alt.Title("Daily match rate and 404 rate per webhook, over the day's callbacks",
                        subtitle="Lines: share of the day's callbacks (left axis). Grey bars: callbacks that day "
                                 "(right axis, the same scale in every panel)."),
    # Each panel draws its own two axes: shared ones fail to compile with a layer's independent y (Vega-Lite).
    ).resolve_axis(y="independent")


def disagreement_chart(differ: pd.DataFrame) -> alt.Chart:
    """Where production's recorded answer differs from the model: count by outcome and recorded status."""
    answer = "model " + differ["model_status"].astype(str) + " / production " + differ["recorded_status"].astype(str)
    data = differ.assign(answer=answer).groupby(["outcome", "answer"]).size().rename("n").reset_index()
    return alt.Chart(data, title="Production's answer vs the model's, where they differ").mark_bar().encode(
        y=alt.Y("outcome:N", title="Model outcome"),
        x=alt.X("n:Q", title="Callbacks"),
        color=alt.Color("answer:N", title="Answers"),
        tooltip=["outcome:N", "answer:N", alt.Tooltip("n:Q", title="callbacks")],
    ).properties(width=WIDTH)


def km_chart(curve: pd.DataFrame, *, colors: alt.Scale | None = None) -> alt.LayerChart:
    """Kaplan–Meier share of leads answered by time, per webhook, with the 95 % band (log time axis).

    ``colors``: :func:`webhook_colors` of the audit (without: of the webhooks drawn).
    """
    data = _drawn_steps(curve)
    shown = sorted(data["webhook_id"].unique())
    base = alt.Chart(data).encode(
        x=alt.X("t_s:Q", title="Time since the waiting webhook was created (s, log scale)",
                scale=alt.Scale(type="log")),
        # The legend lists the webhooks drawn, not every one the scale knows.
        color=alt.Color("webhook_id:N", title="Webhook", scale=_webhook_scale(colors, shown),
                        legend=alt.Legend(values=shown, symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3)),
    )
    # The band of the steps only: a start row would put a second point at the first step's time.
    band = base.mark_area(opacity=0.18, interpolate="step-after").transform_filter("datum.events > 0").encode(
        y=alt.Y("ci_low:Q", title="Share of leads with a callback", axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1])),
        y2="ci_high:Q",
    )
    line = base.mark_line(interpolate="step-after").encode(
        y=alt.Y("captured:Q", title="Share of leads with a callback"),
        order="step:Q",  # the start and the first step share a time: keep them in that order
        tooltip=["webhook_id:N", alt.Tooltip("t_s:Q", format=".1f"), alt.Tooltip("captured:Q", format=".1%"),
                 "at_risk:Q", "events:Q"],
    )
    return (band + line).properties(title="Time to first callback (Kaplan–Meier, 95 % band)", width=WIDTH,
                                    height=320)


def _drawn_steps(curve: pd.DataFrame) -> pd.DataFrame:
    """A Kaplan–Meier table as drawn: thinned, each webhook's line started from 0, ``step`` the drawing order."""
    data = _thin_steps(curve)
    # Each line starts from 0 at its first event time, so the step up to it is drawn: a curve of one
    # step (a webhook with one lead, or every lead answered at once) is otherwise a lone, invisible point.
    starts = data.groupby("webhook_id", sort=False).head(1).assign(events=0, captured=0.0, ci_low=0.0, ci_high=0.0)
    data = pd.concat([starts.assign(_start=0), data.assign(_start=1)], ignore_index=True)
    data = data.sort_values(["webhook_id", "t_s", "_start"], kind="stable").drop(columns="_start")
    data["step"] = range(len(data))
    data["t_s"] = data["t_s"].clip(lower=0.01)
    return data


#: The finishing-wait chart's legend: its two curves and the two timeouts marked on them.
FIRST_CALLBACK = "first callback (interim updates too)"
FINISHING = "callback that finishes the wait"
CURRENT = "current timeout"
RECOMMENDED = "recommended timeout"
_FINISHING_COLORS = {FIRST_CALLBACK: "#90a4ae", FINISHING: "#1e88e5", CURRENT: "#e53935", RECOMMENDED: "#2e7d32"}


def finishing_chart(first: pd.DataFrame, finishing: pd.DataFrame, advice: pd.DataFrame, *,
                    colors: alt.Scale | None = None) -> alt.FacetChart:
    """Per webhook that waits, Kaplan–Meier share of leads by time: to the first callback and to the one that
    finishes the wait, with the current and recommended timeouts as vertical rules (log time axis).

    ``first``: :func:`survival.capture_curve`; ``finishing``: :func:`survival.finishing_curve`; ``advice``:
    :func:`timeouts.timeout_advice` (its webhooks are the ones drawn). ``colors`` (:func:`webhook_colors`)
    writes each panel's webhook ID in its colour; the lines' colours say which curve or timeout they are.
    """
    waiting = list(advice["webhook_id"])
    curves = []
    for name, curve in ((FIRST_CALLBACK, first), (FINISHING, finishing)):
        drawn = _drawn_steps(curve[curve["webhook_id"].isin(waiting)])
        curves.append(drawn[["webhook_id", "t_s", "captured", "step"]].assign(line=name))
    timeouts = [advice[["webhook_id"]].assign(t_s=advice[column], line=name, captured=np.nan, step=np.nan)
                for column, name in (("current_timeout_s", CURRENT), ("recommended_timeout_s", RECOMMENDED))]
    data = pd.concat([*curves, *(t[t["t_s"].notna()] for t in timeouts)], ignore_index=True)
    data["t_s"] = data["t_s"].astype(float)
    lines = list(_FINISHING_COLORS)
    color = alt.Color("line:N", title=None, scale=alt.Scale(domain=lines, range=list(_FINISHING_COLORS.values())),
                      legend=alt.Legend(orient="top", columns=2))
    x = alt.X("t_s:Q", title="Time since the lead was sent (s, log scale)", scale=alt.Scale(type="log"))
    steps = alt.Chart().mark_line(interpolate="step-after").transform_filter(
        alt.FieldOneOfPredicate(field="line", oneOf=[FIRST_CALLBACK, FINISHING])).encode(
        x=x,
        y=alt.Y("captured:Q", title="Share of leads", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        color=color,
        # The first-callback line wider, beneath: where no interim update comes the two curves are one.
        strokeWidth=alt.StrokeWidth("line:N", scale=alt.Scale(domain=[FIRST_CALLBACK, FINISHING], range=[4, 1.5]),
                                    legend=None),
        detail="line:N",
        order="step:Q",
        tooltip=["webhook_id:N", "line:N", alt.Tooltip("t_s:Q", format=".1f", title="t (s)"),
                 alt.Tooltip("captured:Q", format=".1%")],
    )
    rules = [
        # The recommendation dashed over the current timeout: where they are equal, both show.
        alt.Chart().mark_rule(strokeWidth=2, strokeDash=dash).transform_filter(alt.datum.line == name).encode(
            x=x, color=color,
            tooltip=["webhook_id:N", "line:N", alt.Tooltip("t_s:Q", format=",g", title="timeout (s)")])
        for name, dash in ((CURRENT, [1, 0]), (RECOMMENDED, [5, 4]))
    ]
    return alt.layer(steps, *rules, data=data).properties(width=240, height=180).facet(
        facet=alt.Facet("webhook_id:N", title=None, header=_webhook_header(colors)), columns=3,
        title=alt.Title("Share of leads answered by time: first callback vs the callback that finishes the wait",
                        subtitle="Kaplan–Meier (leads still waiting censored); no red rule: the webhook waits "
                                 "without a timeout"),
    )


def _thin_steps(curve: pd.DataFrame, per_webhook: int = 400) -> pd.DataFrame:
    """At most about ``per_webhook`` steps per webhook, for drawing: the last step in each of that many
    log-spaced time bins. A step curve of a million leads has a million steps; a picture needs hundreds."""
    if len(curve) <= per_webhook * max(1, curve["webhook_id"].nunique()):
        return curve.copy()
    logs = np.log10(curve["t_s"].clip(lower=1e-3))
    bins = ((logs - logs.min()) / max(float(logs.max() - logs.min()), 1e-9) * per_webhook).astype(int)
    last = curve.assign(_bin=bins).groupby(["webhook_id", "_bin"], sort=False).tail(1)
    return last.drop(columns="_bin").reset_index(drop=True)


#: Where :func:`timeout_tradeoff_chart` writes a marked point's label, as text mark properties: each label on
#: its own side of the curve (see there), turned the other way where it would run past the panel's edge.
#: Labels are two lines, and Vega sets a text's lines downwards from its baseline whatever the baseline: a
#: label above its point is raised by a line more.
_LABEL_FONT_SIZE, _LABEL_LINE_HEIGHT = 10, 12
LABEL_PLACES: dict[str, dict[str, str | int]] = {
    "above left": {"align": "right", "baseline": "bottom", "dx": -7, "dy": -8 - _LABEL_LINE_HEIGHT},
    "above right": {"align": "left", "baseline": "bottom", "dx": 7, "dy": -8 - _LABEL_LINE_HEIGHT},
    "below right": {"align": "left", "baseline": "top", "dx": 7, "dy": 6},
}
_TRADEOFF_WIDTH, _TRADEOFF_HEIGHT = 260, 220
#: The capture axis runs past 100 % for the labels above the curve (two lines and their gap fit there).
_CAPTURE_TOP = 1.18
#: Generous width of one character of the labels (px), to tell whether a label fits beside its point; and
#: of half the largest point, for the points a label passes.
_CHAR_PX, _POINT_RADIUS = 6.0, 6.0


def timeout_tradeoff_chart(whatifs: pd.DataFrame, advice: pd.DataFrame, *,
                           colors: alt.Scale | None = None) -> alt.FacetChart:
    """Per webhook that waits, one panel: capture rate against mean ping-tree wait through the candidate timeouts,
    with the current and recommended timeouts (``advice``: :func:`timeouts.timeout_advice`) on the same curve,
    whether or not they are candidates. ``colors``: :func:`webhook_colors` of the audit (without: of the webhooks
    drawn).

    Only the current and recommended timeouts are labelled (timeout and capture rate; the what-if table gives
    the candidates'), placed so that they meet neither each other nor the curve: see :func:`_tradeoff_labels`.
    """
    # A webhook none of whose leads was ever answered has no capture rate to trade off (blocking_webhooks
    # warns about it); a wait of 0 s has no place on the log axis, so it is drawn at 0.01 s.
    answered = advice[advice["answered"] > 0]
    points = [whatifs[whatifs["capture_rate"].notna()][["webhook_id", "timeout_s", "capture_rate", "mean_block_s"]]
              .assign(mark="candidate")]
    for mark, prefix in (("current", "current"), ("recommended", "recommended")):
        chosen = answered[answered[f"{prefix}_capture_rate"].notna()]
        points.append(pd.DataFrame({"webhook_id": chosen["webhook_id"], "timeout_s": chosen[f"{prefix}_timeout_s"],
                                    "capture_rate": chosen[f"{prefix}_capture_rate"],
                                    "mean_block_s": chosen[f"mean_block_s_{mark}"], "mark": mark}))
    data = pd.concat(points, ignore_index=True)
    data = data[data["webhook_id"].isin(answered["webhook_id"])]
    # One point per webhook and timeout, the current / recommended mark winning over "candidate"; no timeout
    # (a webhook that waits without one) is the longest wait of all.
    data["_key"] = data["timeout_s"].astype(float).fillna(np.inf)
    marks = data.groupby(["webhook_id", "_key"])["mark"].agg(lambda m: " = ".join(
        name for name in ("current", "recommended") if name in set(m)) or "candidate")
    data = data.drop_duplicates(["webhook_id", "_key"]).drop(columns="mark").join(marks, on=["webhook_id", "_key"])
    data = data.sort_values(["webhook_id", "_key"], kind="stable").drop(columns="_key").reset_index(drop=True)
    data["order"] = range(len(data))
    data["mean_block_s"] = data["mean_block_s"].astype(float).clip(lower=0.01)
    data["timeout"] = data["timeout_s"].map(lambda s: "no timeout" if pd.isna(s) else f"{s:,g} s")
    data = data.join(_tradeoff_labels(data))
    shown = sorted(data["webhook_id"].unique())
    x_title, y_title = "Mean time the ping tree waits per lead (s, log scale)", "Answers caught in time"
    base = alt.Chart().encode(
        # Each panel its own time axis, its points spread across it: waits differ by orders of magnitude between
        # webhooks. Vega rounds a log domain out to whole powers of ten, as _log_domain does.
        x=alt.X("mean_block_s:Q", title=x_title,
                scale=alt.Scale(type="log", nice=True),
                # Ticks at whole powers of ten only, thousands as "k": the default ones crowd a narrow panel.
                axis=alt.Axis(values=[10.0 ** k for k in range(-2, 9)],
                              labelExpr="datum.value >= 1000 ? format(datum.value / 1000, ',~f') + 'k' "
                                        ": format(datum.value, '~f')")),
        # Room above 100 % for the labels of points there; ticks only up to 100 %.
        y=alt.Y("capture_rate:Q", title=y_title, scale=alt.Scale(domain=[0, _CAPTURE_TOP], nice=False),
                axis=alt.Axis(format="%", values=[0, 0.2, 0.4, 0.6, 0.8, 1])),
        color=alt.Color("webhook_id:N", title="Webhook", scale=_webhook_scale(colors, shown), legend=None),
    )
    line = base.mark_line(opacity=0.5).encode(order="order:Q")
    kinds = ["candidate", "current", "recommended", "current = recommended"]
    timeout_legend = alt.Legend(title="Timeout", orient="top", symbolFillColor="#555555", symbolStrokeColor="#555555")
    points_layer = base.mark_point(filled=True, opacity=1).encode(
        shape=alt.Shape("mark:N", title="Timeout", legend=timeout_legend, scale=alt.Scale(
            domain=kinds, range=["circle", "square", "triangle-up", "diamond"])),
        size=alt.Size("mark:N", title="Timeout", legend=timeout_legend,
                      scale=alt.Scale(domain=kinds, range=[25, 120, 140, 170])),
        tooltip=["webhook_id:N", "timeout:N", alt.Tooltip("capture_rate:Q", format=".1%"),
                 alt.Tooltip("mean_block_s:Q", format=".1f"), "mark:N"],
    )
    labels = [
        base.mark_text(fontSize=_LABEL_FONT_SIZE, lineHeight=_LABEL_LINE_HEIGHT, lineBreak="\n",
                       **place)  # type: ignore[arg-type]
        .transform_filter(alt.datum.label_place == name).encode(
            x=alt.X("label_x:Q", title=x_title), y=alt.Y("label_at:Q", title=y_title), text="label:N",
            color=alt.value("#333333"))
        for name, place in LABEL_PLACES.items()
    ]
    return alt.layer(line, points_layer, *labels, data=data).properties(
        width=_TRADEOFF_WIDTH, height=_TRADEOFF_HEIGHT).facet(
        facet=alt.Facet("webhook_id:N", title=None, header=_webhook_header(colors)), columns=3,
        title=alt.Title("Timeout trade-off: answers caught in time vs time the ping tree waits",
                        subtitle="Each line runs through the candidate timeouts (the what-if table gives each one); "
                                 "the current and the recommended timeout are labelled"),
    ).resolve_scale(x="independent")


def _log_domain(values: pd.Series) -> tuple[float, float]:
    """Whole powers of ten around ``values``, so that where a point falls across the panel is known here."""
    if not len(values):
        return 0.01, 1.0
    low, high = float(values.min()), float(values.max())
    low_exp, high_exp = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    return 10.0 ** low_exp, 10.0 ** max(high_exp, low_exp + 1)


def _label_span(x_px: float, text: str, place: str) -> tuple[float, float]:
    """From where to where across the panel (px) the trade-off chart's ``text`` runs when drawn at ``place``
    from ``x_px``, at a generous width per character."""
    spec = LABEL_PLACES[place]
    width = max(len(line) for line in text.split("\n")) * _CHAR_PX
    x = x_px + float(spec["dx"])
    return (x - width, x) if spec["align"] == "right" else (x, x + width)


def _panel_x(mean_block_s: pd.Series | float, domain: tuple[float, float]) -> np.ndarray:
    """Where the trade-off chart draws a wait across a panel whose log axis spans ``domain`` (px)."""
    low, high = np.log10(domain)
    return np.asarray((np.log10(np.asarray(mean_block_s, dtype=float)) - low) / (high - low) * _TRADEOFF_WIDTH)


def _tradeoff_labels(data: pd.DataFrame) -> pd.DataFrame:
    """The trade-off chart's labels (empty for a candidate): ``label``, ``label_place`` (:data:`LABEL_PLACES`)
    and the anchor each is drawn from, ``label_x`` (a wait, s) and ``label_at`` (a capture rate).

    ``data`` is sorted by webhook and timeout, so each webhook's curve climbs to the right. Of its marked points,
    the one with the longer timeout is labelled above the top of the whole curve, where nothing else is, on the
    side of the point where the label fits. The other one is labelled below itself, on its right, where every
    point is higher; where the label would run past the panel's edge it is moved left, and lowered below the
    curve where the label now starts (its lowest point under the label).
    """
    labels = pd.DataFrame({"label": "", "label_place": "", "label_x": np.nan, "label_at": np.nan},
                          index=data.index)
    for webhook, group in data[data["mark"] != "candidate"].groupby("webhook_id", sort=False):
        curve = data[data["webhook_id"] == webhook]
        domain = _log_domain(curve["mean_block_s"])
        low, high = np.log10(domain)
        xs = _panel_x(curve["mean_block_s"], domain)
        for position, (index, row) in enumerate(group.iterrows()):
            text = f"{row['mark']}\n{row['timeout']}: {row['capture_rate']:.1%}".replace("%", " %")
            x = float(_panel_x(row["mean_block_s"], domain))
            at = float(row["capture_rate"])
            if position == len(group) - 1:
                at = float(curve["capture_rate"].max())
                fits_left = _label_span(x, text, "above left")[0] >= 0
                place = "above left" if fits_left or x > _TRADEOFF_WIDTH / 2 else "above right"
            else:
                place = "below right"
            left, right = _label_span(x, text, place)
            shift = max(0.0, right - _TRADEOFF_WIDTH) or min(0.0, left)
            if shift:
                x -= shift
                if place == "below right":  # now also left of its point, where the curve is lower
                    at = min(at, float(np.interp(left - shift - _POINT_RADIUS, xs, curve["capture_rate"])))
            labels.loc[index] = [text, place, 10 ** (low + x / _TRADEOFF_WIDTH * (high - low)), at]
    return labels


#: Between the webhook ID and the location in the discovery chart's labels.
_WHERE_SEPARATOR = "  "


def discovery_chart(found: pd.DataFrame, *, colors: alt.Scale | None = None) -> alt.Chart:
    """Where each webhook's IDs were found in the captured requests, by support; unmapped ones stand out.

    ``colors`` (:func:`webhook_colors`) writes each label's webhook ID part in its colour.
    """
    data = found.assign(where=found["webhook_id"] + _WHERE_SEPARATOR + found["location"])
    webhook = f"split(datum.value, {json.dumps(_WHERE_SEPARATOR)})[0]"
    return alt.Chart(data, title="Where the IDs were found (callbacks naming a lead)").mark_bar().encode(
        y=alt.Y("where:N", title="Webhook and location", sort="-x",
                axis=_webhook_axis(colors, webhook)),
        x=alt.X("support:Q", title="Callbacks whose value there names a lead"),
        color=alt.Color("configured_as:N", title="Read by the replay as",
                        scale=alt.Scale(domain=["pairing", "standard", "unmapped"],
                                        range=["#1e88e5", "#2e7d32", "#e53935"])),
        tooltip=["webhook_id:N", "identifier:N", "location:N", "support:Q", "present:Q",
                 alt.Tooltip("precision:Q", format=".1%"), "configured_as:N"],
    ).properties(width=WIDTH)


def near_miss_chart(misses: pd.DataFrame, *, colors: alt.Scale | None = None) -> alt.Chart:
    """404s each normalisation would rescue, per webhook. ``colors``: :func:`webhook_colors` of the audit
    (without: of the webhooks drawn)."""
    data = misses[misses["rescued"] > 0]
    shown = sorted(data["webhook_id"].unique())
    return alt.Chart(data, title="Near-misses: 404s a normalisation would rescue").mark_bar().encode(
        y=alt.Y("transform:N", title="Transform"),
        x=alt.X("rescued:Q", title="Callbacks rescued"),
        color=alt.Color("webhook_id:N", title="Webhook", scale=_webhook_scale(colors, shown),
                        legend=alt.Legend(values=shown)),
        yOffset="webhook_id:N",
        tooltip=["webhook_id:N", "transform:N", "rescued:Q", "not_found:Q", "no_identifiers:Q"],
    ).properties(width=WIDTH)


def http_agreement_chart(summary: pd.DataFrame) -> alt.Chart:
    """Per expected outcome: requests where the target and where production answered otherwise than the model.

    ``summary``: ``replayhttp.disagreement_summary``.
    """
    data = summary[["expected_outcome", "disagree", "no_answer", "recorded_disagree"]].melt(
        id_vars=["expected_outcome"], var_name="who", value_name="n")
    data["who"] = data["who"].map({"disagree": "target answered otherwise", "no_answer": "target did not answer",
                                   "recorded_disagree": "production answered otherwise"})
    return alt.Chart(data, title="Answers that differ from the model, by expected outcome").mark_bar().encode(
        y=alt.Y("expected_outcome:N", title="Expected outcome (model)"),
        x=alt.X("n:Q", title="Requests"),
        color=alt.Color("who:N", title="Who differs",
                        scale=alt.Scale(domain=["target answered otherwise", "target did not answer",
                                                "production answered otherwise"],
                                        range=["#e53935", "#757575", "#fb8c00"])),
        yOffset="who:N",
        tooltip=["expected_outcome:N", "who:N", alt.Tooltip("n:Q", title="requests")],
    ).properties(width=WIDTH)


def latency_chart(diff: pd.DataFrame) -> alt.Chart:
    """Latency percentiles (p50, p90, p99) of the target's answers per expected outcome.

    ``diff``: ``replayhttp.diff_table`` (its ``latency_ms`` is the final attempt's).
    """
    answered = diff.dropna(subset=["latency_ms"])
    rows = []
    for outcome, group in [("all requests", answered), *answered.groupby("expected_outcome")]:
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            rows.append({"expected_outcome": outcome, "percentile": name,
                         "latency_ms": float(group["latency_ms"].quantile(q))})
    data = pd.DataFrame(rows)
    return alt.Chart(data, title="Latency of the target's answers").mark_bar().encode(
        y=alt.Y("expected_outcome:N", title="Expected outcome (model)", sort=["all requests"]),
        x=alt.X("latency_ms:Q", title="Latency (ms)"),
        color=alt.Color("percentile:N", title="Percentile", sort=["p50", "p90", "p99"]),
        yOffset=alt.YOffset("percentile:N", sort=["p50", "p90", "p99"]),
        tooltip=["expected_outcome:N", "percentile:N", alt.Tooltip("latency_ms:Q", format=".1f")],
    ).properties(width=WIDTH)
