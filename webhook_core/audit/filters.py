"""Narrowing an audit to some advertisers, webhooks or a time window, for every analysis at once.

A filter selects rows; it never judges again. Leads (``lead_outcomes``, ``dispatches``) are kept when
their webhook and advertiser pass and they were created in ``[since, until)``; callbacks
(``callback_outcomes``) when the webhook their token names passes (a callback to an unknown token
passes no webhook or advertiser filter) and they were received in ``[since, until)``. Outcomes and lead
states stay those of the whole replay, as of its observation end: a lead created before ``until`` and
answered after it is still ``received`` (docs/analysis.md, "Filters").

The filtered relations are temporary views of the same names on the audit's connection; DuckDB reads a
temporary object before the database's own, so every analysis reads them without knowing. They read
the database's relations by their qualified names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from webhook_core.audit.schema import CALLBACK_OUTCOMES, DISPATCHES, LEAD_OUTCOMES, REPLAY_VERSIONS
from webhook_core.exceptions import ReplayError
from webhook_core.quoting import quote_identifier, quote_literal
from webhook_core.rules.settings import WebhookVersions
from webhook_core.timeutil import to_us

if TYPE_CHECKING:  # audit.py holds an Audit's Filters
    from webhook_core.audit.audit import Audit

__all__ = ["Filters", "apply_filters"]


@dataclass(frozen=True, slots=True)
class Filters:
    """What to keep; empty means everything. ``since`` is inclusive, ``until`` exclusive."""

    advertisers: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.advertisers or self.webhooks or self.since or self.until)

    def describe(self) -> str:
        """``advertiser acme, since 2026-11-02T00:00:00+00:00`` (empty for no filter)."""
        parts = [f"advertiser {', '.join(self.advertisers)}" if self.advertisers else "",
                 f"webhook {', '.join(self.webhooks)}" if self.webhooks else "",
                 f"since {self.since.isoformat()}" if self.since else "",
                 f"until {self.until.isoformat()}" if self.until else ""]
        return ", ".join(part for part in parts if part)


def apply_filters(audit: Audit, filters: Filters) -> Audit:
    """Narrow ``audit`` (its connection: the audit given is narrowed too) to ``filters``; returns it with
    ``filters`` set and a fresh analysis cache."""
    if not filters:
        return audit
    if filters.since and filters.until and to_us(filters.until) <= to_us(filters.since):
        raise ReplayError(f"--until {filters.until.isoformat()} is not after --since {filters.since.isoformat()}; "
                          "give a window that ends after it starts")
    known_webhooks = set(audit.webhooks.webhook_ids)
    known_advertisers = {v.advertiser_id for v in audit.webhooks.versions}
    for option, names, known in (("--webhook", filters.webhooks, known_webhooks),
                                 ("--advertiser", filters.advertisers, known_advertisers)):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ReplayError(f"{option} {unknown[0]!r} is not in webhooks.json; it has {', '.join(sorted(known))}")
    con = audit.con
    (database,) = con.execute("SELECT current_database()").fetchone() or ("memory",)
    main = f"{quote_identifier(database)}.main"
    versions = f"{main}.{REPLAY_VERSIONS}"
    webhooks = _webhook_condition(filters, versions, "webhook_id")
    # A callback is charged to the webhook its token names, live or not (rates.py); one naming a kept lead
    # from another webhook is kept too, so the kept webhook's misrouted_in is whole.
    charged = (f"({_webhook_condition(filters, versions, 'coalesce(webhook_id, token_webhook_id)')} "
               f"OR {_webhook_condition(filters, versions, 'owner_webhook_id')})")
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW {DISPATCHES} AS
        SELECT * FROM {main}.{DISPATCHES}
        WHERE {webhooks} AND {_window("created_at", filters)};
        CREATE OR REPLACE TEMP VIEW {LEAD_OUTCOMES} AS
        SELECT * FROM {main}.{LEAD_OUTCOMES}
        WHERE {webhooks} AND {_window("created_at", filters)};
        CREATE OR REPLACE TEMP VIEW {CALLBACK_OUTCOMES} AS
        SELECT * FROM {main}.{CALLBACK_OUTCOMES}
        WHERE {charged} AND {_window("received_at", filters)};
    """)
    # What the analyses computed and kept (pairing's request values) was of the whole audit.
    audit.cache.clear()
    # The settings too: pairing and the timeout advice list the webhooks of the settings they are given.
    wanted = set(filters.advertisers)
    kept = tuple(v for v in audit.webhooks.versions
                 if (not filters.webhooks or v.webhook_id in filters.webhooks)
                 and (not wanted or _advertisers_of(audit.webhooks, v.webhook_id) & wanted))
    return replace(audit, filters=filters, webhooks=WebhookVersions(kept))


def _advertisers_of(webhooks: WebhookVersions, webhook_id: str) -> set[str]:
    """A webhook's advertisers: those of any of its versions, as the SQL filter reads ``replay_versions``."""
    return {v.advertiser_id for v in webhooks.versions if v.webhook_id == webhook_id}


def _webhook_condition(filters: Filters, versions: str, column: str) -> str:
    """SQL over ``column``, a webhook ID: it is one of ``--webhook`` and belongs to one of ``--advertiser``
    (a webhook's advertiser is that of its versions); NULL passes neither."""
    conditions = ["true"]
    if filters.webhooks:
        conditions.append(f"{column} IN ({', '.join(quote_literal(w) for w in filters.webhooks)})")
    if filters.advertisers:
        names = ", ".join(quote_literal(a) for a in filters.advertisers)
        conditions.append(f"{column} IN (SELECT webhook_id FROM {versions} WHERE advertiser_id IN ({names}))")
    return "coalesce(" + " AND ".join(conditions) + ", false)"


def _window(column: str, filters: Filters) -> str:
    conditions = ["true"]
    if filters.since is not None:
        conditions.append(f"epoch_us({column}) >= {to_us(filters.since)}")
    if filters.until is not None:
        conditions.append(f"epoch_us({column}) < {to_us(filters.until)}")
    return " AND ".join(conditions)
