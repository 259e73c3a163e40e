"""The audit database's targets (issue 21, Stage 5), side by side in one run, through the CLI only.

    python -m benchmarks.audit_database --leads 2000000 [--small 3000] [--seed 1] [--rounds 2] [--workdir DIR]
        [--json FILE] [--skip-report] [--memory-limit SIZE] [--code PATH]

Generates the dataset(s) with ``webhook-audit generate DIR --leads N --seed S`` (reused when
present), then runs every command once a round as a subprocess (``benchmarks.harness.measure``:
wall time, CPU time, peak RSS), ``--rounds`` rounds, every second one in reverse order
(``side_by_side``), and prints each target with its ratio and pass or fail. A ratio compares the
fastest run of each command; every round's time is in the table.

- (t1) ``replay DATASET --database FILE`` ≤ 1.2 × ``replay DATASET --out DIR``. The database file is
  deleted before each run, so every round writes it afresh. While ``replay`` still requires ``--out``,
  the database run writes ``--out DIR2`` too, and the table says so.
- (t2) ``summary``, ``wait-times``, ``timeouts``, ``pairing`` and ``timeline LEAD`` (a lead with
  callbacks, read from the database) on the audit database, each ≤ 0.3 × ``replay --out``.
  Beside them, ``pairing floor`` (``benchmarks.pairing_floor``): discovery's necessary work alone,
  every value of every callback read and counted.
- (t3) ``report`` on the audit database ≤ 2.5 × ``report`` on a ``--small``-lead one (its database
  written once, before the rounds, by ``replay --database``); ``--skip-report`` leaves both out.

``--memory-limit`` is passed to every ``replay`` and ``report`` (the budget of the replay and of
each notebook). ``--code PATH`` measures another checkout (e.g.
``git archive HEAD | tar -x -C PATH`` while this one is being edited): it is put first on
``PYTHONPATH`` and is the commands' working folder. Each command's output is kept in ``WORKDIR/logs``.
A command that fails is reported with the tail of its output, the others still run, and the exit
code is 1. Figures go to docs/benchmarks.md by hand, with the command line and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
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

CLI = (sys.executable, "-m", "webhook_core.cli")

#: The analysis commands of target (t2), each measured on the audit database.
ANALYSES = ("summary", "wait-times", "timeouts", "pairing", "timeline")

#: A lead of the database with callbacks, for ``timeline``: the first by input order with at least two.
_LEAD_SQL = "SELECT lead_id FROM lead_outcomes WHERE callbacks >= 2 ORDER BY \"row\" LIMIT 1"


@dataclass
class Command:
    """One measured command: ``args`` (after ``webhook-audit``) computed when it runs, and its runs."""

    name: str
    args: Callable[[], list[str]]
    #: Run before each measurement, untimed (e.g. deleting the database a replay writes).
    prepare: Callable[[], None] = lambda: None
    #: What runs the args: the CLI, or another module (``benchmarks.pairing_floor``).
    program: tuple[str, ...] = CLI
    runs: dict[int, Measurement] = field(default_factory=dict)
    error: str | None = None
    shown: str = ""

    def best(self) -> Measurement | None:
        return min(self.runs.values(), key=lambda m: m.wall_s) if self.runs else None


def cli(args: Sequence[str], code: Path, log: Path | None = None, program: Sequence[str] = CLI) -> Measurement:
    """``webhook-audit ARGS`` (or ``program ARGS``) of checkout ``code``, measured."""
    # The checkout first, then this one (whose benchmarks package a checkout of another commit may lack).
    env = None if code == REPO else {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{REPO}"}
    return measure([*program, *args], log=log, cwd=code, env=env, roles=process_role)


def generate(dataset: Path, leads: int, seed: int, code: Path, log: Path) -> Measurement | None:
    """``webhook-audit generate`` into ``dataset`` unless it is there already."""
    if (dataset / "callbacks.jsonl").exists() and (dataset / "webhooks.json").exists():
        return None
    print(f"generate {leads:,} leads into {dataset} …", flush=True)
    return cli(["generate", str(dataset), "--leads", str(leads), "--seed", str(seed)], code, log)


def out_is_optional(code: Path) -> bool:
    """Whether ``replay DATASET --database FILE`` runs without ``--out``: click reports a missing required
    option before the command looks at the dataset, so a dataset that is not there tells."""
    try:
        cli(["replay", "/nonexistent-dataset", "--database", "/nonexistent-dataset.duckdb"], code)
    except MeasurementFailed as exc:
        return "Missing option '--out'" not in str(exc)
    return True


def lead_with_callbacks(database: Path) -> str:
    """A lead for ``timeline``, read in a subprocess: the measuring process must stay small (harness.measure)."""
    code = ("import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
            f"print(con.execute({_LEAD_SQL!r}).fetchone()[0])")
    found = measure([sys.executable, "-c", code, str(database)], cwd=REPO).output.strip().splitlines()
    if not found or found[-1] == "None":
        raise SystemExit(f"{database}: no lead with two callbacks for timeline")
    return found[-1]


def remove(*paths: Path) -> Callable[[], None]:
    def prepare() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2_000_000)
    parser.add_argument("--small", type=int, default=3_000, help="leads of the report's baseline dataset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/webhook-audit-audit-database"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--memory-limit", default=None, metavar="SIZE",
                        help="passed to every replay and report, e.g. 4GiB")
    parser.add_argument("--code", type=Path, default=REPO, metavar="PATH", help="the checkout to measure")
    options = parser.parse_args()
    code = options.code.resolve()
    if not (code / "webhook_core" / "__init__.py").is_file():
        parser.error(f"--code {options.code}: no webhook_core/ in it")
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")

    work = options.workdir.resolve()
    logs, out = work / "logs", work / "out"
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    big = work / f"generated-{options.leads}-{options.seed}"
    small = work / f"generated-{options.small}-{options.seed}"
    database, small_database = work / f"audit-{options.leads}.duckdb", work / f"audit-{options.small}.duckdb"
    limit = ["--memory-limit", options.memory_limit] if options.memory_limit else []
    setup: list[tuple[str, Measurement]] = []

    try:
        optional = out_is_optional(code)
        for dataset, leads in [(big, options.leads), *([] if options.skip_report else [(small, options.small)])]:
            generated = generate(dataset, leads, options.seed, code, logs / f"generate-{leads}.log")
            if generated is not None:
                setup.append((f"generate --leads {leads}", generated))
        if not options.skip_report:
            remove(small_database)()
            print(f"replay {small.name} --database …", flush=True)
            setup.append((f"replay --database ({options.small:,} leads, for report)",
                          cli(["replay", str(small), "--database", str(small_database),
                               *([] if optional else ["--out", str(out / "replay-small")]), *limit], code,
                              logs / "replay-small.log")))
    except MeasurementFailed as exc:
        raise SystemExit(str(exc)) from None

    lead: list[str] = []

    def timeline_args() -> list[str]:
        if not lead:
            lead.append(lead_with_callbacks(database))
        return ["timeline", str(database), lead[0]]

    # The database replay runs before the analyses in round 1 (the later rounds read the file it wrote).
    commands = [
        Command("replay --out", lambda: ["replay", str(big), "--out", str(out / "replay"), *limit],
                remove(out / "replay")),
        Command("replay --database" if optional else "replay --database (+ --out: still required)",
                lambda: ["replay", str(big), "--database", str(database),
                         *([] if optional else ["--out", str(out / "replay-db")]), *limit],
                remove(database, out / "replay-db")),
        Command("summary", lambda: ["summary", str(database), "--out", str(out / "summary.parquet")]),
        Command("wait-times", lambda: ["wait-times", str(database), "--out", str(out / "km.parquet")]),
        Command("timeouts", lambda: ["timeouts", str(database), "--out", str(out / "timeouts.parquet")]),
        Command("pairing", lambda: ["pairing", str(database), "--out", str(out / "pairing.parquet")]),
        Command("timeline", timeline_args),
        Command("pairing floor", lambda: [str(database)], program=(sys.executable, "-m", "benchmarks.pairing_floor")),
    ]
    if not options.skip_report:
        commands += [
            Command("report", lambda: ["report", str(database), "--out", str(out / "report"), *limit],
                    remove(out / "report")),
            Command(f"report ({options.small:,} leads)",
                    lambda: ["report", str(small_database), "--out", str(out / "report-small"), *limit],
                    remove(out / "report-small")),
        ]

    for number, command in side_by_side(commands, options.rounds):
        if command.error is not None:
            continue
        try:
            args = command.args()
            command.shown = ("webhook-audit" if command.program == CLI else " ".join(command.program[1:])) + " " + \
                " ".join(args)
            command.prepare()
            print(f"round {number}: {command.shown} …", flush=True)
            slug = re.sub(r"[^a-z0-9]+", "-", command.name.split(":")[0]).strip("-")
            command.runs[number] = cli(args, code, logs / f"{slug}-r{number}.log", command.program)
        except MeasurementFailed as exc:
            command.error = str(exc)
            print(f"FAILED: {exc}", flush=True)

    report(options, big, setup, commands)


def ratio_row(name: str, measured: Command, baseline: Command, limit: float) -> tuple[str, str, str, str, str, str]:
    """The target on wall time; the CPU time ratio beside it says how much of a difference a busy machine made."""
    m, b = measured.best(), baseline.best()
    if m is None or b is None:
        return name, "-", "-", "-", f"≤ {limit:g}×", "not measured"
    ratio = m.wall_s / b.wall_s
    return (name, f"{m.wall_s:.1f} s / {b.wall_s:.1f} s", f"{ratio:.2f}×", f"{m.cpu_s / b.cpu_s:.2f}×",
            f"≤ {limit:g}×", "pass" if ratio <= limit else "FAIL")


def report(options: argparse.Namespace, big: Path, setup: Sequence[tuple[str, Measurement]],
           commands: Sequence[Command]) -> None:
    size = sum(p.stat().st_size for p in big.iterdir()) / 2**20
    where = machine()
    print(f"\n{options.leads:,} leads (seed {options.seed}), dataset {size:,.0f} MiB; {where['nproc']} cores, "
          f"{where['ram_gib']} GiB; {options.rounds} round(s); memory limit {options.memory_limit or 'none'}")
    if setup:
        print("\nsetup (once):")
        print_table(("command", "wall s", "CPU s", "peak RSS MiB", "load"),
                    [(name, f"{m.wall_s:.1f}", f"{m.cpu_s:.1f}", f"{m.peak_rss_mib:,.0f}", f"{m.loadavg_after:.2f}")
                     for name, m in setup])
    print()
    rounds = range(1, options.rounds + 1)
    rows = []
    for command in commands:
        best = command.best()
        walls = [f"{command.runs[n].wall_s:.1f}" if n in command.runs else "-" for n in rounds]
        rows.append((command.name, *walls, f"{best.cpu_s:.1f}" if best else "-",
                     f"{max(m.peak_rss_mib for m in command.runs.values()):,.0f}" if best else "-",
                     f"{max(m.tree_peak_rss_mib or 0 for m in command.runs.values()):,.0f}" if best else "-",
                     f"{max(m.loadavg_after for m in command.runs.values()):.2f}" if best else "-",
                     "FAILED" if command.error else ""))
    print_table(("command", *(f"r{n} wall s" for n in rounds), "CPU s (fastest)", "peak RSS MiB", "tree peak MiB",
                 "load max", ""),
                rows)
    parent = max((m.parent_peak_rss_mib for c in commands for m in c.runs.values()), default=0.0)
    print(f"(the measuring process's own peak RSS: {parent:,.0f} MiB; a child's cannot read below it)")

    by_name = {command.name: command for command in commands}
    replay_out, replay_db = commands[0], commands[1]
    targets = [ratio_row(f"(t1) {replay_db.name} / replay --out", replay_db, replay_out, 1.2)]
    targets += [ratio_row(f"(t2) {name} on the database / replay --out", by_name[name], replay_out, 0.3)
                for name in ANALYSES]
    targets.append(ratio_row("     pairing's floor: every value read, alone", by_name["pairing floor"], replay_out,
                             0.3))
    if not options.skip_report:
        targets.append(ratio_row(f"(t3) report {options.leads:,} / {options.small:,} leads", by_name["report"],
                                 commands[-1], 2.5))
    print()
    print_table(("target", "fastest runs", "ratio", "CPU ratio", "target", "result"), targets)
    failed = [c for c in commands if c.error]
    for command in failed:
        print(f"\n{command.name} failed:\n{command.error}")
    print("\ncommands:")
    for command in commands:
        print(f"  {command.name}: {command.shown}")

    if options.json:
        document: dict[str, Any] = {
            "leads": options.leads, "small": options.small, "seed": options.seed, "rounds": options.rounds,
            "memory_limit": options.memory_limit, "dataset_mib": size, "machine": where,
            "code": source_fingerprint() if options.code.resolve() == REPO else str(options.code.resolve()),
            "setup": [{"command": name, **m.figures()} for name, m in setup],
            "commands": [{"name": c.name, "command": c.shown, "error": c.error,
                          "runs": {str(n): m.figures() for n, m in c.runs.items()}} for c in commands],
            "targets": [dict(zip(("target", "fastest_runs", "ratio", "cpu_ratio", "limit", "result"), row, strict=True))
                        for row in targets],
        }
        options.json.write_text(json.dumps(document, indent=2))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
