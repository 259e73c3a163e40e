"""Where the time of ``webhook-audit replay`` goes: the CLI's steps, one SQL statement at a time.

``python -m benchmarks.profile_replay DATASET --out DIR [--memory-limit 4GiB --temp-dir DIR] [--memory] [--json FILE]``

Runs what ``webhook-audit replay`` runs (load, replay, export; the same library
calls) on a connection wrapper that splits every ``execute`` into its statements
and times each one. Nothing in ``webhook_core`` is changed: the phases are found
by wrapping the loader's functions in this process only.

Phases: ``load: webhooks``, ``load: dispatches`` (CSV → staging, then checks),
``load: callbacks`` (JSONL: Python line splitting + staging + per-chunk judging),
``replay``, ``export``. Time in a phase outside any SQL statement (Python line
splitting, Arrow conversion, registering chunks) is shown as ``(python)``.

``--memory`` also samples ``duckdb_memory()`` from a second cursor every 0.2 s and reports, per
statement, the peak of DuckDB's memory (and what held it: tables, hash tables, sorts) and of what
it had spilled to the temp directory: where a memory limit costs time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from webhook_core.audit import replay as replay_module
from webhook_core.cli import output
from webhook_core.load import dataset as loading
from webhook_core.load.dataset import connect


class TimedConnection:
    """Forwards to a DuckDB connection; times every statement of every ``execute``."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.phase = "setup"
        self.current = "setup"  # "phase: statement", for the memory sampler
        # (phase, statement label) -> [(wall s, CPU s of this process, all threads)]
        self.statements: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        self.phase_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def execute(self, query, parameters=None):  # type: ignore[no-untyped-def]
        if parameters is not None or not isinstance(query, str):
            return self._timed(_label(str(query)), lambda: self._con.execute(query, parameters))
        result = None
        for statement in self._con.extract_statements(query):
            result = self._timed(_label(statement.query), lambda s=statement: self._con.execute(s))
        return result

    def _timed(self, label, run):  # type: ignore[no-untyped-def]
        self.current = f"{self.phase}: {label}"
        start, cpu = time.perf_counter(), time.process_time()
        result = run()
        self.statements[(self.phase, label)].append((time.perf_counter() - start, time.process_time() - cpu))
        return result

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._con, name)


class MemorySampler:
    """Samples ``duckdb_memory()`` on its own cursor while ``timed`` runs statements."""

    def __init__(self, timed: TimedConnection, interval: float = 0.2) -> None:
        self._timed = timed
        self._cursor = timed.cursor()
        self._interval = interval
        self._stop = threading.Event()
        # statement -> (peak MiB, peak spilled MiB, {tag: MiB} at the peak)
        self.peaks: dict[str, tuple[int, int, dict[str, int]]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            rows = self._cursor.execute(
                "SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory()").fetchall()
            used, spilled = sum(r[1] for r in rows) >> 20, sum(r[2] for r in rows) >> 20
            peak_used, peak_spilled, held = self.peaks.get(self._timed.current, (0, 0, {}))
            if used > peak_used:
                peak_used, held = used, {tag: b >> 20 for tag, b, _ in rows if b >> 20 >= 50}
            self.peaks[self._timed.current] = (peak_used, max(peak_spilled, spilled), held)

    def figures(self) -> list[dict[str, object]]:
        return [{"statement": name, "peak_mib": used, "spilled_mib": spilled, "held_mib": tags}
                for name, (used, spilled, tags) in self.peaks.items()]


def _label(sql: str) -> str:
    text = " ".join(re.sub(r"--[^\n]*", "", sql).split())
    match = re.match(r"((?:CREATE (?:OR REPLACE )?(?:TEMP )?(?:TABLE|MACRO) \S+)|(?:INSERT INTO \S+)|"
                     r"(?:DELETE FROM \S+)|(?:DROP TABLE (?:IF EXISTS )?\S+)|(?:COPY \(SELECT .{0,40})|"
                     r"(?:SET \S+)|(?:SELECT .{0,50}))", text)
    return (match.group(1) if match else text[:60]).rstrip(";")


def _phase(timed: TimedConnection, name: str, function):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        previous, timed.phase = timed.phase, name
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            timed.phase_totals[name][0] += time.perf_counter() - start
            timed.phase_totals[name][1] += time.process_time() - cpu
            timed.phase = previous
    return wrapper


def profile(dataset: Path, out: Path, memory_limit: str | None, temp_dir: str | None,
            sample_memory: bool = False) -> dict[str, Any]:
    timed = TimedConnection(connect(memory_limit=memory_limit, temp_directory=temp_dir))
    if not sample_memory:
        return _profile(timed, dataset, out)
    with MemorySampler(timed) as sampler:
        figures = _profile(timed, dataset, out)
    return {**figures, "memory": sampler.figures()}


def _profile(timed: TimedConnection, dataset: Path, out: Path) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    loading.write_webhook_versions = _phase(timed, "load: webhooks", loading.write_webhook_versions)
    loading.load_dispatches = _phase(timed, "load: dispatches", loading.load_dispatches)
    loading.load_callbacks = _phase(timed, "load: callbacks", loading.load_callbacks)
    # As the CLI without --database: only the callbacks' keys are kept.
    loaded = _phase(timed, "load: other", loading.load_dataset)(timed, dataset, keep_requests=False)
    # As the CLI without --database: the inputs are released once the replay has read them.
    result = _phase(timed, "replay", replay_module.replay)(timed, loaded.webhooks, release_inputs=True)
    out.mkdir(parents=True, exist_ok=True)
    export = _phase(timed, "export", output.export)
    export(timed, f"SELECT {', '.join(replay_module.CALLBACK_COLUMNS)} FROM callback_outcomes "
           f"ORDER BY {replay_module.CALLBACK_ORDER}",
           out / "callback_outcomes.parquet", "parquet")
    export(timed, f"SELECT {', '.join(replay_module.LEAD_COLUMNS)} FROM lead_outcomes ORDER BY \"row\"",
           out / "lead_outcomes.parquet", "parquet")
    export(timed, "SELECT * FROM quarantine ORDER BY source_file, line", out / "quarantine.parquet", "parquet")
    _phase(timed, "report", result.outcome_counts)()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # "load: other" wraps the nested phases: keep only its own part.
    for index in (0, 1):
        timed.phase_totals["load: other"][index] -= sum(
            v[index] for k, v in timed.phase_totals.items() if k.startswith("load: ") and k != "load: other")
    phases = []
    for name, (total, total_cpu) in timed.phase_totals.items():
        rows = sorted(((label, sum(w for w, _ in t), sum(c for _, c in t), len(t))
                       for (p, label), t in timed.statements.items() if p == name), key=lambda r: -r[2])
        phases.append({
            "phase": name, "seconds": total, "cpu_seconds": total_cpu,
            "statements": [{"sql": label, "seconds": w, "cpu_seconds": c, "calls": k} for label, w, c, k in rows],
            "python_seconds": max(total - sum(r[1] for r in rows), 0.0),
            "python_cpu_seconds": max(total_cpu - sum(r[2] for r in rows), 0.0),
        })
    return {"wall_s": wall, "cpu_s": cpu, "phases": phases}


def print_profile(figures: dict[str, Any], *, top: int = 8, file=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    wall, cpu = figures["wall_s"], figures["cpu_s"]
    print(f"replay, phase by phase (in-process; wall {wall:.1f} s, CPU {cpu:.1f} s over all threads):", file=file)
    print(f"  {'':<18} {'wall s':>8} {'CPU s':>8} {'CPU %':>6}", file=file)
    for phase in figures["phases"]:
        print(f"  {phase['phase']:<18} {phase['seconds']:8.1f} {phase['cpu_seconds']:8.1f} "
              f"{100 * phase['cpu_seconds'] / cpu:6.1f}", file=file)
        for row in phase["statements"][:top]:
            if row["cpu_seconds"] >= 0.05 * phase["cpu_seconds"] and row["cpu_seconds"] >= 0.1:
                calls = f" ×{row['calls']}" if row["calls"] > 1 else ""
                print(f"      {row['seconds']:8.1f} {row['cpu_seconds']:8.1f}         {row['sql']}{calls}", file=file)
        if phase["python_cpu_seconds"] >= 0.1:
            print(f"      {phase['python_seconds']:8.1f} {phase['python_cpu_seconds']:8.1f}         "
                  "(python: line splitting, Arrow, register)", file=file)
    if "memory" in figures:
        print("DuckDB's memory, peak while each statement ran (sampled every 0.2 s; statements under one sample "
              "are missing):", file=file)
        print(f"  {'MiB':>6} {'spilled':>8}  statement; held at the peak (MiB, tags of 50 MiB or more)", file=file)
        for row in figures["memory"]:
            held = ", ".join(f"{tag} {mib}" for tag, mib in sorted(row["held_mib"].items(), key=lambda t: -t[1]))
            print(f"  {row['peak_mib']:6d} {row['spilled_mib']:8d}  {row['statement'][:70]}; {held}", file=file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--memory-limit", default=None)
    parser.add_argument("--temp-dir", default=None)
    parser.add_argument("--memory", action="store_true",
                        help="also sample DuckDB's memory and spilling per statement")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures = profile(args.dataset, args.out, args.memory_limit, args.temp_dir, sample_memory=args.memory)
    print_profile(figures, top=20)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
