"""Locations: where in a captured request a value is read from.

A location is written ``KIND.NAME``:

* ``query.NAME`` – the first query-string parameter whose decoded name is NAME;
* ``form.NAME``  – the same in a urlencoded body;
* ``json.PATH``  – a dot path into a JSON body (a numeric segment indexes an array,
  or names a key on an object);
* ``header.NAME`` – the first header whose name equals NAME ignoring case.

See docs/semantics.md, "Locations".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from webhook_core.exceptions import LocationError

__all__ = ["Location", "LocationKind", "parse_location"]


class LocationKind(enum.Enum):
    QUERY = "query"
    FORM = "form"
    JSON = "json"
    HEADER = "header"


@dataclass(frozen=True, slots=True)
class Location:
    kind: LocationKind
    name: str  # the parameter or header name; for JSON the whole dot path

    @property
    def path(self) -> tuple[str, ...]:
        """JSON path segments (only meaningful for ``json`` locations)."""
        return tuple(self.name.split("."))

    def __str__(self) -> str:
        return f"{self.kind.value}.{self.name}"


def parse_location(text: str) -> Location:
    """Parse ``"json.data.ref"`` into a :class:`Location`, or raise :class:`LocationError`."""
    if not isinstance(text, str):
        raise LocationError(f"a location must be a string like 'query.pcid', got {text!r}")
    kind_text, dot, name = text.partition(".")
    kinds = {k.value: k for k in LocationKind}
    if not dot or kind_text not in kinds or not name:
        raise LocationError(
            f"{text!r} is not a location; write query.NAME, form.NAME, json.PATH or header.NAME"
        )
    kind = kinds[kind_text]
    if kind is LocationKind.JSON and any(segment == "" for segment in name.split(".")):
        raise LocationError(f"{text!r} has an empty path segment; write json.a.b.0.c")
    return Location(kind, name)
