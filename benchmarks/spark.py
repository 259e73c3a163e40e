"""The replay on Spark beside the replay on DuckDB (issue 24, Stage 8), side by side in one run, through the CLI.

    python -m benchmarks.spark [--leads 1000000 --leads 10000000] [--master 'local[1]' --master 'local[2]']
        [--rounds 1] [--driver-memory 8g] [--workdir DIR] [--json FILE] [--code PATH]

For each ``--leads`` N, the dataset of ``benchmarks.replay`` (``benchmarks/generate.py``: N leads and N
callbacks, reused when present) is replayed by

- ``webhook-audit replay DATASET --out DIR`` (DuckDB, both cores), and
- ``webhook-audit replay DATASET --engine spark --spark-master MASTER --out DIR`` for each ``--master``,

once a round, ``--rounds`` rounds, every second one in reverse order (``harness.side_by_side``). Each run
is a subprocess (``harness.measure``): wall and CPU time, and, sampled from ``/proc`` every 0.2 s, the
peak of the whole process tree's summed RSS and of each part of it: the driver (``cli``: the command's
own Python process, which loads with DuckDB and writes ``--out``), Spark's JVM (driver and, in local
mode, executor), and the PySpark Python workers (``python workers``: DuckDB extracting the keys in the
tasks). Spark's heap is ``--driver-memory`` (``PYSPARK_SUBMIT_ARGS``; local mode has no other executor).

A run's outputs are compared with DuckDB's by their row counts here (tests/test_spark.py compares them row
for row). Figures go to docs/benchmarks.md by hand, with the command line and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    Measurement,
    MeasurementFailed,
    machine,
    measure,
    print_table,
    process_role,
    side_by_side,
    source_fingerprint,
)
from benchmarks.replay import prepare_dataset

CLI = (sys.executable, "-m", "webhook_core.cli")
ROLES = ("cli", "jvm", "python workers")


@dataclass
class Engine:
    """One way of replaying: ``duckdb``, or Spark on a master."""

    master: str | None
    runs: dict[tuple[int, int], Measurement] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "duckdb" if self.master is None else f"spark {self.master}"

    def args(self, dataset: Path, out: Path) -> list[str]:
        spark = [] if self.master is None else ["--engine", "spark", "--spark-master", self.master]
        return ["replay", str(dataset), *spark, "--out", str(out)]

    def best(self, leads: int) -> Measurement | None:
        runs = [m for (n, _), m in self.runs.items() if n == leads]
        return min(runs, key=lambda m: m.wall_s) if runs else None


def row_counts(out: Path) -> tuple[int, int]:
    """Rows of the two outcome files ``replay --out`` wrote, read in a subprocess (the measuring process stays
    small: ``harness.measure``)."""
    code = ("import duckdb, sys; print(*(duckdb.sql(f\"SELECT count(*) FROM '{sys.argv[1]}/{name}.parquet'\")"
            ".fetchall()[0][0] for name in ('callback_outcomes', 'lead_outcomes')))")
    found = measure([sys.executable, "-c", code, str(out)], cwd=REPO).output.split()
    return int(found[-2]), int(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, action="append", default=[], help="leads (and callbacks); repeatable")
    parser.add_argument("--master", action="append", default=[], help="a Spark master; repeatable")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--driver-memory", default="8g", help="Spark's heap in local mode (spark.driver.memory)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/webhook-audit-spark-bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--code", type=Path, default=REPO, metavar="PATH", help="the checkout to measure")
    options = parser.parse_args()
    sizes = options.leads or [1_000_000]
    engines = [Engine(None), *(Engine(master) for master in options.master or ["local[1]", "local[2]"])]
    code = options.code.resolve()
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"--driver-memory {options.driver_memory} pyspark-shell",
           **({} if code == REPO else {"PYTHONPATH": str(code)})}
    work = options.workdir.resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    datasets: dict[int, tuple[Path, dict[str, Any]]] = {}
    for leads in sizes:
        print(f"dataset of {leads:,} leads …", flush=True)
        datasets[leads] = prepare_dataset(work, leads)

    counts: dict[tuple[int, str], tuple[int, int]] = {}
    for leads in sizes:
        dataset = datasets[leads][0]
        for number, engine in side_by_side(engines, options.rounds):
            if leads in engine.errors:
                continue
            # (no brackets: a path with "[" is a glob pattern to DuckDB's readers)
            slug = f"{engine.name.replace(' ', '-').replace('[', '').replace(']', '')}-{leads}"
            out = work / "out" / slug
            shutil.rmtree(out, ignore_errors=True)
            args = engine.args(dataset, out)
            print(f"{leads:,} leads, round {number}: webhook-audit {' '.join(args)} …", flush=True)
            try:
                engine.runs[leads, number] = measure([*CLI, *args], cwd=code, env=env, roles=process_role,
                                                     log=logs / f"{slug}-r{number}.log")
                counts[leads, engine.name] = row_counts(out)
            except MeasurementFailed as exc:
                engine.errors[leads] = str(exc)
                print(f"FAILED: {exc}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    report(options, sizes, datasets, engines, counts)


def report(options: argparse.Namespace, sizes: list[int], datasets: dict[int, tuple[Path, dict[str, Any]]],
           engines: list[Engine], counts: dict[tuple[int, str], tuple[int, int]]) -> None:
    where = machine()
    print(f"\n{where['nproc']} cores, {where['ram_gib']} GiB; {options.rounds} round(s); "
          f"Spark heap (--driver-memory) {options.driver_memory}")
    rounds = range(1, options.rounds + 1)
    rows = []
    for leads in sizes:
        baseline = engines[0].best(leads)
        for engine in engines:
            best = engine.best(leads)
            walls = [f"{engine.runs[leads, n].wall_s:.1f}" if (leads, n) in engine.runs else "-" for n in rounds]
            if best is None:
                rows.append((f"{leads:,}", engine.name, *walls, "-", "-", "-", *("-" for _ in ROLES), "FAILED"))
                continue
            ratio = f"{best.wall_s / baseline.wall_s:.2f}×" if baseline is not None else "-"
            same = counts.get((leads, engine.name)) == counts.get((leads, engines[0].name))
            rows.append((f"{leads:,}", engine.name, *walls, f"{sum(best.role_cpu_s.values()):.1f}", ratio,
                         f"{best.tree_peak_rss_mib or 0:,.0f}",
                         *(f"{best.role_peak_rss_mib.get(role, 0):,.0f}" for role in ROLES),
                         "" if same else "ROWS DIFFER"))
    print_table(("leads", "engine", *(f"r{n} wall s" for n in rounds), "tree CPU s", "wall ÷ duckdb", "tree peak MiB",
                 *(f"{role} MiB" for role in ROLES), ""), rows)
    for engine in engines:
        for leads, error in engine.errors.items():
            print(f"\n{engine.name} at {leads:,} leads failed:\n{error}")
    if options.json:
        document = {
            "machine": where, "rounds": options.rounds, "driver_memory": options.driver_memory,
            "code": source_fingerprint() if options.code.resolve() == REPO else str(options.code.resolve()),
            "datasets": {str(leads): info for leads, (_, info) in datasets.items()},
            "runs": [{"leads": leads, "engine": engine.name, "round": number, "rows": counts.get((leads, engine.name)),
                      **m.figures()} for engine in engines for (leads, number), m in engine.runs.items()],
            "errors": {engine.name: engine.errors for engine in engines if engine.errors},
        }
        options.json.write_text(json.dumps(document, indent=2))
    if any(engine.errors for engine in engines):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
