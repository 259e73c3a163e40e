"""Benchmark: how close any DuckDB replay can come to the floor, beside ``webhook-audit replay``.

    python -m benchmarks.lower_bound DATASET [--repeat 2] [--memory-limit 4GiB] [--workdir DIR] [--json FILE]

Issue 2's floor (c) reads the two files and hash-joins the URL's ``pcid`` to the leads,
writing nothing. ``webhook-audit replay`` must also read every field the rules read, and
write one row per callback and one per lead, in the documented order. This script measures
that necessary work alone, in steps that each add one piece to the last, so the ratio a
replay of any design could reach on this machine is measured, not argued:

  (c)      the floor, as ``benchmarks.replay`` runs it;
  read     (c), reading every JSONL field the rules may read (``received_at, url, headers, body,
           request_id, response_status``) and every dispatch column, each one used;
  write    read, then both outputs written to Parquet, unordered: the callbacks joined to their
           lead with the documented columns, and per lead its callbacks' count and first time;
  ordered  write, with both outputs sorted (callbacks by ``received_at``, leads by ``created_at``);
  (a)      ``webhook-audit replay DATASET --out OUT --memory-limit M --temp-dir T``.

Every step does strictly less than the rules ask: it pairs by the query string's ``pcid``
alone (no pairing locations, form or JSON bodies, headers), judges nothing (no duplicates,
timeouts, early or interim callbacks), numbers no lines and quarantines nothing. So the
ratio ``ordered / (c)`` is a lower bound on ``(a) / (c)`` for a replay that writes the
documented outputs with DuckDB on this machine.

Each step is its own subprocess with the same DuckDB settings as (c) (``--memory-limit``,
a spill folder); the steps are run in turn, ``--repeat`` rounds, so the machine's changes
of speed fall on all of them alike (always in this order: each round's ratios to its own (c) are
comparable). Reported: the fastest round of each step, and every round.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks.harness import machine, measure, print_table, side_by_side, source_fingerprint
from benchmarks.replay import FLOOR_SCRIPT

#: One step's SQL, run by STEP_SCRIPT; ``{dataset}`` and ``{out}`` are filled in.
_CALLBACKS = """read_json('{dataset}/callbacks.jsonl', format = 'newline_delimited', columns = {{
    'received_at': 'VARCHAR', 'url': 'VARCHAR', 'headers': 'JSON', 'body': 'VARCHAR',
    'request_id': 'VARCHAR', 'response_status': 'VARCHAR'}})"""
_DISPATCHES = "read_csv('{dataset}/dispatches.csv', header = true, all_varchar = true)"

#: Every field read and used: a sum over their lengths cannot be answered without them.
_READ = f"""
    SELECT count(*), sum(strlen(c.received_at) + strlen(c.headers) + coalesce(strlen(c.body), 0)
                         + strlen(c.request_id) + coalesce(strlen(c.response_status), 0)
                         + strlen(d.lead_id) + strlen(d.advertiser_id) + strlen(d.external_id)
                         + strlen(d.webhook_id) + strlen(d.created_at))
    FROM {_CALLBACKS} c
    JOIN {_DISPATCHES} d ON d.conversion_id = regexp_extract(c.url, '[?&]pcid=([^&#]*)', 1)
"""

#: The callbacks joined to their lead, with the columns of ``callback_outcomes``; kept, because
#: both outputs are made from it and DuckDB writes one file per statement.
_JOINED = f"""
    CREATE TEMP TABLE joined AS
    SELECT c.request_id, c.received_at, c.webhook_id, c.pcid AS conversion_id, d.external_id, d.advertiser_id,
           CASE WHEN d.lead_id IS NOT NULL THEN 'conversion_id' END AS matched_by, d.lead_id,
           CASE WHEN d.lead_id IS NOT NULL THEN 'matched' ELSE 'not_found' END AS outcome,
           CASE WHEN d.lead_id IS NOT NULL THEN 200 ELSE 404 END AS status_code,
           epoch(c.received_at - CAST(d.created_at AS TIMESTAMPTZ)) AS wait_s,
           try_cast(c.response_status AS INTEGER) AS recorded_status,
           strlen(c.headers) + coalesce(strlen(c.body), 0) AS read_bytes
    FROM (SELECT request_id, CAST(received_at AS TIMESTAMPTZ) AS received_at,
                 split_part(split_part(split_part(url, '?', 1), '#', 1), '/', -1) AS webhook_id,
                 regexp_extract(url, '[?&]pcid=([^&#]*)', 1) AS pcid, response_status, headers, body
          FROM {_CALLBACKS}) c
    LEFT JOIN {_DISPATCHES} d ON d.conversion_id = c.pcid
"""

#: It reads dispatches.csv again rather than a table of it made once for both outputs: at 10M that
#: table cost as much time as the second read saves, or more (docs/benchmarks.md, "Levers tried").
_LEADS = f"""
    CREATE TEMP TABLE leads AS
    SELECT d.lead_id, d.webhook_id, d.created_at,
           CASE WHEN j.first_at IS NOT NULL THEN 'received' ELSE 'waiting' END AS state,
           j.first_at AS finished_at, epoch(j.first_at - d.created_at) AS wait_s,
           coalesce(j.callbacks, 0) AS callbacks, epoch(j.first_at - d.created_at) AS first_callback_s
    FROM (SELECT lead_id, webhook_id, CAST(created_at AS TIMESTAMPTZ) AS created_at FROM {_DISPATCHES}) d
    LEFT JOIN (SELECT lead_id, count(*) AS callbacks, min(received_at) AS first_at
               FROM joined WHERE lead_id IS NOT NULL GROUP BY lead_id) j ON j.lead_id = d.lead_id
"""


def _write(ordered: bool) -> list[str]:
    """Both outputs made and kept, then each written: the statements' times part making from writing."""
    callbacks_order = " ORDER BY received_at" if ordered else ""
    leads_order = " ORDER BY created_at" if ordered else ""
    return [
        _JOINED,
        _LEADS,
        f"COPY (SELECT * EXCLUDE (read_bytes) FROM joined{callbacks_order}) TO '{{out}}/callbacks.parquet' "
        "(FORMAT parquet, PARQUET_VERSION V2)",
        f"COPY (SELECT * FROM leads{leads_order}) TO '{{out}}/leads.parquet' (FORMAT parquet, PARQUET_VERSION V2)",
        "SELECT count(*), sum(read_bytes) FROM joined",
    ]


STEPS: dict[str, list[str]] = {
    "read": [_READ],
    "write": _write(ordered=False),
    "ordered": _write(ordered=True),
}

STEP_SCRIPT = r"""
import json, sys, time
import duckdb
dataset, temp_dir, memory_limit, out, statements = sys.argv[1:6]
con = duckdb.connect()
con.execute("SET memory_limit = ?", [memory_limit])
con.execute("SET temp_directory = ?", [temp_dir])
# As the replay runs: its order comes from ORDER BY, so DuckDB need not keep any other.
con.execute("SET preserve_insertion_order = false")
t0 = time.perf_counter()
result, statement_s = None, []
for statement in json.loads(statements):
    started = time.perf_counter()
    result = con.execute(statement.format(dataset=dataset, out=out)).fetchall()
    statement_s.append(round(time.perf_counter() - started, 2))
with open(f"{out}/figures.json", "w") as handle:
    json.dump({"query_s": time.perf_counter() - t0, "statement_s": statement_s, "last": result}, handle, default=str)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a folder from benchmarks/generate.py (JSONL callbacks)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of all the steps, in turn")
    parser.add_argument("--memory-limit", default="4GiB", help="DuckDB's limit in every step; (a)'s --memory-limit")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/webhook-audit-bench/lower-bound"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    dataset = args.dataset.resolve()
    if not (dataset / "callbacks.jsonl").is_file() or not (dataset / "dispatches.csv").is_file():
        parser.error(f"{dataset}: needs callbacks.jsonl and dispatches.csv (benchmarks/generate.py writes them)")
    print(f"{dataset}; {machine()}; webhook_core {source_fingerprint()}", flush=True)

    def command(step: str, folder: Path, spill: Path) -> list[str]:
        if step == "c":
            return [sys.executable, "-c", FLOOR_SCRIPT, str(dataset), str(spill), args.memory_limit,
                    str(folder / "figures.json")]
        if step == "a":
            return [sys.executable, "-m", "webhook_core.cli", "replay", str(dataset), "--out", str(folder),
                    "--memory-limit", args.memory_limit, "--temp-dir", str(spill)]
        return [sys.executable, "-c", STEP_SCRIPT, str(dataset), str(spill), args.memory_limit, str(folder),
                json.dumps(STEPS[step])]

    order = ["c", *STEPS, "a"]
    runs: dict[str, list[dict]] = {step: [] for step in order}
    for round_number, step in side_by_side(order, args.repeat, alternate=False):
        folder = args.workdir / step
        spill = args.workdir / f"{step}-spill"
        for path in (folder, spill):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        row = measure(command(step, folder, spill), log=args.workdir / f"{step}.log").figures()
        if step != "a":
            row.update(json.loads((folder / "figures.json").read_text()))
        row["started"] = time.strftime("%H:%M:%S")
        runs[step].append(row)
        statements = f"  statements {row['statement_s']}" if len(row.get("statement_s", [])) > 1 else ""
        print(f"  round {round_number} {step:<8} {row['wall_s']:7.1f} s  CPU {row['cpu_s']:6.1f} s  "
              f"peak RSS {row['peak_rss_mib']:7,.0f} MiB{statements}", flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)

    best = {step: min(rows, key=lambda r: r["wall_s"]) for step, rows in runs.items()}
    floor = best["c"]["wall_s"]
    print()
    print_table(("step", "best wall s", "/ (c)", "CPU s", "peak RSS MiB", "rounds (wall s)"),
                [(step, f"{best[step]['wall_s']:.1f}", f"{best[step]['wall_s'] / floor:.2f}×",
                  f"{best[step]['cpu_s']:.1f}", f"{best[step]['peak_rss_mib']:,.0f}",
                  ", ".join(f"{r['wall_s']:.1f}" for r in runs[step])) for step in order], align="lrrrrl")
    # Each round's own ratio too: the rounds ran side by side, so their ratios are comparable.
    for round_index in range(args.repeat):
        floor_round = runs["c"][round_index]["wall_s"]
        ratios = ", ".join(f"{step} {runs[step][round_index]['wall_s'] / floor_round:.2f}×" for step in order[1:])
        print(f"round {round_index + 1}, each step / that round's (c): {ratios}")
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(dataset), "machine": machine(),
                                         "source": source_fingerprint(), "runs": runs}, indent=1, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
