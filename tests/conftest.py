"""Shared fixtures: a fresh in-memory DuckDB per test and a dataset writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from webhook_core import connect

from datasets import write_dataset

DISPATCH_HEADER = "lead_id,conversion_id,advertiser_id,external_id,webhook_id,created_at"


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect()
    yield connection
    connection.close()


@pytest.fixture
def dataset(tmp_path: Path) -> Callable[..., Path]:
    """``dataset(webhooks, dispatches, callbacks)`` → a folder under tmp_path."""
    counter = iter(range(1_000_000))

    def make(webhooks: Sequence[dict[str, Any]], dispatches: Sequence[dict[str, Any]],
             callbacks: Sequence[dict[str, Any]]) -> Path:
        return write_dataset(tmp_path / f"ds{next(counter)}", webhooks, dispatches, callbacks)

    return make
