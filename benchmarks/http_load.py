"""Benchmark: ``replay-http`` against the local ``serve``, beside a plain load generator (the ceiling).

    python -m benchmarks.http_load [--leads 10000] [--seed 7] [--dataset DIR] [--concurrency 8]
                                   [--rounds 3] [--json FILE]

1. Generates a dataset (``webhook-audit generate``'s profiles; or ``--dataset DIR``)
   and judges it with the model (``plan_requests``: load + SQL replay), untimed.
2. Per round (every second round in the other order), each against a fresh
   ``webhook-audit serve --replay-clock`` on 127.0.0.1 (a subprocess; its capture
   log in a new folder, so no request is a retry of an earlier one):

   (a) replay-http's engine, ``webhook_core.live.replayhttp.send_plan``: lanes per lead,
       retries, every attempt recorded — exactly what the command runs between
       loading and writing its tables;
   (b) the ceiling: a minimal httpx loop sending the same prebuilt requests (same
       URLs, headers, bodies, replay headers) from one shared queue with the same
       number of workers, recording only latency — no lanes, no retries.

3. Prints requests per second (requests / wall time of the sending), latency
   percentiles, the server's CPU per request, and (a) / (b) against the target
   (the replayer reaches at least half the ceiling). The medians over rounds are
   what docs/benchmarks.md records.

Only 127.0.0.1 is a target; each run is bounded (its requests are a fixed list,
every request has a timeout, each round a deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import print_table, side_by_side
from webhook_core import connect, load_dataset
from webhook_core.live.replayhttp import PlannedRequest, SendOptions, plan_requests, send_plan
from webhook_core.synth.generate import generate
from webhook_core.timeutil import iso_utc

REPLAYER = "replay-http (send_plan)"
TARGET_RATIO = 0.5  # (a) / (b)
ROUND_DEADLINE_S = 600
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    name: str
    requests: int
    wall_s: float
    latencies_ms: list[float]
    statuses: dict[str, int]
    server_cpu_s: float
    client_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "requests": self.requests, "wall_s": round(self.wall_s, 3),
                "rps": round(self.rps, 1), "p50_ms": round(self.percentile(0.50), 2),
                "p90_ms": round(self.percentile(0.90), 2), "p99_ms": round(self.percentile(0.99), 2),
                "server_cpu_ms_per_request": round(1000 * self.server_cpu_s / self.requests, 3),
                "client_cpu_ms_per_request": round(1000 * self.client_cpu_s / self.requests, 3),
                "statuses": self.statuses}


class Server:
    """``python -m webhook_core.cli serve DATASET --replay-clock --port 0`` with a fresh capture folder."""

    def __init__(self, dataset: Path, workdir: Path, name: str) -> None:
        self.out = workdir / f"{name}.out"
        self._out = self.out.open("wb")
        self._err = (workdir / f"{name}.err").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhook_core.cli", "serve", str(dataset), "--port", "0", "--replay-clock",
             "--capture-dir", str(workdir / f"{name}-capture")],
            stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (found := LISTENING.search(self.out.read_text(encoding="utf-8"))) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"serve did not start: {(workdir / f'{name}.err').read_text()[-2000:]}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._err.close()


def plan(dataset: Path) -> list[PlannedRequest]:
    con = connect()
    loaded = load_dataset(con, dataset)
    planned = plan_requests(con, loaded.webhooks)
    con.close()
    return planned


def run_replayer(planned: list[PlannedRequest], server: Server, concurrency: int) -> Run:
    options = SendOptions(target=httpx.URL(server.url), concurrency=concurrency)
    cpu0, server0 = time.process_time(), server.cpu_s()
    started = time.perf_counter()
    attempts = asyncio.run(asyncio.wait_for(send_plan(planned, options), ROUND_DEADLINE_S))
    wall = time.perf_counter() - started
    statuses = Counter(str(a.status or a.error) for a in attempts)
    return Run(REPLAYER, len(planned), wall, [a.latency_ms for a in attempts], dict(statuses),
               server.cpu_s() - server0, time.process_time() - cpu0)


def run_ceiling(planned: list[PlannedRequest], server: Server, concurrency: int) -> Run:
    """The plainest loop that sends the same bytes: shared queue, N workers, latency only."""
    base = server.url
    prepared = [(p.method, base + p.target_path,
                 [(n.encode(), v.encode()) for n, v in p.headers]
                 + [(b"X-Replay-Received-At", iso_utc(p.received_at).encode()),
                    (b"X-Replay-Request-Id", p.key.encode())], p.body) for p in planned]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def go() -> None:
        queue = iter(prepared)
        async with httpx.AsyncClient(timeout=10.0, trust_env=False,
                                     limits=httpx.Limits(max_connections=concurrency)) as client:
            async def worker() -> None:
                for method, url, headers, body in queue:
                    t0 = time.perf_counter()
                    response = await client.send(httpx.Request(method, url, headers=headers, content=body))
                    latencies.append((time.perf_counter() - t0) * 1000)
                    statuses[str(response.status_code)] += 1
            await asyncio.gather(*(worker() for _ in range(concurrency)))

    cpu0, server0 = time.process_time(), server.cpu_s()
    started = time.perf_counter()
    asyncio.run(asyncio.wait_for(go(), ROUND_DEADLINE_S))
    wall = time.perf_counter() - started
    return Run("plain httpx loop (ceiling)", len(planned), wall, latencies, dict(statuses),
               server.cpu_s() - server0, time.process_time() - cpu0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dataset", type=Path, default=None, help="replay this dataset instead of generating one")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="webhook-audit-http-bench-") as work:
        workdir = Path(work)
        dataset = args.dataset
        if dataset is None:
            dataset = workdir / "dataset"
            generate(dataset, leads=args.leads, seed=args.seed)
        planned = plan(dataset)
        print(f"{len(planned):,} requests from {dataset if args.dataset else f'{args.leads:,} generated leads'}; "
              f"concurrency {args.concurrency}; {args.rounds} round(s); {platform.python_version()}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
        by_round: dict[int, list[Run]] = {}
        for number, runner in side_by_side((run_replayer, run_ceiling), args.rounds):
            server = Server(dataset, workdir, f"r{number}-{runner.__name__}")
            try:
                run = runner(planned, server, args.concurrency)
            finally:
                server.stop()
            by_round.setdefault(number, []).append(run)
            print(f"round {number}: {json.dumps(run.summary())}", flush=True)
        # The replayer first in every round: the ratio below is (a) / (b).
        rounds = [sorted(runs, key=lambda r: r.name != REPLAYER) for runs in by_round.values()]

    def median(index: int, key: str) -> float:
        return statistics.median(float(r[index].summary()[key]) for r in rounds)

    keys = ("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_ms_per_request", "client_cpu_ms_per_request")
    medians = {rounds[0][i].name: {k: median(i, k) for k in keys} for i in range(2)}
    ratio = statistics.median(r[0].rps / r[1].rps for r in rounds)
    print()
    print_table(("median over rounds", "req/s", "p50 ms", "p90 ms", "p99 ms", "server CPU ms/req", "client CPU ms/req"),
                [(name, f"{values['rps']:.0f}", f"{values['p50_ms']:.1f}", f"{values['p90_ms']:.1f}",
                  f"{values['p99_ms']:.1f}", f"{values['server_cpu_ms_per_request']:.3f}",
                  f"{values['client_cpu_ms_per_request']:.3f}") for name, values in medians.items()])
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"replay-http / ceiling = {ratio:.2f} (target >= {TARGET_RATIO}): {verdict} the target")
    if args.json:
        args.json.write_text(json.dumps({"requests": len(planned), "concurrency": args.concurrency,
                                         "rounds": [[r.summary() for r in runs] for runs in rounds],
                                         "medians": medians, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
