"""Webhook settings: what ``webhooks.json`` holds, validated.

One entry per webhook *version*: a webhook deleted and recreated with the same ID
is two entries whose ``active_from`` / ``active_to`` intervals do not overlap.
See docs/semantics.md, "Webhook settings".
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webhook_core.exceptions import ConfigError, DatasetError, LocationError, MissingFileError, ReplayError
from webhook_core.rules.locations import Location, parse_location
from webhook_core.timeutil import seconds_to_us

__all__ = [
    "IDENTIFIERS",
    "PairingRule",
    "WebhookSettings",
    "WebhookVersions",
    "load_webhooks",
    "parse_timestamp",
    "parse_webhooks",
]

#: The identifiers a callback can carry, in the order they are extracted.
IDENTIFIERS = ("conversion_id", "external_id", "advertiser_id")

_KNOWN_FIELDS = {
    "webhook_id", "advertiser_id", "wait", "timeout_s", "pairing", "status_location",
    "interim_statuses", "active_from", "active_to", "name", "description",
}


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 → aware datetime; a naive time is UTC. Raises ValueError."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class PairingRule:
    """Lead ID pairing: read ``identifier`` from ``location`` before the standard names."""

    identifier: str
    location: Location


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """One version of a webhook. ``webhook_id`` is also the URL token."""

    webhook_id: str
    advertiser_id: str
    wait: bool = False
    timeout_s: float | None = None
    pairing: tuple[PairingRule, ...] = ()
    status_location: Location | None = None
    interim_statuses: frozenset[str] = field(default_factory=frozenset)
    active_from: datetime | None = None
    active_to: datetime | None = None

    @property
    def timeout_us(self) -> int | None:
        """The timeout in whole microseconds (half up): the unit every comparison uses."""
        return None if self.timeout_s is None else seconds_to_us(self.timeout_s)

    def is_live(self, at: datetime) -> bool:
        """Live on ``[active_from, active_to)``; an open end is unbounded."""
        if self.active_from is not None and at < self.active_from:
            return False
        return self.active_to is None or at < self.active_to

    def pairing_for(self, identifier: str) -> tuple[Location, ...]:
        return tuple(rule.location for rule in self.pairing if rule.identifier == identifier)


@dataclass(frozen=True, slots=True)
class WebhookVersions:
    """All versions of all webhooks, with the lookups the matchers need."""

    versions: tuple[WebhookSettings, ...]
    #: The versions of each webhook ID, in file order: the online matcher looks one up per callback
    #: and per lead, and a scan of every version made that grow with the file (40,000 versions).
    _by_id: dict[str, tuple[WebhookSettings, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_id: dict[str, list[WebhookSettings]] = {}
        for version in self.versions:
            by_id.setdefault(version.webhook_id, []).append(version)
        object.__setattr__(self, "_by_id", {key: tuple(group) for key, group in by_id.items()})

    def live(self, webhook_id: str, at: datetime) -> WebhookSettings | None:
        for version in self._by_id.get(webhook_id, ()):
            if version.is_live(at):
                return version
        return None

    @property
    def webhook_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def with_timeouts(self, overrides: Mapping[str | None, float]) -> WebhookVersions:
        """What-if: replace ``timeout_s`` of the versions that wait.

        ``overrides[None]`` applies to every waiting webhook; a webhook ID key to
        that webhook only (and wins over ``None``).
        """
        known = set(self.webhook_ids)
        for key in overrides:
            if key is not None and key not in known:
                raise ReplayError(f"--timeout: webhook {key!r}: no webhook with this ID; "
                                  f"known: {', '.join(sorted(known))}")
        replaced = []
        for version in self.versions:
            timeout = overrides.get(version.webhook_id, overrides.get(None))
            if version.wait and timeout is not None:
                version = dataclasses.replace(version, timeout_s=timeout)
            replaced.append(version)
        return WebhookVersions(tuple(replaced))


def load_webhooks(path: str | Path) -> WebhookVersions:
    """Read and validate ``webhooks.json``; raise one :class:`ConfigError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("file not found; a dataset needs webhooks.json", path=str(path))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path=str(path)
        ) from exc
    return parse_webhooks(document, source=str(path))


def parse_webhooks(document: Any, *, source: str = "<settings>") -> WebhookVersions:
    """Validate an already-decoded ``webhooks.json`` document."""
    if not isinstance(document, list):
        raise ConfigError("expected a JSON list of webhook settings", source=source)
    versions = tuple(_parse_entry(entry, index, source) for index, entry in enumerate(document, 1))
    _check_overlaps(versions, source)
    return WebhookVersions(versions)


def _parse_entry(entry: Any, index: int, source: str) -> WebhookSettings:
    label = f"#{index}"
    if not isinstance(entry, dict):
        raise ConfigError("expected an object", source=source, webhook=label)
    raw_id = entry.get("webhook_id")
    if isinstance(raw_id, str) and raw_id:
        label = f"'{raw_id}' (entry {index})"

    def fail(field_name: str, message: str) -> ConfigError:
        return ConfigError(message, source=source, webhook=label, field=field_name)

    unknown = sorted(set(entry) - _KNOWN_FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field; known fields are {', '.join(sorted(_KNOWN_FIELDS))}")
    webhook_id = _required_text(entry, "webhook_id", fail)
    if "/" in webhook_id:
        raise fail("webhook_id", "must not contain '/': it is the last path segment of the URL")
    advertiser_id = _required_text(entry, "advertiser_id", fail)

    wait = entry.get("wait", False)
    if not isinstance(wait, bool):
        raise fail("wait", f"must be true or false, got {wait!r}")
    timeout = entry.get("timeout_s")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
            raise fail("timeout_s", f"must be a number of seconds or null, got {timeout!r}")
        if timeout <= 0:
            raise fail("timeout_s", f"must be positive, got {timeout!r}")
        if not wait:
            raise fail("timeout_s", "only allowed when wait is true; set \"wait\": true or remove timeout_s")

    pairing_raw = entry.get("pairing", [])
    if not isinstance(pairing_raw, list):
        raise fail("pairing", "must be a list of {\"identifier\": ..., \"location\": ...}")
    pairing = []
    for position, rule in enumerate(pairing_raw, 1):
        name = f"pairing[{position}]"
        if not isinstance(rule, dict) or set(rule) != {"identifier", "location"}:
            raise fail(name, "must be an object with exactly 'identifier' and 'location'")
        if rule["identifier"] not in IDENTIFIERS:
            raise fail(f"{name}.identifier",
                       f"{rule['identifier']!r} is not one of {', '.join(IDENTIFIERS)}")
        pairing.append(PairingRule(rule["identifier"], _location(rule["location"], f"{name}.location", fail)))

    status_location = None
    if entry.get("status_location") is not None:
        status_location = _location(entry["status_location"], "status_location", fail)
    interim = entry.get("interim_statuses", [])
    if not isinstance(interim, list) or not all(isinstance(s, str) for s in interim):
        raise fail("interim_statuses", "must be a list of strings")
    if interim and status_location is None:
        raise fail("interim_statuses", "needs status_location to say where the status is read")

    return WebhookSettings(
        webhook_id=webhook_id,
        advertiser_id=advertiser_id,
        wait=wait,
        timeout_s=None if timeout is None else float(timeout),
        pairing=tuple(pairing),
        status_location=status_location,
        interim_statuses=frozenset(interim),
        active_from=_timestamp(entry, "active_from", fail),
        active_to=_timestamp(entry, "active_to", fail),
    )


def _required_text(entry: dict[str, Any], name: str, fail: Any) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or value == "":
        raise fail(name, f"required, a non-empty string; got {value!r}")
    return value


def _location(text: Any, field_name: str, fail: Any) -> Location:
    try:
        return parse_location(text)
    except LocationError as exc:
        raise fail(field_name, exc.message) from exc


def _timestamp(entry: dict[str, Any], name: str, fail: Any) -> datetime | None:
    value = entry.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return parse_timestamp(value)
    except ValueError as exc:
        raise fail(name, f"not an ISO 8601 timestamp: {value!r}") from exc


def _check_overlaps(versions: Sequence[WebhookSettings], source: str) -> None:
    by_id: dict[str, list[WebhookSettings]] = {}
    for version in versions:
        by_id.setdefault(version.webhook_id, []).append(version)
    lowest = datetime.min.replace(tzinfo=UTC)
    highest = datetime.max.replace(tzinfo=UTC)
    for webhook_id, group in by_id.items():
        for version in group:
            if (version.active_from or lowest) >= (version.active_to or highest):
                raise ConfigError("active_from must be before active_to", source=source,
                                  webhook=f"'{webhook_id}'", field="active_to")
        ordered = sorted(group, key=lambda v: v.active_from or lowest)
        for earlier, later in itertools.pairwise(ordered):
            if (earlier.active_to or highest) > (later.active_from or lowest):
                raise ConfigError(
                    "two versions are live at the same time; give the older one an active_to "
                    "no later than the newer one's active_from",
                    source=source, webhook=f"'{webhook_id}'", field="active_from",
                )
