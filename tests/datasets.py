"""Writing small dataset folders for tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_dataset(folder: Path, webhooks: Sequence[dict[str, Any]], dispatches: Sequence[dict[str, Any]],
                  callbacks: Sequence[dict[str, Any]]) -> Path:
    """Write a dataset folder: webhooks.json, dispatches.jsonl, callbacks.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "webhooks.json").write_text(json.dumps(list(webhooks)), encoding="utf-8")
    with (folder / "dispatches.jsonl").open("w", encoding="utf-8") as handle:
        for row in dispatches:
            handle.write(json.dumps(row) + "\n")
    with (folder / "callbacks.jsonl").open("w", encoding="utf-8") as handle:
        for row in callbacks:
            handle.write(json.dumps(row) + "\n")
    return folder
