"""Reading identifiers out of one captured request (the online side).

``webhook_core.rules.macros`` expresses the same rules in DuckDB SQL for the set-based
replay; both follow docs/semantics.md ("Locations", "Identifier extraction") and
the property test holds them to each other.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from webhook_core.rules.locations import Location, LocationKind
from webhook_core.rules.requests import CapturedRequest
from webhook_core.rules.settings import WebhookSettings

__all__ = [
    "STANDARD_NAMES",
    "BodyKind",
    "Identifiers",
    "ParsedRequest",
    "extract_identifiers",
    "parse_request",
    "token_of",
]

#: The names every callback may use, whatever its pairing rules.
STANDARD_NAMES = {"conversion_id": "pcid", "external_id": "external_id", "advertiser_id": "advertiser_id"}

_ABSOLUTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_EXACT_DOUBLE_INTEGERS = 2**53
_MAYBE_TRAILING_COMMA = re.compile(r",[ \t\r\n]*[\]}]")
_COMMA_BEFORE_CLOSE = re.compile(r",(?=[ \t\r\n]*[\]}])")
_ESCAPE = re.compile(r"\\.", re.DOTALL)


class BodyKind(enum.Enum):
    EMPTY = "empty"
    JSON = "json"
    INVALID_JSON = "invalid_json"
    FORM = "form"


class _NoId:
    """A JSON value that can never be an identifier (a fraction, a non-finite number)."""


_NO_ID = _NoId()


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The parts of a request that locations read from."""

    token: str | None
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body_kind: BodyKind
    form: tuple[tuple[str, str], ...]
    json_body: Any

    def read(self, location: Location) -> str | None:
        """The value at ``location``, or None when absent or empty."""
        if location.kind is LocationKind.QUERY:
            return _first(self.query, location.name)
        if location.kind is LocationKind.FORM:
            return _first(self.form, location.name)
        if location.kind is LocationKind.HEADER:
            wanted = location.name.translate(_ASCII_LOWER)
            return next((v for n, v in self.headers if n.translate(_ASCII_LOWER) == wanted and v != ""), None)
        if self.body_kind is not BodyKind.JSON:
            return None
        return _json_text(_walk(self.json_body, location.path))

    def standard(self, name: str) -> str | None:
        """A standard name: query string, then form body, then top-level JSON key."""
        found = _first(self.query, name) or _first(self.form, name)
        if found is None and self.body_kind is BodyKind.JSON:
            found = _json_text(_walk(self.json_body, (name,)))
        return found


@dataclass(frozen=True, slots=True)
class Identifiers:
    conversion_id: str | None
    external_id: str | None
    advertiser_id: str | None
    status: str | None = None


def token_of(url: str) -> str | None:
    """The last non-empty path segment, percent-decoded."""
    path = url.split("#", 1)[0].split("?", 1)[0]
    if _ABSOLUTE_URL.match(path):
        after_scheme = path.split("://", 1)[1]
        slash = after_scheme.find("/")
        path = "" if slash < 0 else after_scheme[slash:]
    segments = [segment for segment in path.split("/") if segment]
    return _pct_decode(segments[-1]) if segments else None


def parse_request(request: CapturedRequest) -> ParsedRequest:
    url = request.url.split("#", 1)[0]
    query = url.split("?", 1)[1] if "?" in url else ""
    kind, document = _classify_body(request.body, request.headers)
    form = _parse_pairs(request.body or "") if kind is BodyKind.FORM else ()
    return ParsedRequest(
        token=token_of(request.url),
        query=_parse_pairs(query),
        headers=request.headers,
        body_kind=kind,
        form=form,
        json_body=document,
    )


def extract_identifiers(parsed: ParsedRequest, settings: WebhookSettings) -> Identifiers:
    """Pairing locations first, then the standard names; advertiser defaults to the webhook's."""
    values: dict[str, str | None] = {}
    for identifier, standard_name in STANDARD_NAMES.items():
        value = next(
            (v for loc in settings.pairing_for(identifier) if (v := parsed.read(loc)) is not None), None
        )
        values[identifier] = value if value is not None else parsed.standard(standard_name)
    status = parsed.read(settings.status_location) if settings.status_location is not None else None
    return Identifiers(
        conversion_id=values["conversion_id"],
        external_id=values["external_id"],
        advertiser_id=values["advertiser_id"] or settings.advertiser_id,
        status=status,
    )


def _first(pairs: tuple[tuple[str, str], ...], name: str) -> str | None:
    return next((value for key, value in pairs if key == name and value != ""), None)


def _pct_decode(text: str) -> str:
    """Percent-decode as UTF-8; text that does not decode to UTF-8 is kept as written."""
    if "%" not in text:
        return text
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return text


def _parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in text.split("&"):
        if part == "":
            continue
        key, _, value = part.partition("=")
        pairs.append((_pct_decode(key.replace("+", " ")), _pct_decode(value.replace("+", " "))))
    return tuple(pairs)


def _classify_body(body: str | None, headers: tuple[tuple[str, str], ...]) -> tuple[BodyKind, Any]:
    if body is None or body == "":
        return BodyKind.EMPTY, None
    document = _load_json(body)
    if document is not _INVALID:
        return BodyKind.JSON, document
    content_type = next((v for n, v in headers if n.translate(_ASCII_LOWER) == "content-type" and v != ""), "")
    if body.lstrip(" \t\r\n")[:1] in ("{", "[") or "json" in content_type.translate(_ASCII_LOWER):
        return BodyKind.INVALID_JSON, None
    return BodyKind.FORM, None


_INVALID = object()


def _load_json(body: str) -> Any:
    """Parse JSON as the SQL replay's reader does (yyjson in DuckDB).

    Beyond RFC 8259 that reader accepts a trailing comma before ``]`` or ``}``
    and the literals NaN / Infinity / inf (which never make an identifier);
    duplicate keys keep their first value.
    """
    try:
        text = _drop_trailing_commas(body) if _MAYBE_TRAILING_COMMA.search(body) else body
        document = json.loads(
            text,
            parse_int=lambda s: "0" if s == "-0" else s,
            parse_float=_float_text,
            parse_constant=lambda _: _NO_ID,
            object_pairs_hook=_first_key_wins,
        )
        json.dumps(document, default=lambda _: None, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return _INVALID
    return document


def _float_text(literal: str) -> str | _NoId:
    value = float(literal)
    if math.isfinite(value) and value == math.trunc(value) and abs(value) < _EXACT_DOUBLE_INTEGERS:
        return str(int(value))
    return _NO_ID


def _first_key_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


def _drop_trailing_commas(text: str) -> str:
    """Remove a comma outside strings that follows a token other than ``[ { , :`` and precedes ``]`` or ``}``.

    The receiver runs this on its event loop, so the work per character is done by
    ``re`` and ``str.count`` (C): escapes are masked with two characters of the same
    length, which leaves every unescaped quote in place; a candidate comma is then
    outside a string when an even number of quotes precede it. (A backslash outside
    a string could move that parity, but such text is invalid JSON either way.)
    """
    masked = _ESCAPE.sub("__", text) if "\\" in text else text
    cuts: list[int] = []
    quotes = counted = 0
    for found in _COMMA_BEFORE_CLOSE.finditer(masked):
        comma = found.start()
        between = masked[counted:comma]  # from the last candidate: every character is looked at once
        quotes += between.count('"')
        counted = comma
        if quotes % 2 == 0 and between.rstrip(" \t\r\n")[-1:] not in ("", "[", "{", ",", ":"):
            cuts.append(comma)
    if not cuts:
        return text
    starts = [0, *(cut + 1 for cut in cuts)]
    return "".join(text[start:end] for start, end in zip(starts, [*cuts, len(text)], strict=True))


def _walk(node: Any, path: tuple[str, ...]) -> Any:
    for segment in path:
        if isinstance(node, list) and _ARRAY_INDEX.fullmatch(segment) and int(segment) < len(node):
            node = node[int(segment)]
        elif isinstance(node, dict) and segment in node:
            node = node[segment]
        else:
            return None
    return node


def _json_text(value: Any) -> str | None:
    """Strings as they are, numbers already in plain decimal text; anything else is no ID."""
    if isinstance(value, str) and value != "":
        return value
    return None
