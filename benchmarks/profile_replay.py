"""Where the time of ``webhook-audit replay`` goes: the CLI's steps, one SQL statement at a time.

``python benchmarks/profile_replay.py DATASET --out DIR [--memory-limit 4GB --temp-dir DIR] [--json FILE]``

Runs what ``webhook-audit replay`` runs (load, replay, export; the same library
calls) on a connection wrapper that splits every ``execute`` into its statements
and times each one. Nothing in ``webhook_core`` is changed: the phases are found
by wrapping the loader's functions in this process only.

Phases: ``load: webhooks``, ``load: dispatches`` (CSV → staging, then checks),
``load: callbacks`` (JSONL: Python line splitting + staging + per-chunk judging),
``replay``, ``export``. Time in a phase outside any SQL statement (Python line
splitting, Arrow conversion, registering chunks) is shown as ``(python)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import duckdb

from webhook_core import cli, loading
from webhook_core.loading import connect

# ``webhook_core.replay`` the attribute is the function; the module is in sys.modules.
replay_module = importlib.import_module("webhook_core.replay")


class TimedConnection:
    """Forwards to a DuckDB connection; times every statement of every ``execute``."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.phase = "setup"
        self.statements: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.phase_totals: dict[str, float] = defaultdict(float)

    def execute(self, query, parameters=None):  # type: ignore[no-untyped-def]
        if parameters is not None or not isinstance(query, str):
            return self._timed(_label(str(query)), lambda: self._con.execute(query, parameters))
        result = None
        for statement in self._con.extract_statements(query):
            result = self._timed(_label(statement.query), lambda s=statement: self._con.execute(s))
        return result

    def _timed(self, label, run):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        result = run()
        self.statements[(self.phase, label)].append(time.perf_counter() - start)
        return result

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._con, name)


def _label(sql: str) -> str:
    text = " ".join(re.sub(r"--[^\n]*", "", sql).split())
    match = re.match(r"((?:CREATE (?:OR REPLACE )?(?:TEMP )?(?:TABLE|MACRO) \S+)|(?:INSERT INTO \S+)|"
                     r"(?:DELETE FROM \S+)|(?:DROP TABLE (?:IF EXISTS )?\S+)|(?:COPY \(SELECT .{0,40})|"
                     r"(?:SET \S+)|(?:SELECT .{0,50}))", text)
    return (match.group(1) if match else text[:60]).rstrip(";")


def _phase(timed: TimedConnection, name: str, function):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        previous, timed.phase = timed.phase, name
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timed.phase_totals[name] += time.perf_counter() - start
            timed.phase = previous
    return wrapper


def profile(dataset: Path, out: Path, memory_limit: str | None, temp_dir: str | None) -> dict:
    wall = time.perf_counter()
    timed = TimedConnection(connect(memory_limit=memory_limit, temp_directory=temp_dir))
    loading.write_webhook_versions = _phase(timed, "load: webhooks", loading.write_webhook_versions)
    loading._load_dispatches = _phase(timed, "load: dispatches", loading._load_dispatches)
    loading._load_callbacks = _phase(timed, "load: callbacks", loading._load_callbacks)
    loaded = _phase(timed, "load: other", loading.load_dataset)(timed, dataset)
    result = _phase(timed, "replay", replay_module.replay)(timed, loaded.webhooks)
    out.mkdir(parents=True, exist_ok=True)
    export = _phase(timed, "export", cli._export)
    export(timed, f"SELECT {', '.join(replay_module.CALLBACK_COLUMNS)} FROM callback_outcomes ORDER BY ord",
           out / "callback_outcomes.parquet", "parquet")
    export(timed, f"SELECT {', '.join(replay_module.LEAD_COLUMNS)} FROM lead_outcomes ORDER BY \"row\"",
           out / "lead_outcomes.parquet", "parquet")
    export(timed, "SELECT * FROM quarantine ORDER BY source_file, line", out / "quarantine.parquet", "parquet")
    _phase(timed, "report", result.outcome_counts)()
    wall = time.perf_counter() - wall
    # "load: other" wraps the nested phases: keep only its own part.
    nested = sum(v for k, v in timed.phase_totals.items() if k.startswith("load: ") and k != "load: other")
    timed.phase_totals["load: other"] -= nested
    phases = []
    for name, total in timed.phase_totals.items():
        rows = sorted(((label, sum(t), len(t)) for (p, label), t in timed.statements.items() if p == name),
                      key=lambda r: -r[1])
        in_sql = sum(r[1] for r in rows)
        phases.append({
            "phase": name, "seconds": total,
            "statements": [{"sql": label, "seconds": s, "calls": c} for label, s, c in rows],
            "python_seconds": max(total - in_sql, 0.0),
        })
    return {"wall_s": wall, "phases": phases}


def print_profile(figures: dict, *, top: int = 8, file=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    wall = figures["wall_s"]
    print(f"replay, phase by phase (in-process, total {wall:.1f} s):", file=file)
    for phase in figures["phases"]:
        print(f"  {phase['phase']:<18} {phase['seconds']:8.1f} s  {100 * phase['seconds'] / wall:5.1f} %", file=file)
        for row in phase["statements"][:top]:
            if row["seconds"] >= 0.05 * phase["seconds"] and row["seconds"] >= 0.1:
                calls = f" ×{row['calls']}" if row["calls"] > 1 else ""
                print(f"      {row['seconds']:8.1f} s  {row['sql']}{calls}", file=file)
        if phase["python_seconds"] >= 0.1:
            print(f"      {phase['python_seconds']:8.1f} s  (python: line splitting, Arrow, register)", file=file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--memory-limit", default=None)
    parser.add_argument("--temp-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures = profile(args.dataset, args.out, args.memory_limit, args.temp_dir)
    print_profile(figures, top=20)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
