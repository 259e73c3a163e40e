"""Shared fixtures: a fresh in-memory DuckDB per test and a dataset writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, settings

from webhook_core import connect

from datasets import write_dataset

# The default run replays the same 150 examples every time, so CI is repeatable; a deeper random
# search is one option away: `pytest tests/test_property.py --hypothesis-profile deep` (README).
# Registered here, not in a test module, so that option (applied after conftests load) wins.
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", settings.get_profile("ci"), max_examples=3000, derandomize=False)
settings.load_profile("ci")

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
