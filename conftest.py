"""Root pytest configuration: wire the nbval sanitize file by absolute path.

nbval resolves ``--nbval-sanitize-with`` from the current directory, so a
relative path in ``addopts`` breaks when pytest runs from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SANITIZE = Path(__file__).parent / "tests" / "nbval_sanitize.cfg"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "nbval_sanitize_with", None) is None and hasattr(config.option, "nbval_sanitize_with"):
        config.option.nbval_sanitize_with = str(SANITIZE)
