"""Time every analysis command (and the notebook report) end to end on one generated dataset.

    python -m benchmarks.commands [--leads 1000000] [--seed 1] [--workdir DIR] [--skip-report] [--json FILE]

Generates the dataset with ``webhook-audit generate`` (timed too, reused when present),
then runs each command once as a subprocess and reports wall time and the child's
peak RSS (``benchmarks.harness.measure``), side by side in one run. Figures go to
docs/benchmarks.md by hand, with the command line and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.harness import MeasurementFailed, measure, print_table


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``webhook-audit`` subprocess."""
    try:
        measured = measure([sys.executable, "-m", "webhook_core.cli", *args])
    except MeasurementFailed as exc:
        raise SystemExit(str(exc)) from None
    return measured.wall_s, measured.peak_rss_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/webhook-audit-commands"))
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()

    dataset = options.workdir / f"generated-{options.leads}-{options.seed}"
    out = options.workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, float]] = []
    if not (dataset / "callbacks.jsonl").exists():
        rows.append(("generate", *run(["generate", str(dataset), "--leads", str(options.leads),
                                        "--seed", str(options.seed)])))
    commands = {
        "replay": ["replay", str(dataset), "--out", str(out / "replay")],
        "summary": ["summary", str(dataset), "--out", str(out / "summary.parquet")],
        "wait-times": ["wait-times", str(dataset), "--out", str(out / "km.parquet")],
        "timeouts": ["timeouts", str(dataset), "--out", str(out / "timeouts.parquet")],
        "pairing": ["pairing", str(dataset), "--out", str(out / "pairing.parquet")],
    }
    if not options.skip_report:
        commands["report (5 notebooks)"] = ["report", str(dataset), "--out", str(out / "report")]
    for name, args in commands.items():
        print(f"{name} …", flush=True)
        rows.append((name, *run(args)))
    size = sum(p.stat().st_size for p in dataset.iterdir()) / 2**20
    print(f"\n{options.leads:,} leads (seed {options.seed}), dataset {size:,.0f} MiB; machine: {os.cpu_count()} cores")
    print_table(("command", "wall s", "peak RSS MiB"),
                [(name, f"{wall:.1f}", f"{rss:,.0f}") for name, wall, rss in rows])
    if options.json:
        options.json.write_text(json.dumps([{"command": n, "wall_s": w, "peak_rss_mib": r} for n, w, r in rows],
                                           indent=2))


if __name__ == "__main__":
    main()
