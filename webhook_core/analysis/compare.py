"""Period comparison: did a webhook or advertiser get worse between two audits (docs/analysis.md,
"Period comparison")?

Per group (webhook or advertiser) and metric, the figure before and after, the change with a 95 %
interval, a p-value, and ``flagged`` where the change is significant after Holm's correction across
every test of the run and at least ``min_change``:

* rates (``answer_rate`` per lead; ``match_rate``, ``rate_404`` and each ``404_<reason>`` per callback;
  ``capture_rate``, the share of the answers that finish a wait that the current timeout keeps):
  the pooled two-proportion z-test, and Newcombe's hybrid score interval (from Wilson's) for the
  difference. Callbacks come in clusters (a retry storm to one lead), which carry less information than
  as many independent callbacks: each side's variance is scaled by its design effect (at least 1);
* the finishing wait's Kaplan–Meier median and p90 (``wait_median_s``, ``wait_p90_s``): the log-rank
  test of the two curves, one p-value per group shared by both rows; no interval (see the docs).

The counts come from SQL, a few statements per audit (:func:`rates`' lead counts, the callbacks' per
cluster, the finishing waits' per group and event time); the statistics are vectorised over the groups.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]  # no stubs ship with scipy

from webhook_core.analysis.rates import _keyed_callbacks, rates
from webhook_core.analysis.survival import finishing_waits_sql
from webhook_core.analysis.timeouts import _latest_versions
from webhook_core.audit.audit import Audit
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.audit.schema import CALLBACK_OUTCOMES, DISPATCHES, LEAD_OUTCOMES
from webhook_core.domain import REASONS_404, Outcome
from webhook_core.exceptions import ReplayError
from webhook_core.quoting import quote_identifier, quote_literal
from webhook_core.timeutil import seconds_to_us, to_us

__all__ = ["COMPARE_COLUMNS", "METRICS", "PeriodFigures", "compare", "compare_figures", "compare_split",
           "holm", "is_wait", "logrank", "period_figures", "two_proportions"]

Grouping = Literal["webhook_id", "advertiser_id"]

#: The columns after the key column (named ``webhook_id`` or ``advertiser_id``).
COMPARE_COLUMNS = ("metric", "before", "after", "change", "ci_low", "ci_high", "p_value", "p_holm", "flagged",
                   "worse", "n_before", "n_after")

#: Rates: metric → (numerator, denominator, a rise is a regression). Counts of :func:`period_figures`.
_RATES: dict[str, tuple[str, str, bool]] = {
    "answer_rate": ("received", "leads", False),
    "match_rate": ("matched", "callbacks", False),
    "rate_404": ("answered_404", "callbacks", True),
    **{f"404_{reason}": (f"404_{reason}", "callbacks", True) for reason in REASONS_404},
    "capture_rate": ("kept", "answered", False),
}
#: Callback counts: name → the SQL condition a callback counted meets.
_CALLBACK_CONDITIONS = {
    "matched": f"outcome = {quote_literal(Outcome.MATCHED.value)}",
    "answered_404": "status_code = 404",
    **{f"404_{reason}": f"outcome = {quote_literal(reason)}" for reason in REASONS_404},
}
#: The rates per callback: metric → its count.
_CALLBACK_COUNTS = {metric: spec[0] for metric, spec in _RATES.items() if spec[1] == "callbacks"}
#: Kaplan–Meier quantiles of the finishing wait: metric → the share of leads finished.
_WAITS = {"wait_median_s": 0.5, "wait_p90_s": 0.9}

#: Every metric, in the order a group's rows are built.
METRICS = (*_RATES, *_WAITS)

#: The standard normal quantile of the two-sided 95 % interval.
_Z = float(stats.norm.ppf(0.975))
#: Longer than any wait: the stand-in for "no timeout" (BIGINT's largest), as in timeouts.py.
_FOREVER_US = 9223372036854775807
#: A change of exactly ``min_change`` counts although its float difference lands a hair below it
#: (0.60 − 0.55 is 0.04999999999999993); the KM quantiles' tolerance is survival.py's.
_EPSILON = 1e-12

@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """What :func:`compare_figures` reads of one audit, so that an audit may be narrowed to the other period
    afterwards (:func:`compare_split`)."""

    by: Grouping
    #: Per group (the index, ``key``): the counts of the rates, :data:`_RATES`' numerators and denominators.
    counts: pd.DataFrame
    #: Per group (the index) and callback metric (the columns): the design effect of its callbacks' clusters.
    design: pd.DataFrame
    #: Per group and finishing-wait time in microseconds (``key, t_us``): ``events`` (leads finished then)
    #: and ``leaving`` (leads finished or censored then), the Kaplan–Meier input.
    waits: pd.DataFrame


def period_figures(audit: Audit, *, by: Grouping = "webhook_id") -> PeriodFigures:
    """The counts a comparison reads from ``audit`` (as narrowed by its filters)."""
    if by not in ("webhook_id", "advertiser_id"):
        raise ValueError(f"by must be 'webhook_id' or 'advertiser_id', not {by!r}")
    leads = rates(audit, by=by)
    leads = leads[leads[by] != "(all)"].set_index(by)[["leads", "received"]]
    clusters = audit.con.execute(_clusters_sql(by)).df().set_index("key")
    waits = audit.con.execute(_waits_sql(audit, by)).df()
    waits = waits.astype({"t_us": "int64", "events": "int64", "leaving": "int64", "kept": "int64"})
    capture = waits.groupby("key")[["events", "kept"]].sum().rename(columns={"events": "answered"})
    counts = leads.join(clusters[["callbacks", *_CALLBACK_COUNTS.values()]], how="outer").join(capture, how="outer")
    counts = counts.fillna(0).astype("int64")
    counts.index.name = "key"
    design = _design_effects(clusters)
    if audit.filters:
        # A filter keeps a callback to another webhook that names a kept lead (audit/filters.py): its group is
        # none the filters chose, and a few misrouted callbacks are no figure of it.
        kept = set(audit.webhooks.webhook_ids) if by == "webhook_id" else {
            v.advertiser_id for v in audit.webhooks.versions}
        counts = counts[counts.index.isin(kept) | (counts["leads"] > 0)]
        design = design[design.index.isin(counts.index)]
    return PeriodFigures(by, counts, design, waits[["key", "t_us", "events", "leaving"]])


def _clusters_sql(by: Grouping) -> str:
    """Per group: ``callbacks`` and each callback count of :data:`_CALLBACK_COUNTS`, with the sums over the
    group's clusters that its design effect reads: ``mm`` = Σ m², and per count ``yy`` = Σ y², ``ym`` = Σ y·m
    (``m`` a cluster's callbacks, ``y`` those of them counted)."""
    # A cluster: the callbacks resolved to one lead (a retry storm), else those to one token carrying the same
    # identifiers (a storm of a mistyped ID), else the callback alone.
    cluster = """CASE WHEN lead_row IS NOT NULL THEN 'lead ' || lead_row
                      WHEN conversion_id IS NOT NULL OR external_id IS NOT NULL
                          THEN 'ids ' || to_json([token, conversion_id, external_id])
                      ELSE 'callback ' || ord END"""
    counts = ", ".join(f"count(*) FILTER ({condition}) AS {quote_identifier(name)}"
                       for name, condition in _CALLBACK_CONDITIONS.items())
    sums = ", ".join(
        f"sum({quote_identifier(name)}) AS {quote_identifier(name)}, "
        f"sum({quote_identifier(name)} * {quote_identifier(name)})::DOUBLE AS {quote_identifier(name + ' yy')}, "
        f"sum({quote_identifier(name)} * m)::DOUBLE AS {quote_identifier(name + ' ym')}"
        for name in _CALLBACK_CONDITIONS)
    return f"""
        WITH clusters AS (
            SELECT key, count(*) AS m, {counts}
            FROM ({_keyed_callbacks(by)}) GROUP BY key, {cluster}
        )
        SELECT key, sum(m) AS callbacks, sum(m * m)::DOUBLE AS mm, {sums}
        FROM clusters GROUP BY key ORDER BY key
    """


def _design_effects(clusters: pd.DataFrame) -> pd.DataFrame:
    """Per group and callback metric: the variance of its rate over the group's clusters (the ratio estimator's,
    Σ (y − p·m)² / n²) ÷ the binomial ``p(1 − p)/n`` callbacks would give were they independent; at least 1, so
    a test is never surer than the plain one. 1 where ``p`` is 0 or 1 (neither varies)."""
    n = clusters["callbacks"].to_numpy(dtype=float)
    effects = {}
    for metric, name in _CALLBACK_COUNTS.items():
        x = clusters[name].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = x / n
            spread = clusters[name + " yy"] - 2 * p * clusters[name + " ym"] + p * p * clusters["mm"]
            ratio = spread.to_numpy(dtype=float) / (n * p * (1 - p))
        effects[metric] = np.where((p > 0) & (p < 1), np.maximum(ratio, 1.0), 1.0)
    return pd.DataFrame(effects, index=clusters.index)


def _waits_sql(audit: Audit, by: Grouping) -> str:
    """Per group and finishing-wait time (censored leads at the time they waited so far): events, leaving, and
    the answers the current timeout keeps (that of the version starting last, as ``timeout_advice`` reads)."""
    key = "w.webhook_id" if by == "webhook_id" else "d.advertiser_id"
    versions = _latest_versions(audit.webhooks)
    current = ("SELECT * FROM (VALUES " + ", ".join(
        f"({quote_literal(v.webhook_id)}, {seconds_to_us(v.timeout_s) if v.timeout_s is not None else 'NULL'})"
        for v in versions) + ")" if versions else "SELECT NULL, NULL WHERE false")
    return f"""
        WITH w AS ({finishing_waits_sql()}),
        current(webhook_id, current_us) AS ({current}),
        keyed AS (
            SELECT {key} AS key, coalesce(w.wait_us, w.end_us - w.created_us) AS t_us,
                   w.wait_us IS NOT NULL AS event,
                   w.wait_us <= coalesce(c.current_us, {_FOREVER_US}) AS kept
            FROM w JOIN {DISPATCHES} d ON d."row" = w."row"
            LEFT JOIN current c ON c.webhook_id = w.webhook_id
            WHERE w.created_us <= w.end_us
        )
        SELECT key, t_us, count(*) FILTER (event) AS events, count(*) AS leaving, count(*) FILTER (kept) AS kept
        FROM keyed GROUP BY key, t_us ORDER BY key, t_us
    """


def compare(before: Audit, after: Audit, *, by: Grouping = "webhook_id", min_change: float = 0.05,
            alpha: float = 0.05) -> pd.DataFrame:
    """Per group and metric, ``before`` against ``after``: one row each, worst regression first (columns: the
    key, then :data:`COMPARE_COLUMNS`; definitions in docs/analysis.md, "Period comparison")."""
    return compare_figures(period_figures(before, by=by), period_figures(after, by=by), min_change=min_change,
                           alpha=alpha)


def compare_split(audit: Audit, at: datetime, *, by: Grouping = "webhook_id", filters: Filters | None = None,
                  min_change: float = 0.05, alpha: float = 0.05) -> pd.DataFrame:
    """One audit cut at ``at``: before is ``filters`` (default: the audit's own) until ``at``, after is them
    since ``at`` (leads by ``created_at``, callbacks by ``received_at``; docs/analysis.md, "Filters").

    The audit is narrowed to each period in turn on its own connection, then given back as it came.
    """
    base = audit.filters if filters is None else filters
    if (base.since is not None and to_us(at) <= to_us(base.since)) or (
            base.until is not None and to_us(at) >= to_us(base.until)):
        raise ReplayError(f"--split-at {at.isoformat()} is not inside the window ({base.describe()}), so one period "
                          "would be empty; split inside --since/--until")
    try:
        first = period_figures(apply_filters(audit, replace(base, until=at)), by=by)
        second = period_figures(apply_filters(audit, replace(base, since=at)), by=by)
    finally:
        _restore(audit)
    return compare_figures(first, second, min_change=min_change, alpha=alpha)


def _restore(audit: Audit) -> None:
    """Undo :func:`apply_filters`' narrowing of ``audit``'s connection back to ``audit.filters``."""
    if audit.filters:
        apply_filters(audit, audit.filters)
        return
    # apply_filters narrows by temporary views of these names (audit/filters.py); without them the database's
    # own relations are read again.
    for name in (DISPATCHES, LEAD_OUTCOMES, CALLBACK_OUTCOMES):
        audit.con.execute(f"DROP VIEW IF EXISTS temp.main.{quote_identifier(name)}")
    audit.cache.clear()


def compare_figures(before: PeriodFigures, after: PeriodFigures, *, min_change: float = 0.05,
                    alpha: float = 0.05) -> pd.DataFrame:
    """:func:`compare` on figures already read."""
    if before.by != after.by:
        raise ValueError("both periods must be grouped alike")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if not min_change >= 0:
        raise ValueError("min_change must be 0 or more")
    frame = pd.concat([_rate_rows(before, after), _wait_rows(before.waits, after.waits)],
                      ignore_index=True)
    # Holm over the run's tests: a rate row is one; a group's two wait rows share its log-rank test.
    test = frame["metric"].where(~frame["metric"].isin(list(_WAITS)), "waits")
    tests = frame.assign(test=test).drop_duplicates(["key", "test"])
    tests = tests[tests["p_value"].notna()]
    adjusted = pd.Series(holm(tests["p_value"].to_numpy()), index=pd.MultiIndex.from_frame(tests[["key", "test"]]))
    frame["p_holm"] = adjusted.reindex(pd.MultiIndex.from_arrays([frame["key"], test])).to_numpy()
    rising_is_worse = frame["metric"].map(_rising_is_worse).to_numpy()
    sign = np.where(rising_is_worse, 1.0, -1.0)
    waits = frame["metric"].isin(list(_WAITS)).to_numpy()
    change = frame["change"].to_numpy(dtype=float)
    before_value = frame["before"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A wait's size is relative to its value before (a 0 s median has none: any rise is infinite).
        size = np.where(waits, np.abs(change) / before_value, np.abs(change))
        size = np.where(waits & (before_value == 0) & (change == 0), 0.0, size)
    frame["flagged"] = (frame["p_holm"].to_numpy() < alpha) & (size >= min_change - _EPSILON)
    frame["worse"] = sign * change > 0
    # Flagged rows first, the largest change in the bad direction first (points for rates, relative for waits);
    # then the rest, changes in the bad direction first, each by p-value: the likeliest regressions next.
    flagged = frame["flagged"].to_numpy()
    badness = np.where(waits, np.sign(change) * size, change) * sign
    # Mirror images (match_rate down, rate_404 up by as much) tie, though their floats may differ in the last bit.
    with np.errstate(divide="ignore"):
        evidence = np.round(np.log(frame["p_value"].to_numpy(dtype=float)), 9)
    frame = frame.assign(_1=~flagged, _2=np.round(np.where(flagged, -badness, 0.0), 12),
                         _3=~flagged & ~frame["worse"].to_numpy(), _4=evidence)
    frame = frame.sort_values(["_1", "_2", "_3", "_4", "key", "metric"], na_position="last", kind="stable")
    frame = frame.rename(columns={"key": before.by})[[before.by, *COMPARE_COLUMNS]].reset_index(drop=True)
    frame.attrs["tests"] = len(tests)
    return frame


def is_wait(metric: str) -> bool:
    """The metric is a finishing-wait quantile (seconds, tested by log-rank), not a rate."""
    return metric in _WAITS


def _rising_is_worse(metric: str) -> bool:
    return metric in _WAITS or _RATES[metric][2]


def _rate_rows(before: PeriodFigures, after: PeriodFigures) -> pd.DataFrame:
    keys = before.counts.index.union(after.counts.index)
    counts = [side.counts.reindex(keys, fill_value=0) for side in (before, after)]
    design = [side.design.reindex(keys, fill_value=1.0) for side in (before, after)]
    parts = []
    for metric, (numerator, denominator, _) in _RATES.items():
        parts.append(pd.DataFrame({
            "key": keys, "metric": metric,
            "x_before": counts[0][numerator].to_numpy(), "n_before": counts[0][denominator].to_numpy(),
            "x_after": counts[1][numerator].to_numpy(), "n_after": counts[1][denominator].to_numpy(),
            # Leads are independent units; callbacks come in clusters.
            "deff_before": design[0][metric].to_numpy() if metric in _CALLBACK_COUNTS else 1.0,
            "deff_after": design[1][metric].to_numpy() if metric in _CALLBACK_COUNTS else 1.0}))
    rows = pd.concat(parts, ignore_index=True)
    rows = rows[(rows["n_before"] > 0) | (rows["n_after"] > 0)].reset_index(drop=True)
    result = two_proportions(rows["x_before"].to_numpy(), rows["n_before"].to_numpy(),
                             rows["x_after"].to_numpy(), rows["n_after"].to_numpy(),
                             rows["deff_before"].to_numpy(), rows["deff_after"].to_numpy())
    return pd.concat([rows[["key", "metric", "n_before", "n_after"]], result], axis=1)


def two_proportions(x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray,
                    deff1: np.ndarray | float = 1.0, deff2: np.ndarray | float = 1.0) -> pd.DataFrame:
    """Per pair, ``x1/n1`` (before) against ``x2/n2`` (after): ``before, after, change`` (after − before),
    Newcombe's 95 % interval of the change (``ci_low, ci_high``) and the pooled z-test's two-sided ``p_value``.

    ``deff1``, ``deff2``: each side's design effect (1: independent units): the test's variance of each side
    is multiplied by it, and Wilson's intervals read the effective sample ``n / deff``. A side with ``n = 0``
    leaves everything but its own proportion empty."""
    x1, n1, x2, n2 = (np.asarray(a, dtype=float) for a in (x1, n1, x2, n2))
    deff1, deff2 = np.asarray(deff1, dtype=float), np.asarray(deff2, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        low1, high1 = _wilson(p1, n1 / deff1)
        low2, high2 = _wilson(p2, n2 / deff2)
        change = p2 - p1
        ci_low = change - np.sqrt((p2 - low2) ** 2 + (high1 - p1) ** 2)
        ci_high = change + np.sqrt((high2 - p2) ** 2 + (p1 - low1) ** 2)
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (deff1 / n1 + deff2 / n2))
        # Both sides all 0 or all 1: nothing differs, and the test's p is 1 (not 0/0).
        z = np.where(se > 0, change / se, 0.0)
        p_value = np.where(np.isnan(change), np.nan, 2 * stats.norm.sf(np.abs(z)))
    return pd.DataFrame({"before": p1, "after": p2, "change": change, "ci_low": ci_low, "ci_high": ci_high,
                         "p_value": p_value})


def _wilson(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's 95 % score interval of a proportion ``p`` of ``n``."""
    z2 = _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def _wait_rows(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    q1, q2 = _km_quantiles(before), _km_quantiles(after)
    keys = q1.index.union(q2.index)
    q1, q2 = q1.reindex(keys), q2.reindex(keys)
    p_value = logrank(before, after).reindex(keys)
    parts = []
    for metric in _WAITS:
        parts.append(pd.DataFrame({
            "key": keys, "metric": metric, "n_before": q1["leads"].fillna(0).astype("int64").to_numpy(),
            "n_after": q2["leads"].fillna(0).astype("int64").to_numpy(),
            "before": q1[metric].to_numpy(dtype=float), "after": q2[metric].to_numpy(dtype=float),
            "ci_low": np.nan, "ci_high": np.nan, "p_value": p_value.to_numpy(dtype=float)}))
    rows = pd.concat(parts, ignore_index=True)
    rows["change"] = rows["after"] - rows["before"]
    return rows


def _km_quantiles(waits: pd.DataFrame) -> pd.DataFrame:
    """Per group: ``leads`` and the first event times where the Kaplan–Meier share finished reaches each of
    :data:`_WAITS`' shares (empty when it never does), in seconds."""
    waits = waits.sort_values(["key", "t_us"], kind="stable")
    groups = waits.groupby("key", sort=False)["leaving"]
    at_risk = groups.transform("sum") - groups.cumsum() + waits["leaving"]
    survival = (1 - waits["events"] / at_risk).groupby(waits["key"], sort=False).cumprod()
    finished = waits.assign(captured=1 - survival)[waits["events"] > 0]
    result = pd.DataFrame({"leads": waits.groupby("key")["leaving"].sum()})
    for metric, share in _WAITS.items():
        reached = finished[finished["captured"] >= share - _EPSILON]
        result[metric] = reached.groupby("key")["t_us"].min() / 1e6
    return result


def logrank(before: pd.DataFrame, after: pd.DataFrame) -> pd.Series:
    """Per group present on both sides, the two-sided p-value of the log-rank (Mantel–Cox) test of the two
    survival curves; ``before`` and ``after`` hold ``key, t_us, events, leaving`` (:class:`PeriodFigures`).
    Empty where no lead finished on either side (the variance is 0: nothing to test)."""
    both = before.merge(after, on=["key", "t_us"], how="outer", suffixes=("_1", "_2")).fillna(0)
    present = set(before["key"]) & set(after["key"])
    both = both[both["key"].isin(present)].sort_values(["key", "t_us"], kind="stable")
    at_risk = {}
    for side in ("1", "2"):
        groups = both.groupby("key", sort=False)[f"leaving_{side}"]
        at_risk[side] = (groups.transform("sum") - groups.cumsum() + both[f"leaving_{side}"]).to_numpy(dtype=float)
    n1, n2 = at_risk["1"], at_risk["2"]
    d1, d = both["events_1"].to_numpy(dtype=float), (both["events_1"] + both["events_2"]).to_numpy(dtype=float)
    n = n1 + n2
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(d > 0, d * n1 / n, 0.0)
        variance = np.where((d > 0) & (n > 1), d * (n1 / n) * (n2 / n) * (n - d) / (n - 1), 0.0)
    sums = pd.DataFrame({"key": both["key"].to_numpy(), "observed": d1, "expected": expected,
                         "variance": variance}).groupby("key")[["observed", "expected", "variance"]].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (sums["observed"] - sums["expected"]) ** 2 / sums["variance"]
    p_value = pd.Series(stats.chi2.sf(statistic.to_numpy(dtype=float), 1), index=sums.index, dtype=float)
    return p_value.where(sums["variance"] > 0)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): the ``i``-th smallest of ``m`` becomes
    ``max over j <= i of min(1, (m − j + 1) · p_(j))``; a p-value is significant at ``alpha`` after the
    correction exactly when its adjusted one is below ``alpha``."""
    values = np.asarray(p_values, dtype=float)
    m = len(values)
    if m == 0:
        return values.copy()
    order = np.argsort(values, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
