"""Benchmark: ``webhook-audit replay`` vs the online matcher vs a DuckDB floor, side by side.

    python -m benchmarks.replay [--n 1000000] [--workdir DIR] [--keep] [--skip-online]
                                [--phases] [--repeat 1] [--json FILE] [--memory-limit 4GiB]

1. Generates N leads (``dispatches.csv``) and N callbacks (``callbacks.jsonl``)
   with DuckDB (benchmarks/generate.py; reused when already there for the same N).
2. Times, each in its own subprocess (``benchmarks.harness.measure``: wall time, peak RSS):

   (a) ``webhook-audit replay DATASET --out OUT --memory-limit 4GiB --temp-dir TMP``;
   (b) the online matcher: ``load_dataset``, then every callback through ``OnlineMatcher.match``
       (``webhook_core.audit.online``), outcomes counted as they come;
   (c) a floor: DuckDB reads the same CSV and JSONL and hash-joins the callbacks'
       query-string ``pcid`` to ``dispatches.conversion_id`` (``count(*)``).

   ``--phases`` also runs benchmarks/profile_replay.py (the CLI's work, statement by statement).
3. Prints the figures against the targets (at 10M/10M: (a) ≤ 2.5 × (c),
   (a) ≥ 10 × faster than (b), peak RSS of (a) ≤ 4 GiB).

``rows/s`` is callbacks per second of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.generate import GENERATOR_VERSION
from benchmarks.harness import REPO, MeasurementFailed, machine, measure, print_table, source_fingerprint

TARGET_FLOOR_RATIO = 2.5      # (a) / (c)
TARGET_ONLINE_RATIO = 10.0    # (b) / (a)
TARGET_RSS_MIB = 4 * 1024     # (a)

ONLINE_SCRIPT = r"""
import json, sys, time
from collections import Counter
t0 = time.perf_counter()
from webhook_core import connect, load_dataset
from webhook_core.audit.online import callbacks_from_table, matcher_from_tables
dataset, temp_dir, memory_limit, out = sys.argv[1:5]
con = connect(memory_limit=memory_limit, temp_directory=temp_dir)
t1 = time.perf_counter()
loaded = load_dataset(con, dataset)
t2 = time.perf_counter()
# Outcomes are counted as they come (run_online keeps every result: ~3 GiB per million callbacks).
matcher = matcher_from_tables(con, loaded.webhooks)
counts = Counter(matcher.match(request).outcome.value for request in callbacks_from_table(con))
t3 = time.perf_counter()
with open(out, "w") as handle:
    json.dump({"import_s": t1 - t0, "load_s": t2 - t1, "match_s": t3 - t2, "outcomes": dict(counts)}, handle)
"""

FLOOR_SCRIPT = r"""
import json, sys, time
import duckdb
dataset, temp_dir, memory_limit, out = sys.argv[1:5]
con = duckdb.connect()
con.execute(f"SET memory_limit = '{memory_limit}'")
con.execute(f"SET temp_directory = '{temp_dir}'")
t0 = time.perf_counter()
(joined,) = con.execute(f'''
    SELECT count(*)
    FROM read_json('{dataset}/callbacks.jsonl', format = 'newline_delimited') c
    JOIN read_csv('{dataset}/dispatches.csv', header = true, all_varchar = true) d
      ON d.conversion_id = regexp_extract(c.url, '[?&]pcid=([^&#]*)', 1)
''').fetchone()
with open(out, "w") as handle:
    json.dump({"query_s": time.perf_counter() - t0, "joined": joined}, handle)
"""


def measure_best(command: list[str], log: Path, repeat: int) -> dict[str, Any]:
    """The run with the least wall time of ``repeat`` (other jobs on the machine add noise); peak RSS is the max."""
    runs = [measure(command, log=log, cwd=REPO) for _ in range(max(repeat, 1))]
    best = min(runs, key=lambda r: r.wall_s).figures()
    best["peak_rss_mib"] = max(r.peak_rss_mib for r in runs)
    best["all_wall_s"] = [round(r.wall_s, 2) for r in runs]
    return best


def prepare_dataset(workdir: Path, n: int) -> tuple[Path, dict]:
    folder = workdir / f"dataset-{n}"
    marker = folder / ".generated.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("n") == n and info.get("version") == GENERATOR_VERSION:
            return folder, {"reused": True, **info}
    if folder.exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    # In a child process: Linux carries a parent's peak RSS over fork and exec into the child's
    # ru_maxrss, so generating here (~6 GiB at 10M) would show as every measured run's peak.
    done = subprocess.run([sys.executable, "-m", "benchmarks.generate", str(folder), "--n", str(n)],
                          check=True, capture_output=True, text=True, cwd=REPO)
    files = json.loads(done.stdout)
    info = {"n": n, "version": GENERATOR_VERSION, "seconds": time.perf_counter() - start, "files": files,
            "bytes": {p.name: p.stat().st_size for p in folder.iterdir() if not p.name.startswith(".")}}
    marker.write_text(json.dumps(info))
    return folder, {"reused": False, **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="leads and callbacks (each)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/webhook-audit-bench"))
    parser.add_argument("--keep", action="store_true",
                        help="keep outputs and spill folders (the dataset is always kept)")
    parser.add_argument("--skip-online", action="store_true", help="skip (b), the online matcher")
    parser.add_argument("--phases", action="store_true", help="also profile (a) statement by statement")
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run (a) and (c) this many times and keep the fastest (the machine may be shared)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    n = args.n
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)

    figures: dict = {"n": n, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
                     "memory_limit": args.memory_limit}
    figures["source"] = source_fingerprint()
    print(f"N = {n:,} leads and {n:,} callbacks; {figures['machine']}; webhook_core {figures['source']}", flush=True)
    dataset, generated = prepare_dataset(work, n)
    figures["generation"] = generated
    sizes = ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in generated["bytes"].items())
    print(f"dataset {dataset}: {'reused' if generated['reused'] else 'generated'} "
          f"(generation took {generated['seconds']:.1f} s; {sizes})", flush=True)

    run = work / f"run-{n}-{os.getpid()}"
    run.mkdir()
    results: dict = {}
    try:
        spill = run / "spill"
        for name in ("a", "b", "c", "p"):
            (spill / name).mkdir(parents=True)

        def step(key: str, label: str, action) -> None:  # type: ignore[no-untyped-def]
            print(label, flush=True)
            try:
                results[key] = action()
            except MeasurementFailed as exc:
                print(f"  FAILED: {exc}", flush=True)
                figures.setdefault("failed", {})[key] = str(exc)

        def floor() -> dict:
            row = measure_best([sys.executable, "-c", FLOOR_SCRIPT, str(dataset), str(spill / "c"),
                                args.memory_limit, str(run / "c.json")], run / "c.log", args.repeat)
            return {**row, **json.loads((run / "c.json").read_text())}

        def cli() -> dict:
            row = measure_best([sys.executable, "-m", "webhook_core.cli", "replay", str(dataset),
                                "--out", str(run / "out"), "--memory-limit", args.memory_limit,
                                "--temp-dir", str(spill / "a")], run / "a.log", args.repeat)
            con = duckdb.connect()
            row["outcomes"] = dict(con.execute(
                f"SELECT outcome, count(*) FROM '{run / 'out' / 'callback_outcomes.parquet'}' GROUP BY ALL").fetchall())
            con.close()
            return row

        def online() -> dict:
            row = measure([sys.executable, "-c", ONLINE_SCRIPT, str(dataset), str(spill / "b"),
                           args.memory_limit, str(run / "b.json")], log=run / "b.log", cwd=REPO).figures()
            return {**row, **json.loads((run / "b.json").read_text())}

        def phases() -> dict:
            row = measure([sys.executable, "-m", "benchmarks.profile_replay", str(dataset), "--out", str(run / "out-p"),
                           "--memory-limit", args.memory_limit, "--temp-dir", str(spill / "p"),
                           "--json", str(run / "p.json")], log=run / "p.log", cwd=REPO).figures()
            return {**row, "profile": json.loads((run / "p.json").read_text())}

        step("c", "(c) floor: read_csv + read_json + one hash join …", floor)
        step("a", "(a) webhook-audit replay …", cli)
        if not args.skip_online:
            step("b", "(b) online matcher …", online)
        if args.phases:
            step("a_phases", "(a) again, statement by statement (benchmarks.profile_replay) …", phases)
    finally:
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    figures["results"] = results
    figures["source_after"] = source_fingerprint()
    if figures["source_after"] != figures["source"]:
        print("WARNING: webhook_core changed during the run; the measurements mix two versions", flush=True)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
        print(f"wrote {args.json}")


def report(figures: dict) -> None:
    n, results = figures["n"], figures["results"]
    a, b, c = results.get("a"), results.get("b"), results.get("c")
    if a is None or c is None:
        print("(a) or (c) failed; no comparison", figures.get("failed"))
        return
    rows = [("(a) webhook-audit replay", a, "")]
    if b:
        rows.append(("(b) online matcher", b,
                     f"load {b['load_s']:.1f} s + match {b['match_s']:.1f} s"))
    rows.append(("(c) floor: DuckDB read + hash join", c, f"{c['joined']:,} joined"))
    print()
    print_table(("", "wall s", "CPU s", "peak RSS MiB", "callbacks/s", "note"),
                [(name, f"{row['wall_s']:.1f}", f"{row['cpu_s']:.1f}", f"{row['peak_rss_mib']:,.0f}",
                  f"{n / row['wall_s']:,.0f}",
                  note + (f"; runs {row['all_wall_s']}" if len(row.get("all_wall_s", [])) > 1 else ""))
                 for name, row, note in rows], align="lrrrrl")
    print("(1-minute load average after each run: "
          + ", ".join(f"{k} {r['loadavg_after']:.1f}" for k, r in (("a", a), ("b", b), ("c", c)) if r) + ")")
    print()
    checks = []
    floor_ratio = a["wall_s"] / c["wall_s"]
    checks.append(("(a)/(c) wall", f"{floor_ratio:.2f}×", f"≤ {TARGET_FLOOR_RATIO}×",
                   floor_ratio <= TARGET_FLOOR_RATIO))
    cpu_ratio = a["cpu_s"] / c["cpu_s"]
    checks.append(("(a)/(c) CPU time (shared machine)", f"{cpu_ratio:.2f}×", "(info)", None))
    if b:
        online_ratio = b["wall_s"] / a["wall_s"]
        checks.append(("(b)/(a) wall", f"{online_ratio:.1f}×", f"≥ {TARGET_ONLINE_RATIO:.0f}×",
                       online_ratio >= TARGET_ONLINE_RATIO))
        match_ratio = b["match_s"] / a["wall_s"]
        checks.append(("(b) matching only / (a) wall", f"{match_ratio:.1f}×", "(info)", None))
        agree = b["outcomes"] == a["outcomes"]
        checks.append(("(a) and (b) outcome counts agree", str(agree), "True", agree))
    checks.append(("(a) peak RSS", f"{a['peak_rss_mib']:,.0f} MiB", f"≤ {TARGET_RSS_MIB:,} MiB",
                   a["peak_rss_mib"] <= TARGET_RSS_MIB))
    note = "" if n >= 10_000_000 else f"  (targets are stated for 10M/10M; this is {n:,})"
    print(f"targets{note}:")
    for name, value, target, ok in checks:
        verdict = "" if ok is None else ("pass" if ok else "FAIL")
        print(f"  {name:<34} {value:>12}  target {target:<12} {verdict}")
    print("outcomes (a):", ", ".join(f"{k} {v:,}" for k, v in sorted(a["outcomes"].items(), key=lambda kv: -kv[1])))
    figures["checks"] = [{"check": name, "value": value, "target": target, "pass": ok}
                         for name, value, target, ok in checks]
    if "a_phases" in results:
        # Imported only now: the measuring process stays small while it measures (harness.measure).
        from benchmarks.profile_replay import print_profile

        print()
        print_profile(results["a_phases"]["profile"])


if __name__ == "__main__":
    main()
