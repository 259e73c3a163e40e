"""What the replay judges a callback by, its *keys*, as one SQL projection.

A callback's keys: the webhook version live for its token at ``received_at``
(docs/semantics.md, M1), the identifiers it carries (L- and X-rules) and whether
its status is interim. Everything else about the request (URL, headers, body) is
read only to find them.

:func:`keys_sql` is a projection with no join or aggregate, so DuckDB keeps its
input's order through it. The loader relies on that: for a one-shot replay it
computes the keys while it reads a JSONL file, numbers the lines afterwards from
the row order, and never stores the requests (``load_dataset(..., keep_requests=False)``).
The replay computes the same keys from the loaded ``callback_rows`` otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from webhook_core.quoting import quote_literal
from webhook_core.rules.extraction import STANDARD_NAMES
from webhook_core.rules.locations import Location, LocationKind
from webhook_core.rules.macros import json_pointer, location_sql, standard_sql
from webhook_core.rules.settings import IDENTIFIERS, WebhookSettings, WebhookVersions
from webhook_core.timeutil import to_us

__all__ = ["KEY_COLUMNS", "keys_fingerprint", "keys_sql"]

T = TypeVar("T")

#: The columns of :func:`keys_sql`; ``us`` is ``received_at`` in epoch microseconds.
KEY_COLUMNS = ("seq", "request_id", "us", "recorded_status", "refused", "token", "body_kind", "webhook_id",
               "conversion_id", "external_id", "advertiser_id", "is_interim")


def keys_fingerprint(webhooks: WebhookVersions) -> str:
    """The settings keys depend on (not ``wait`` or ``timeout_s``), as text to compare."""
    return json.dumps([
        [v.webhook_id, v.advertiser_id, None if v.active_from is None else v.active_from.isoformat(),
         None if v.active_to is None else v.active_to.isoformat(),
         [[p.identifier, str(p.location)] for p in v.pairing],
         None if v.status_location is None else str(v.status_location), sorted(v.interim_statuses or ())]
        for v in webhooks.versions
    ])


def keys_sql(webhooks: WebhookVersions, source: str, passthrough: Sequence[str] = ()) -> str:
    """SQL: a SELECT of :data:`KEY_COLUMNS` (and ``passthrough``) from ``source``.

    ``source`` is a relation with ``seq, request_id, received_at, recorded_status, refused,
    url, headers`` (JSON or its text, as captured) and ``body``. A refused callback gets no
    version, so no identifiers either: it is not judged.
    """
    # Every JSON value any location reads: its type and its text, from one parse of the body each.
    json_paths = [loc.path for version in webhooks.versions for loc in _locations(version)
                  if loc.kind is LocationKind.JSON]
    pointers = [json_pointer((name,)) for name in STANDARD_NAMES.values()] + [json_pointer(p) for p in json_paths]
    slots = {pointer: index for index, pointer in enumerate(dict.fromkeys(pointers), 1)}
    json_list = ", ".join(quote_literal(pointer) for pointer in slots)

    # A location is read only for the callbacks of the versions that name it: each is a
    # branch of a CASE, which DuckDB evaluates for that branch's rows alone. Versions that read
    # the same locations share a branch, picked by their number: a branch per version made the
    # SQL, and DuckDB's time to plan it, grow with the versions (13 s for 1,000 with pairing).
    standard = {identifier: standard_sql(name, slots) for identifier, name in STANDARD_NAMES.items()}
    identifier_cases = {}
    for identifier in IDENTIFIERS:
        configured = _grouped([v.pairing_for(identifier) or None for v in webhooks.versions])
        branches = [f"WHEN {int(group)} THEN coalesce({', '.join(location_sql(loc, slots) for loc in locations)}, "
                    f"{standard[identifier]})" for locations, group in configured.groups.items()]
        identifier_cases[identifier] = (f"CASE {configured.of_version} {' '.join(branches)} "
                                        f"ELSE {standard[identifier]} END" if branches else standard[identifier])
    interim = _grouped([(v.status_location, tuple(sorted(v.interim_statuses)))
                        if v.status_location is not None and v.interim_statuses else None
                        for v in webhooks.versions])
    interim_branches = [
        f"WHEN {int(group)} THEN coalesce({location_sql(location, slots)} IN "
        f"({', '.join(quote_literal(s) for s in statuses)}), false)"
        for (location, statuses), group in interim.groups.items()]
    interim_case = (f"CASE {interim.of_version} {' '.join(interim_branches)} ELSE false END"
                    if interim_branches else "false")
    extra = "".join(f", {name}" for name in passthrough)
    return f"""
    SELECT seq, request_id, us, recorded_status, refused, token, body_kind, webhook_id,
           CASE WHEN webhook_id IS NOT NULL THEN {identifier_cases['conversion_id']} END AS conversion_id,
           CASE WHEN webhook_id IS NOT NULL THEN {identifier_cases['external_id']} END AS external_id,
           CASE WHEN webhook_id IS NOT NULL
                THEN coalesce({identifier_cases['advertiser_id']}, version_advertiser) END AS advertiser_id,
           CASE WHEN webhook_id IS NOT NULL THEN {interim_case} ELSE false END AS is_interim{extra}
    FROM (
        SELECT *,
            strpos(query, '%') = 0 AND strpos(query, '+') = 0 AS query_plain,
            body_kind = 'form' AND strpos(body, '%') = 0 AND strpos(body, '+') = 0 AS form_plain,
            CASE WHEN body_kind = 'json' AND webhook_id IS NOT NULL THEN json_type(body, [{json_list}]) END
                AS json_kinds,
            CASE WHEN body_kind = 'json' AND webhook_id IS NOT NULL THEN json_extract_string(body, [{json_list}]) END
                AS json_texts
        FROM (
            SELECT *,
                CASE
                    WHEN body IS NULL OR body = '' THEN 'empty'
                    WHEN json_valid(body) THEN 'json'
                    -- (ltrim with a set of characters is slow: only a body opening with whitespace needs it)
                    WHEN starts_with(body, '{{') OR starts_with(body, '[')
                         OR (ascii(body) IN (32, 9, 13, 10) AND ltrim(body, ' \t\r\n')[1] IN ('{{', '['))
                         -- Looking up a header costs far more than a search of them all: without an
                         -- escape, 'json' in the Content-Type would be in the headers' text as written.
                         OR ((contains(CAST(headers AS VARCHAR), '\\')
                              OR contains(wa_ascii_lower(CAST(headers AS VARCHAR)), 'json'))
                             AND contains(wa_ascii_lower(coalesce(wa_captured_header(headers, 'content-type'), '')),
                                          'json'))
                        THEN 'invalid_json'
                    ELSE 'form'
                END AS body_kind,
                {_list_at([v.webhook_id for v in webhooks.versions], "VARCHAR")} AS webhook_id,
                {_list_at([v.advertiser_id for v in webhooks.versions], "VARCHAR")} AS version_advertiser
            FROM (
                SELECT *, CASE WHEN NOT refused THEN {_version_case(webhooks)} END AS version_no
                FROM (SELECT *, wa_base_token(base) AS token
                      FROM (SELECT seq, request_id, epoch_us(received_at) AS us, recorded_status, refused,
                                   headers, body,
                                   split_part(split_part(url, '#', 1), '?', 1) AS base,
                                   wa_query(url) AS query{extra}
                            FROM {source}))
            )
        )
    )
    """


@dataclass(frozen=True, slots=True)
class _Groups(Generic[T]):
    """Distinct settings numbered from 1, and each version's group (0: none)."""

    groups: dict[T, int]
    numbers: tuple[int, ...]

    @property
    def of_version(self) -> str:
        """SQL: the group of the row's version (0: none). Built from numbers alone, which
        tests/test_sql_safety.py can see."""
        if not self.groups:
            return "0"
        return f"[{', '.join(str(number) for number in self.numbers)}][version_no + 1]"


def _grouped(settings: list[T | None]) -> _Groups[T]:
    groups: dict[T, int] = {}
    numbers = tuple(0 if s is None else groups.setdefault(s, len(groups) + 1) for s in settings)
    return _Groups(groups, numbers)


def _version_case(webhooks: WebhookVersions) -> str:
    """SQL: the number of the version live for ``token`` at ``us`` (M1), else NULL.

    A CASE, not a join with the versions: a join would not keep the input's order (see
    the module docstring). Versions of one ID never overlap (settings.py checks).
    """
    by_id: dict[str, list[tuple[int, WebhookSettings]]] = {}
    for number, version in enumerate(webhooks.versions):
        by_id.setdefault(version.webhook_id, []).append((number, version))
    if not by_id:
        return "CAST(NULL AS INTEGER)"
    branches = []
    for webhook_id, versions in by_id.items():
        live = " ".join(f"WHEN {_live_sql(version)} THEN {number}" for number, version in versions)
        branches.append(f"WHEN {quote_literal(webhook_id)} THEN CASE {live} END")
    return f"CASE token {' '.join(branches)} END"


def _live_sql(version: WebhookSettings) -> str:
    """SQL: ``us`` within ``[active_from, active_to)``, an open end unbounded."""
    bounds = []
    if version.active_from is not None:
        bounds.append(f"us >= {to_us(version.active_from)}")
    if version.active_to is not None:
        bounds.append(f"us < {to_us(version.active_to)}")
    return " AND ".join(bounds) or "true"


def _list_at(values: list[str], kind: str) -> str:
    """SQL: ``values[version_no]`` (NULL when version_no is)."""
    if not values:
        return f"CAST(NULL AS {kind})"
    return f"[{', '.join(quote_literal(value) for value in values)}][version_no + 1]"


def _locations(version: WebhookSettings) -> list[Location]:
    found = [entry.location for entry in version.pairing]
    return found if version.status_location is None else [*found, version.status_location]
