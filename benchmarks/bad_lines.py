"""Benchmark: `webhook-audit replay` on a capture with lines DuckDB's readers cannot read.

    python -m benchmarks.bad_lines DATASET [--bad 200] [--long 2] [--malformed 20] [--repeat 2]
                                   [--code NAME=PATH ...] [--workdir DIR] [--memory-limit 4GiB]

Real captures carry a few lines that are not UTF-8 (a body logged as Latin-1) or are very
long (a large body), and exports a few malformed CSV rows. The loader's parallel JSONL read
steps over such lines and reads them again by number, and the CSV read numbers its records
past the rows it rejected; before, any one of them sent the whole file to a slower reader.

1. Copies DATASET (its ``callbacks.jsonl`` must be JSONL) to ``WORKDIR/bad-lines``, with ``--bad``
   lines spread evenly through the callbacks given a byte that is not UTF-8 (Latin-1 ``é`` in a
   key), ``--long`` of them a 3 MB field instead (longer than the parallel read takes), and, in a
   ``dispatches.csv``, ``--malformed`` rows spread evenly given a seventh column.
2. Runs ``webhook-audit replay`` on the clean and the copied dataset, ``--repeat`` rounds, for each
   ``--code NAME=PATH`` (a checkout whose ``webhook_core`` is put first on ``PYTHONPATH``; default:
   this checkout), every second round in reverse order, each run its own subprocess
   (``benchmarks.harness.measure``): wall time and peak RSS.
3. Checks every run's load report: the copy must quarantine exactly the planted lines.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import (
    MeasurementFailed,
    add_checkout_option,
    checkouts,
    measure,
    print_table,
    side_by_side,
)

LONG_FIELD = b'"padding":"' + b"P" * 3_000_000 + b'",'


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))


def plant_malformed(source: Path, target: Path, malformed: int) -> int:
    """``source`` (a CSV file) with ``malformed`` data rows given a seventh column; returns how many."""
    every = max((count_lines(source) - 1) // max(malformed, 1), 1)
    planted = 0
    with source.open("rb") as handle, target.open("wb") as out:
        out.write(handle.readline())
        for number, line in enumerate(handle, 1):
            if planted < malformed and number % every == every // 2:
                line = line.rstrip(b"\r\n") + b",extra\n"
                planted += 1
            out.write(line)
    return planted


def make_copy(dataset: Path, folder: Path, bad: int, long: int, malformed: int) -> tuple[int, int, int]:
    """The dataset with bad lines planted: (callback lines, of them not UTF-8, malformed CSV rows)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    planted_rows = 0
    for path in dataset.iterdir():
        if path.name == "dispatches.csv" and malformed:
            planted_rows = plant_malformed(path, folder / path.name, malformed)
        elif path.name != "callbacks.jsonl" and path.is_file() and not path.name.startswith("."):
            shutil.copy(path, folder / path.name)
    source = dataset / "callbacks.jsonl"
    lines = count_lines(source)
    every = max(lines // max(bad, 1), 1)
    not_utf8 = 0
    with source.open("rb") as handle, (folder / "callbacks.jsonl").open("wb") as out:
        for number, line in enumerate(handle, 1):
            planted = number % every == every // 2 and (number // every) < bad
            if planted and line.startswith(b"{"):
                if (number // every) < long:
                    line = b"{" + LONG_FIELD + line[1:]
                else:
                    line = line.replace(b'"received_at"', b'"received\xe9at"', 1)
                    not_utf8 += 1
            out.write(line)
    return lines, not_utf8, planted_rows


def run(code: Path, dataset: Path, out: Path, memory_limit: str, temp_dir: Path) -> tuple[float, float, list[str]]:
    """Wall seconds, peak RSS (MiB) and the load report lines of one run."""
    environment = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, "-m", "webhook_core.cli", "replay", str(dataset), "--out", str(out),
               "--memory-limit", memory_limit, "--temp-dir", str(temp_dir)]
    try:
        # From the checkout itself: ``python -m`` puts the working directory first on the path.
        measured = measure(command, cwd=code, env=environment)
    except MeasurementFailed as exc:
        raise SystemExit(str(exc)) from None
    report = [line for line in measured.output.splitlines()
              if re.match(r"(dispatches|callbacks)\.\w+: read ", line)]
    return measured.wall_s, measured.peak_rss_mib, report


def imported_from(code: Path) -> str:
    """Where ``webhook_core`` comes from when run as :func:`run` runs it (an editable install may win)."""
    done = subprocess.run([sys.executable, "-c", "import webhook_core; print(webhook_core.__file__)"],
                          env={**os.environ, "PYTHONPATH": str(code)}, cwd=code, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--bad", type=int, default=200, help="callback lines to plant (default 200)")
    parser.add_argument("--long", type=int, default=2, help="of which this many are long, the rest not UTF-8")
    parser.add_argument("--malformed", type=int, default=20, help="malformed rows to plant in dispatches.csv")
    parser.add_argument("--repeat", type=int, default=2)
    add_checkout_option(parser)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/webhook-audit-bad-lines"))
    parser.add_argument("--memory-limit", default="4GiB")
    args = parser.parse_args()
    codes = checkouts(parser, args.code)
    # Absolute: each run's working directory is its checkout.
    clean, workdir = args.dataset.resolve(), args.workdir.resolve()
    for name, code in codes.items():
        print(f"{name}: webhook_core from {imported_from(code)}")

    copy = workdir / "bad-lines"
    started = time.perf_counter()
    lines, not_utf8, malformed = make_copy(clean, copy, args.bad, args.long, args.malformed)
    print(f"{copy}: {lines:,} callback lines, {not_utf8:,} not UTF-8, {min(args.long, args.bad)} long; "
          f"{malformed:,} malformed CSV rows (written in {time.perf_counter() - started:.1f} s)", flush=True)
    expected = [f"read {lines:,} = loaded {lines - not_utf8:,} + quarantined {not_utf8:,}"]
    if malformed:
        expected.append(f"+ quarantined {malformed:,}")

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    variants = [(name, code, label, dataset) for name, code in codes.items()
                for label, dataset in (("clean", clean), ("bad lines", copy))]
    for round_number, (name, code, label, dataset) in side_by_side(variants, args.repeat):
        wall, rss, report = run(code, dataset, workdir / "out", args.memory_limit, workdir / "spill")
        missing = [end for end in expected if not any(line.endswith(end) for line in report)]
        if label == "bad lines" and missing:
            raise SystemExit(f"{name}: load report {report!r}; expected lines ending {missing!r}")
        results.setdefault((name, label), []).append((wall, rss))
        print(f"round {round_number}  {name:<10} {label:<10} {wall:7.1f} s  {rss:7,.0f} MiB  "
              f"{'; '.join(report)}", flush=True)
    print()
    print_table(("code", "dataset", "wall s (each run)", "peak RSS MiB"),
                [(name, label, ", ".join(f"{wall:.1f}" for wall, _ in runs), f"{max(rss for _, rss in runs):,.0f}")
                 for (name, label), runs in results.items()], align="llrr")
    shutil.rmtree(workdir / "spill", ignore_errors=True)


if __name__ == "__main__":
    main()
