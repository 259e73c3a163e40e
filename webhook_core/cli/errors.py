"""The CLI's one rule for errors: a user's mistake is one line on stderr and exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import duckdb

from webhook_core.exceptions import WebhookAuditError

__all__ = ["user_errors"]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's errors, DuckDB's and the OS's into ``click.ClickException`` (no traceback)."""
    try:
        yield
    except WebhookAuditError as exc:
        raise click.ClickException(str(exc)) from exc
    except duckdb.OutOfMemoryException as exc:
        raise click.ClickException(
            "DuckDB ran out of memory; raise --memory-limit or give --temp-dir on a disk with room") from exc
    except duckdb.Error as exc:  # e.g. a --database that is not a DuckDB file, a bad --memory-limit
        raise click.ClickException(f"DuckDB: {str(exc).splitlines()[0]}") from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")) from exc
