"""Benchmark: ``webhook-audit replay`` vs the online matcher vs a DuckDB floor, side by side.

    python benchmarks/replay.py [--n 1000000] [--workdir DIR] [--keep] [--skip-online]
                                [--phases] [--json FILE] [--memory-limit 4GiB]

1. Generates N leads (``dispatches.csv``) and N callbacks (``callbacks.jsonl``)
   with DuckDB (benchmarks/generate.py; reused when already there for the same N).
2. Times, each in its own subprocess (wall time, and peak RSS from ``os.wait4``):

   (a) ``webhook-audit replay DATASET --out OUT --memory-limit 4GiB --temp-dir TMP``;
   (b) the online matcher: ``load_dataset``, then every callback through ``OnlineMatcher.match``
       (``webhook_core.online``), outcomes counted as they come;
   (c) a floor: DuckDB reads the same CSV and JSONL and hash-joins the callbacks'
       query-string ``pcid`` to ``dispatches.conversion_id`` (``count(*)``).

   ``--phases`` also runs benchmarks/profile_replay.py (the CLI's work, statement by statement).
3. Prints the figures against the targets (at 10M/10M: (a) ≤ 2.5 × (c),
   (a) ≥ 10 × faster than (b), peak RSS of (a) ≤ 4 GiB).

``rows/s`` is callbacks per second of wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
# Scripts in benchmarks/ must not shadow the standard library (benchmarks/http.py would hide `http`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _sibling(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR_VERSION = _sibling("generate").GENERATOR_VERSION

TARGET_FLOOR_RATIO = 2.5      # (a) / (c)
TARGET_ONLINE_RATIO = 10.0    # (b) / (a)
TARGET_RSS_MIB = 4 * 1024     # (a)

ONLINE_SCRIPT = r"""
import json, sys, time
from collections import Counter
t0 = time.perf_counter()
from webhook_core import connect, load_dataset
from webhook_core.online import callbacks_from_table, matcher_from_tables
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


class MeasurementFailed(Exception):
    pass


def measure(command: list[str], log: Path) -> dict:
    """Run ``command``; wall seconds and the child's peak RSS (``os.wait4``).

    The child's ru_maxrss starts from this process's peak at the fork, so this process stays
    small (no DuckDB work here beyond counting outcomes) and its own peak is kept beside it.
    """
    parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with log.open("wb") as handle:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=HERE.parent)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-3000:])
        raise MeasurementFailed(f"{' '.join(command[:4])} … failed with exit code {process.returncode}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "parent_peak_rss_mib": parent_peak,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "loadavg_after": os.getloadavg()[0]}


def measure_best(command: list[str], log: Path, repeat: int) -> dict:
    """The run with the least wall time of ``repeat`` (other jobs on the machine add noise); peak RSS is the max."""
    runs = [measure(command, log) for _ in range(max(repeat, 1))]
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    best["all_wall_s"] = [round(r["wall_s"], 2) for r in runs]
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
    done = subprocess.run([sys.executable, str(HERE / "generate.py"), str(folder), "--n", str(n)],
                          check=True, capture_output=True, text=True)
    files = json.loads(done.stdout)
    info = {"n": n, "version": GENERATOR_VERSION, "seconds": time.perf_counter() - start, "files": files,
            "bytes": {p.name: p.stat().st_size for p in folder.iterdir() if not p.name.startswith(".")}}
    marker.write_text(json.dumps(info))
    return folder, {"reused": False, **info}


def source_fingerprint() -> dict:
    """Which webhook_core was measured: git HEAD, and a hash of the working copy (others edit it)."""
    package = HERE.parent / "webhook_core"
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "webhook_core"], cwd=HERE.parent,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "?", True
    return {"git_head": head, "webhook_core_dirty": dirty, "webhook_core_sha256": digest.hexdigest()[:12]}


def machine() -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"nproc": os.cpu_count(), "ram_gib": round(memory / 2**30, 1), "python": platform.python_version(),
            "duckdb": duckdb.__version__, "platform": platform.platform()}


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
                           args.memory_limit, str(run / "b.json")], run / "b.log")
            return {**row, **json.loads((run / "b.json").read_text())}

        def phases() -> dict:
            row = measure([sys.executable, str(HERE / "profile_replay.py"), str(dataset), "--out", str(run / "out-p"),
                           "--memory-limit", args.memory_limit, "--temp-dir", str(spill / "p"),
                           "--json", str(run / "p.json")], run / "p.log")
            return {**row, "profile": json.loads((run / "p.json").read_text())}

        step("c", "(c) floor: read_csv + read_json + one hash join …", floor)
        step("a", "(a) webhook-audit replay …", cli)
        if not args.skip_online:
            step("b", "(b) online matcher …", online)
        if args.phases:
            step("a_phases", "(a) again, statement by statement (benchmarks/profile_replay.py) …", phases)
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
    print(f"{'':<36} {'wall s':>9} {'CPU s':>8} {'peak RSS MiB':>13} {'callbacks/s':>12}  note")
    for name, row, note in rows:
        runs = f"; runs {row['all_wall_s']}" if len(row.get("all_wall_s", [])) > 1 else ""
        print(f"{name:<36} {row['wall_s']:>9.1f} {row['cpu_s']:>8.1f} {row['peak_rss_mib']:>13,.0f} "
              f"{n / row['wall_s']:>12,.0f}  {note}{runs}")
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
        print()
        _sibling("profile_replay").print_profile(results["a_phases"]["profile"])


if __name__ == "__main__":
    main()
