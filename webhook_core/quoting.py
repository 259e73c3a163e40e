"""Quoting for DuckDB SQL: the only way text from a file or the user reaches a statement.

``tests/test_sql_safety.py`` checks the package for it: every f-string that builds SQL quotes what it
splices in with :func:`quote_literal` or :func:`quote_identifier`, or binds it as a parameter.
"""

from __future__ import annotations

__all__ = ["quote_identifier", "quote_literal"]


def quote_literal(text: str) -> str:
    """``text`` as a DuckDB string constant, whatever it holds.

    Text from a file or the user reaches SQL only through this function, :func:`quote_identifier` or
    a bound parameter (``tests/test_sql_safety.py`` checks the package for it). In a ``'…'`` literal
    DuckDB reads a backslash as itself and ``''`` as a quote; a NUL byte it reads as a character too,
    but a parser that stops at one would cut the statement short, so a NUL is written ``chr(0)``
    (then the constant is an expression, which DuckDB folds).
    """
    if "\x00" in text:
        return "(" + " || chr(0) || ".join(quote_literal(part) for part in text.split("\x00")) + ")"
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """``name`` as a DuckDB identifier (a column, a struct field), whatever it holds."""
    return '"' + name.replace('"', '""') + '"'
