"""The extraction rules of docs/semantics.md as DuckDB SQL.

``webhook_core.rules.extraction`` is the same in Python; the property test holds the
two to each other. Parsing text has no standard SQL form, so this module uses
DuckDB's list lambdas and JSON functions; the matching in ``audit/replay.py`` is
plain joins and window functions.
"""

from __future__ import annotations

import duckdb

from webhook_core.quoting import quote_literal
from webhook_core.rules.locations import Location, LocationKind

__all__ = ["install_macros", "json_pointer", "location_sql", "pair_sql", "standard_sql"]

_MACROS = r"""
-- Percent-decode as UTF-8; text that does not decode is kept as written.
CREATE OR REPLACE MACRO wa_pct_decode(s) AS
    CASE WHEN strpos(s, '%') = 0 THEN s ELSE coalesce(try(url_decode(s)), s) END;

-- "a=1&b=&c" -> [{k:'a', v:'1'}, {k:'b', v:''}, {k:'c', v:''}], '+' meaning a space.
CREATE OR REPLACE MACRO wa_parse_pairs(s) AS
    list_transform(
        list_filter(string_split(coalesce(s, ''), '&'), lambda p: p <> ''),
        lambda p: {
            'k': wa_pct_decode(replace(CASE WHEN strpos(p, '=') > 0 THEN p[:strpos(p, '=') - 1] ELSE p END, '+', ' ')),
            'v': wa_pct_decode(replace(CASE WHEN strpos(p, '=') > 0 THEN p[strpos(p, '=') + 1:] ELSE '' END, '+', ' '))
        });

-- First non-empty value of a name in parsed pairs.
CREATE OR REPLACE MACRO wa_pair(pairs, name) AS
    list_filter(pairs, lambda x: x.k = name AND x.v <> '')[1].v;

-- ASCII-only lower case: the same in every engine and in Python, whatever the locale.
-- (On pure-ASCII text lower() is the same and far cheaper than translate().)
CREATE OR REPLACE MACRO wa_ascii_lower(s) AS
    CASE WHEN strlen(s) = length(s) THEN lower(s)
         ELSE translate(s, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') END;

-- Captured headers (JSON, or its text: an object, or a list of [name, value] pairs or of {name, value}
-- objects) as a list of {name, value} in captured order; entries without a name are dropped.
CREATE OR REPLACE MACRO wa_headers(h) AS coalesce(list_filter(
    CASE json_type(h)
        WHEN 'OBJECT' THEN list_transform(json_keys(h), lambda k: {
            'name': k,
            'value': coalesce(json_extract_string(h, '/' || replace(replace(k, '~', '~0'), '/', '~1')), '')})
        WHEN 'ARRAY' THEN list_transform(CAST(CAST(h AS JSON) AS JSON[]), lambda x:
            CASE json_type(x)
                WHEN 'ARRAY' THEN {'name': json_extract_string(x, '$[0]'),
                                   'value': coalesce(json_extract_string(x, '$[1]'), '')}
                WHEN 'OBJECT' THEN {'name': json_extract_string(x, '$.name'),
                                    'value': coalesce(json_extract_string(x, '$.value'), '')}
            END)
    END, lambda e: e IS NOT NULL AND e.name IS NOT NULL), []);

-- First non-empty value of a header, name compared ignoring ASCII case.
CREATE OR REPLACE MACRO wa_header(headers, name) AS
    list_filter(headers, lambda h: wa_ascii_lower(h.name) = wa_ascii_lower(name) AND h.value <> '')[1].value;

-- wa_header over captured headers (JSON, as wa_headers reads them): an object's keys are
-- matched first, and only a matching key's value is read, instead of building the whole list.
CREATE OR REPLACE MACRO wa_captured_header(h, name) AS
    CASE json_type(h)
        WHEN 'OBJECT' THEN list_filter(
            list_transform(list_filter(json_keys(h), lambda k: wa_ascii_lower(k) = wa_ascii_lower(name)),
                           lambda k: json_extract_string(h, '/' || replace(replace(k, '~', '~0'), '/', '~1'))),
            lambda v: v <> '')[1]
        ELSE wa_header(wa_headers(h), name)
    END;

-- A JSON value as identifier text, from its JSON type and its text (json_type and
-- json_extract_string of it): strings as they are, numbers in plain decimal, anything else
-- (objects, arrays, booleans, null, fractions, non-finite) NULL.
CREATE OR REPLACE MACRO wa_json_text_of(kind, text) AS
    CASE kind
        WHEN 'VARCHAR' THEN nullif(text, '')
        WHEN 'BIGINT' THEN text
        WHEN 'UBIGINT' THEN text
        WHEN 'DOUBLE' THEN
            CASE
                WHEN regexp_full_match(text, '-?(0|[1-9][0-9]*)') THEN text
                WHEN isfinite(try_cast(text AS DOUBLE))
                     AND try_cast(text AS DOUBLE) = trunc(try_cast(text AS DOUBLE))
                     AND abs(try_cast(text AS DOUBLE)) < 9007199254740992
                    THEN CAST(CAST(try_cast(text AS DOUBLE) AS BIGINT) AS VARCHAR)
            END
    END;

-- wa_json_text_of a JSON value.
CREATE OR REPLACE MACRO wa_json_text(j) AS wa_json_text_of(json_type(j), json_extract_string(j, '$'));

-- An ISO 8601 timestamp (an offset honoured, naive = session zone = UTC), else NULL. DuckDB's
-- cast also takes words such as 'infinity' and 'epoch': only a date-first text counts (and a
-- date-first text is never infinite).
CREATE OR REPLACE MACRO wa_timestamp(t) AS
    CASE WHEN regexp_full_match(t, '\s*[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ].*)?') THEN try_cast(t AS TIMESTAMPTZ) END;

-- An absolute URL without query and fragment, from just after the first '://'.
CREATE OR REPLACE MACRO wa_after_scheme(u) AS
    split_part(split_part(u, '#', 1), '?', 1)[strpos(split_part(split_part(u, '#', 1), '?', 1), '://') + 3:];

-- The URL's path: scheme and authority removed from an absolute URL, query and fragment dropped.
CREATE OR REPLACE MACRO wa_url_path(u) AS
    CASE
        WHEN regexp_matches(split_part(split_part(u, '#', 1), '?', 1), '^[A-Za-z][A-Za-z0-9+.\-]*://')
        THEN CASE
            WHEN strpos(wa_after_scheme(u), '/') = 0 THEN ''
            ELSE wa_after_scheme(u)[strpos(wa_after_scheme(u), '/'):]
        END
        ELSE split_part(split_part(u, '#', 1), '?', 1)
    END;

-- The token: the last non-empty path segment, percent-decoded.
CREATE OR REPLACE MACRO wa_token(u) AS
    wa_pct_decode(list_filter(string_split(wa_url_path(u), '/'), lambda s: s <> '')[-1]);

-- wa_token of a URL already cut before its query and fragment (b), given b's text after its last
-- '/' (last). Nearly every URL ends in a plain segment after a '/' that is the path's (a '/' after
-- the first '://' is past any authority): that segment is the token, read without splitting the path.
CREATE OR REPLACE MACRO wa_base_token_of(b, last) AS
    CASE WHEN last <> '' AND strpos(last, '%') = 0
              AND (strpos(b, '://') = 0 OR length(b) - length(last) >= strpos(b, '://') + 3)
         THEN last
         ELSE wa_token(b) END;

CREATE OR REPLACE MACRO wa_base_token(b) AS wa_base_token_of(b, split_part(b, '/', -1));

-- The query string (after the first '?', fragment dropped). (substr: a slice [i:] costs four times as much.)
CREATE OR REPLACE MACRO wa_query(u) AS
    CASE WHEN strpos(split_part(u, '#', 1), '?') > 0
         THEN substr(split_part(u, '#', 1), strpos(split_part(u, '#', 1), '?') + 1)
         ELSE '' END;
"""


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_MACROS)


def json_pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + segment.replace("~", "~0").replace("/", "~1") for segment in path)


def location_sql(location: Location, json_slots: dict[str, int]) -> str:
    """SQL reading ``location`` from a row of the replay's parsed callbacks (NULL when absent or empty).

    The row has ``query`` / ``query_plain``, ``body`` / ``body_kind`` / ``form_plain``,
    ``headers`` (as captured, JSON) and ``json_kinds`` / ``json_texts`` (see ``keys.py``): the JSON type and
    text of every JSON value any location reads, at the 1-based position ``json_slots`` gives its
    JSON pointer.
    """
    if location.kind is LocationKind.QUERY:
        return pair_sql("query", "query_plain", location.name)
    if location.kind is LocationKind.FORM:
        return f"CASE WHEN body_kind = 'form' THEN {pair_sql('body', 'form_plain', location.name)} END"
    if location.kind is LocationKind.HEADER:
        return f"wa_captured_header(headers, {quote_literal(location.name)})"
    return _json_sql(json_pointer(location.path), json_slots)


def standard_sql(name: str, json_slots: dict[str, int]) -> str:
    """A standard name: query string, then form body, then a top-level JSON key."""
    return (f"coalesce({pair_sql('query', 'query_plain', name)}, "
            f"CASE WHEN body_kind = 'form' THEN {pair_sql('body', 'form_plain', name)} END, "
            f"{_json_sql(json_pointer((name,)), json_slots)})")


def pair_sql(text: str, plain: str, name: str) -> str:
    """First non-empty value of ``name`` in the urlencoded column ``text`` (rules L2, L3).

    When the boolean column ``plain`` says ``text`` has no ``%`` and no ``+`` there is
    nothing to decode, and one regular expression finds the first ``name=value`` pair
    with a value; otherwise the text is split into decoded pairs (``wa_parse_pairs``).
    """
    parsed = f"wa_pair(wa_parse_pairs({text}), {quote_literal(name)})"
    if any(character in name for character in "&=%+"):
        # Such a key exists only percent-encoded (a '+' decodes to a space), never in plain text.
        plain_value = "NULL"
    else:
        pattern = "(?:^|&)" + _regex_literal(name) + "=([^&]+)"
        # A substring search first: most texts do not name most keys, and it is far cheaper. Then
        # the value of the first pair that names it, cut out without a regular expression; only
        # when that is empty (no such pair, or an empty value first) may a later pair have one.
        key = quote_literal(name + "=")
        found = f"nullif(regexp_extract({text}, {quote_literal(pattern)}, 1), '')"
        if name.isascii():  # (then the offset is the same in characters and bytes)
            first = (f"CASE WHEN starts_with({text}, {key}) THEN split_part(substr({text}, {len(name) + 2}), '&', 1) "
                     f"ELSE split_part(split_part({text}, {quote_literal('&' + name + '=')}, 2), '&', 1) END")
            found = f"coalesce(nullif({first}, ''), {found})"
        plain_value = f"CASE WHEN contains({text}, {key}) THEN {found} END"
    return f"CASE WHEN {plain} THEN {plain_value} ELSE {parsed} END"


def _regex_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching itself (RE2 takes any escaped ASCII punctuation)."""
    return "".join("\\" + c if c.isascii() and not (c.isalnum() or c == "_") else c for c in text)


def _json_sql(pointer: str, json_slots: dict[str, int]) -> str:
    return f"wa_json_text_of(json_kinds[{json_slots[pointer]}], json_texts[{json_slots[pointer]}])"
