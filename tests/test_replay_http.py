"""``replay-http`` and ``serve`` over HTTP.

* respx (no sockets) for the replayer's request shaping and failure paths;
* real loopback HTTP, ``webhook-audit serve`` (uvicorn) in a subprocess, for the
  end-to-end replay of data/sample, a load test and a crash test.

Every loop here is bounded in count and time; the only target is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import respx
from click.testing import CliRunner

from webhook_core import NOT_FOUND_BODY, connect, load_dataset, open_audit
from webhook_core.analysis.rates import rates
from webhook_core.cli import cli
from webhook_core.domain import OK_BODY, REASONS_404
from webhook_core.exceptions import ReplayHttpError
from webhook_core.live.capturelog import read_callbacks
from webhook_core.live.receiver import Receiver, ReceiverConfig
from webhook_core.live.replayhttp import (
    PlannedRequest,
    SendOptions,
    attempts_table,
    check_target,
    diff_table,
    disagreement_summary,
    parse_rate,
    plan_requests,
    send_plan,
)

from datasets import write_dataset

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
TARGET = "http://127.0.0.1:9/base"
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

WEBHOOKS = [
    {"webhook_id": "wh-a", "advertiser_id": "acme", "wait": True, "timeout_s": 60},
    {"webhook_id": "wh-b", "advertiser_id": "beta", "wait": False},
]


def dispatch(n: int, webhook: str = "wh-a", created: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {"lead_id": f"L{n}", "conversion_id": f"PC-{n}", "advertiser_id": "acme" if webhook == "wh-a" else "beta",
            "external_id": None, "webhook_id": webhook, "created_at": created}


def callback(name: str, seconds: float, url: str, **fields: Any) -> dict[str, Any]:
    moment = datetime(2026, 11, 20, 10, 0, tzinfo=UTC) + timedelta(seconds=seconds)
    return {"request_id": name, "received_at": moment.isoformat(), "url": url, **fields}


def planned_for(dataset: Callable[..., Path], dispatches: list[dict[str, Any]],
                callbacks: list[dict[str, Any]]) -> list[PlannedRequest]:
    con = connect()
    try:
        loaded = load_dataset(con, dataset(WEBHOOKS, dispatches, callbacks))
        return plan_requests(con, loaded.webhooks)
    finally:
        con.close()


def options(**overrides: Any) -> SendOptions:
    values: dict[str, Any] = {"target": httpx.URL(TARGET), "concurrency": 4, "retries": 2, "backoff_s": 0.01,
                              "timeout_s": 5.0}
    values.update(overrides)
    return SendOptions(**values)


def send(planned: list[PlannedRequest], opts: SendOptions) -> list[Any]:
    return asyncio.run(send_plan(planned, opts))


# --------------------------------------------------------------------------- request shaping (respx)


def test_requests_are_shaped_exactly_as_captured(dataset: Callable[..., Path]) -> None:
    body = '{"pcid":"PC-1","name":"Zoë"}'
    planned = planned_for(dataset, [dispatch(1)], [
        callback("r1", 5, "https://prod.example/webhooks/wh-a?pcid=PC-1&x=a%20b+c", method="PUT", body=body, headers=[
            ["Host", "prod.example"], ["Content-Type", "application/json"], ["Connection", "keep-alive, X-Drop"],
            ["X-Drop", "1"], ["Keep-Alive", "timeout=5"], ["Transfer-Encoding", "chunked"],
            ["Content-Length", "999"], ["X-Dup", "1"], ["x-dup", "2"], ["X-Utf", "é"], ["TE", "trailers"],
            ["X-Replay-Received-At", "1999-01-01T00:00:00Z"]]),
        callback("r2", 6, "/webhooks/./wh-a/..?pcid=PC-1#fragment", method="GET"),
    ])
    seen: list[httpx.Request] = []
    with respx.mock(assert_all_called=True) as router:
        router.route().mock(side_effect=lambda request: (seen.append(request), httpx.Response(200))[1])
        send(planned, options(concurrency=1))
    first, second = seen
    assert first.method == "PUT"
    assert first.url.raw_path == b"/base/webhooks/wh-a?pcid=PC-1&x=a%20b+c"
    assert first.content == body.encode("utf-8")
    assert first.headers.raw == [
        (b"Host", b"127.0.0.1:9"), (b"Content-Type", b"application/json"), (b"X-Dup", b"1"), (b"x-dup", b"2"),
        (b"X-Utf", "é".encode()), (b"X-Replay-Received-At", b"2026-11-20T10:00:05.000000Z"),
        (b"X-Replay-Request-Id", b"r1"), (b"Content-Length", str(len(body.encode())).encode()),
    ]  # no Accept, User-Agent, Accept-Encoding: httpx adds nothing that was not captured
    assert second.method == "GET"
    # Dot segments survive (escaped) instead of being collapsed: the token is still read as "..".
    assert second.url.raw_path == b"/base/webhooks/%2E/wh-a/%2E%2E?pcid=PC-1"
    assert second.content == b""
    assert [name for name, _ in second.headers.raw] == [b"Host", b"X-Replay-Received-At", b"X-Replay-Request-Id"]


def test_without_replay_clock_no_replay_headers_are_sent(dataset: Callable[..., Path]) -> None:
    planned = planned_for(dataset, [dispatch(1)], [callback("r1", 5, "/webhooks/wh-a?pcid=PC-1")])
    with respx.mock() as router:
        route = router.route().mock(return_value=httpx.Response(200))
        send(planned, options(replay_clock=False))
    assert [name for name, _ in route.calls.last.request.headers.raw] == [b"Host", b"Content-Length"]


def test_repeated_request_ids_get_unique_replay_ids(dataset: Callable[..., Path]) -> None:
    planned = planned_for(dataset, [dispatch(1)], [callback("same", 5, "/webhooks/wh-a?pcid=PC-1"),
                                                   callback("same", 6, "/webhooks/wh-a?pcid=PC-1"),
                                                   callback("other", 7, "/webhooks/wh-a?pcid=PC-1")])
    assert [p.key for p in planned] == ["same#1", "same#2", "other"]


def test_each_leads_callbacks_go_in_order_one_at_a_time_and_leads_overlap(dataset: Callable[..., Path]) -> None:
    leads = range(1, 7)
    callbacks = [callback(f"r{n}-{k}", k * 10 + n, f"/webhooks/wh-a?pcid=PC-{n}") for k in range(3) for n in leads]
    callbacks += [callback(f"x{k}", k, "/webhooks/wh-a?pcid=nobody") for k in range(5)]
    planned = planned_for(dataset, [dispatch(n) for n in leads], callbacks)
    in_flight: dict[str, int] = {}
    order: dict[str, list[str]] = {}
    overlap = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal overlap
        lane = request.url.params["pcid"]
        assert in_flight.get(lane, 0) == 0 or lane == "nobody", "two callbacks of one lead in flight"
        in_flight[lane] = in_flight.get(lane, 0) + 1
        overlap = max(overlap, sum(in_flight.values()))
        order.setdefault(lane, []).append(request.headers["x-replay-request-id"])
        await asyncio.sleep(0.01)
        in_flight[lane] -= 1
        return httpx.Response(200)

    with respx.mock() as router:
        router.route().mock(side_effect=answer)
        send(planned, options(concurrency=4))
    for n in leads:
        assert order[f"PC-{n}"] == [f"r{n}-0", f"r{n}-1", f"r{n}-2"]
    assert overlap > 1  # different leads did go concurrently


# --------------------------------------------------------------------------- failure paths (respx)


def one_request(dataset: Callable[..., Path]) -> list[PlannedRequest]:
    return planned_for(dataset, [dispatch(1)], [callback("r1", 5, "/webhooks/wh-a?pcid=PC-1")])


def test_connection_refused_is_retried_with_backoff_and_every_attempt_recorded(
        dataset: Callable[..., Path]) -> None:
    planned = one_request(dataset)
    with respx.mock() as router:
        router.route().mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
        started = time.perf_counter()
        attempts = send(planned, options(retries=3, backoff_s=0.05))
        elapsed = time.perf_counter() - started
    assert [(a.attempt, a.status, a.retryable) for a in attempts] == [(1, None, True), (2, None, True),
                                                                        (3, None, True), (4, None, True)]
    assert attempts[0].error == "ConnectError: [Errno 111] Connection refused"
    assert elapsed >= 0.05 + 0.1 + 0.2  # backoff doubles
    diff = diff_table(planned, attempts)
    assert diff.attempts.tolist() == [4]
    assert diff.actual_status.isna().all() and not diff.agrees.any()
    summary = disagreement_summary(diff).set_index("expected_outcome")
    assert summary.loc["matched", ["requests", "agree", "disagree", "no_answer"]].tolist() == [1, 0, 0, 1]
    table = attempts_table(attempts)
    assert table.error.notna().all() and len(table) == 4


def test_a_timeout_is_retried_and_the_answer_after_it_counts(dataset: Callable[..., Path]) -> None:
    planned = one_request(dataset)
    with respx.mock() as router:
        router.route().mock(side_effect=[httpx.ReadTimeout("timed out"), httpx.ConnectTimeout("timed out"),
                                         httpx.Response(200, content=OK_BODY)])
        attempts = send(planned, options())
    assert [(a.status, a.error) for a in attempts] == [(None, "ReadTimeout: timed out"),
                                                         (None, "ConnectTimeout: timed out"), (200, None)]
    assert diff_table(planned, attempts).agrees.tolist() == [True]


def test_5xx_answers_are_recorded_and_never_retried(dataset: Callable[..., Path]) -> None:
    planned = one_request(dataset)
    with respx.mock() as router:
        route = router.route().mock(return_value=httpx.Response(502, content=b"bad gateway"))
        attempts = send(planned, options(retries=5))
    assert route.call_count == 1
    assert [(a.status, a.body, a.error) for a in attempts] == [(502, b"bad gateway", None)]
    diff = diff_table(planned, attempts)
    assert diff.loc[0, "actual_body"] == "bad gateway"
    assert disagreement_summary(diff).disagree.tolist() == [1]


def test_a_slow_answer_is_waited_for_and_its_latency_recorded(dataset: Callable[..., Path]) -> None:
    planned = one_request(dataset)

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(200, content=OK_BODY)

    with respx.mock() as router:
        router.route().mock(side_effect=slow)
        (attempt,) = send(planned, options())
    assert attempt.status == 200 and attempt.latency_ms >= 300


def test_retries_exhausted_then_the_next_callback_of_the_lead_still_goes(dataset: Callable[..., Path]) -> None:
    planned = planned_for(dataset, [dispatch(1)], [callback("r1", 5, "/webhooks/wh-a?pcid=PC-1"),
                                                   callback("r2", 6, "/webhooks/wh-a?pcid=PC-1")])
    with respx.mock() as router:
        router.route().mock(side_effect=[httpx.ReadError("reset"), httpx.ReadError("reset"),
                                         httpx.Response(404, content=NOT_FOUND_BODY)])
        attempts = send(planned, options(retries=1))
    diff = diff_table(planned, attempts)
    assert diff[["request_id", "attempts", "error"]].values.tolist() == [["r1", 2, "ReadError: reset"],
                                                                         ["r2", 1, None]]
    assert diff.expected_outcome.tolist() == ["matched", "duplicate"]
    assert diff.agrees.tolist() == [False, True]  # the 404 body is the exact production body


def test_a_404_with_another_body_disagrees(dataset: Callable[..., Path]) -> None:
    planned = planned_for(dataset, [dispatch(1)], [callback("r1", 5, "/webhooks/wh-a?pcid=nobody")])
    with respx.mock() as router:
        router.route().mock(return_value=httpx.Response(404, content=b'{"detail":"Not Found"}'))
        attempts = send(planned, options())
    assert diff_table(planned, attempts).agrees.tolist() == [False]


def test_a_request_that_cannot_be_sent_is_not_retried(dataset: Callable[..., Path]) -> None:
    planned = planned_for(dataset, [dispatch(1)], [
        callback("r1", 5, "/webhooks/wh-a?pcid=PC-1", headers=[["Bad Name", "x"]])])
    with respx.mock() as router:
        router.route().mock(side_effect=httpx.LocalProtocolError("Illegal header name b'Bad Name'"))
        attempts = send(planned, options(retries=3))
    assert [(a.attempt, a.retryable) for a in attempts] == [(1, False)]


def test_rate_limits_attempts_per_second(dataset: Callable[..., Path]) -> None:
    planned = planned_for(dataset, [dispatch(n) for n in range(1, 11)],
                          [callback(f"r{n}", n, f"/webhooks/wh-a?pcid=PC-{n}") for n in range(1, 11)])
    with respx.mock() as router:
        router.route().mock(return_value=httpx.Response(200))
        started = time.perf_counter()
        send(planned, options(rate=40.0, concurrency=8))
        elapsed = time.perf_counter() - started
    assert elapsed >= 9 / 40


# --------------------------------------------------------------------------- target and CLI


@pytest.mark.parametrize("target", ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:1/x",
                                    "http://[::1]:8080"])
def test_loopback_targets_are_accepted(target: str) -> None:
    assert check_target(target, allow_remote=False).host


@pytest.mark.parametrize("target", ["http://example.com", "http://10.0.0.1:8080", "https://192.168.1.5",
                                    "http://[::2]:80", "http://127.0.0.1.nip.io"])
def test_targets_outside_loopback_need_allow_remote(target: str) -> None:
    with pytest.raises(ReplayHttpError, match=r"not a loopback address .* pass --allow-remote"):
        check_target(target, allow_remote=False)
    assert check_target(target, allow_remote=True)


def test_bad_targets_and_rates_are_one_line_errors() -> None:
    with pytest.raises(ReplayHttpError, match="http:// or https://"):
        check_target("ftp://127.0.0.1", allow_remote=False)
    with pytest.raises(ReplayHttpError, match="without"):
        check_target("http://127.0.0.1/?x=1", allow_remote=False)
    assert parse_rate("250/s") == parse_rate("250") == 250.0
    with pytest.raises(ReplayHttpError, match="requests per second"):
        parse_rate("fast")


def run_cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, ANSI.sub("", result.output)


def test_cli_refuses_a_remote_target_in_one_line(tmp_path: Path) -> None:
    with respx.mock() as router:
        code, output = run_cli("replay-http", str(SAMPLE), "--target", "http://example.com", "--out",
                               str(tmp_path / "out"))
        assert not router.calls
    assert code == 1
    assert output.strip().splitlines() == [
        "Error: --target http://example.com: example.com is not a loopback address (localhost, 127.0.0.0/8, ::1) "
        "and replay-http sends every captured callback, with its IDs, to the target; pass --allow-remote if you "
        "mean to"]


def test_cli_dry_run_prints_the_plan_and_sends_nothing(tmp_path: Path) -> None:
    with respx.mock() as router:
        code, output = run_cli("replay-http", str(SAMPLE), "--target", "http://example.com", "--allow-remote",
                               "--dry-run")
        assert not router.calls
    assert code == 0
    assert "Plan: 3,537 requests to http://example.com in" in output
    assert re.search(r"wh-extonly\s*│\s*GET\s*│\s*\d", output)
    assert "3 quarantined capture lines cannot be sent" in output
    assert not (tmp_path / "out").exists()


def test_cli_needs_out_unless_dry_run() -> None:
    code, output = run_cli("replay-http", str(SAMPLE), "--target", "http://127.0.0.1:9")
    assert code == 1 and "--out DIR is required" in output


def test_serve_mistakes_are_one_line_errors(dataset: Callable[..., Path], tmp_path: Path) -> None:
    folder = dataset(WEBHOOKS, [dispatch(1)], [])
    code, output = run_cli("serve", str(tmp_path / "missing"), "--capture-dir", str(tmp_path / "c1"))
    assert code == 1 and output.strip().splitlines() == [
        f"Error: {tmp_path / 'missing'}: not a folder; a dataset is a folder with webhooks.json, dispatches.* "
        "and callbacks.*"]
    code, output = run_cli("serve", str(folder), "--prefix", "/admin/hooks", "--capture-dir", str(tmp_path / "c2"))
    assert code == 1 and "Error: --prefix '/admin/hooks': /admin/ is the admin endpoint" in output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_cli("serve", str(folder), "--port", str(port), "--capture-dir", str(tmp_path / "c3"))
    assert code == 1
    assert output.strip().splitlines()[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"


# --------------------------------------------------------------------------- real HTTP on loopback


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, how: signal.Signals) -> int:
        self.proc.send_signal(how)
        return self.proc.wait(timeout=30)


@contextmanager
def serving(dataset: Path, capture: Path, logs: Path, *args: str, port: int = 0) -> Iterator[Served]:
    """``python -m webhook_core.cli serve`` in a subprocess, up once it prints its URL; always stopped after."""
    logs.mkdir(parents=True, exist_ok=True)
    number = len(list(logs.glob("serve-*.out")))
    out_path, err_path = logs / f"serve-{number}.out", logs / f"serve-{number}.err"
    env = {k: v for k, v in os.environ.items() if k != "WEBHOOK_AUDIT_ADMIN_TOKEN"}
    with out_path.open("wb") as out, err_path.open("wb") as err, subprocess.Popen(
            [sys.executable, "-m", "webhook_core.cli", "serve", str(dataset), "--host", "127.0.0.1", "--port",
             str(port), "--capture-dir", str(capture), *args],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env) as proc:
        try:
            deadline = time.monotonic() + 90
            while (found := LISTENING.search(out_path.read_text(encoding="utf-8"))) is None:
                if proc.poll() is not None:
                    pytest.fail(f"serve exited {proc.returncode}: {err_path.read_text(encoding='utf-8')[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("serve did not start within 90 s")
                time.sleep(0.05)
            yield Served(proc, int(found.group(1)), out_path)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@dataclass(frozen=True)
class Replayed:
    diff: pd.DataFrame
    output: str
    exit_code: int
    serve_exit: int
    serve_output: str
    log: list[dict[str, Any]]


@pytest.fixture(scope="module")
def sample_plan() -> list[PlannedRequest]:
    con = connect()
    try:
        loaded = load_dataset(con, SAMPLE)
        return plan_requests(con, loaded.webhooks)
    finally:
        con.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """data/sample replayed by the CLI against ``serve --replay-clock``, stopped with Ctrl-C afterwards."""
    folder = tmp_path_factory.mktemp("e2e")
    with serving(SAMPLE, folder / "capture", folder, "--replay-clock") as server:
        code, output = run_cli("replay-http", str(SAMPLE), "--target", server.url, "--out", str(folder / "out"),
                               "--concurrency", "8")
        serve_exit = server.stop(signal.SIGINT)
        serve_output = server.output.read_text(encoding="utf-8")
    diff = pd.read_parquet(folder / "out" / "http_diff.parquet")
    log = [json.loads(line) for line in (folder / "capture" / "callbacks.jsonl").read_text("utf-8").splitlines()]
    return Replayed(diff, output, code, serve_exit, serve_output, log)


def test_end_to_end_sample_replay_agrees_with_the_model_everywhere(uninterrupted: Replayed) -> None:
    assert uninterrupted.exit_code == 0, uninterrupted.output
    diff = uninterrupted.diff
    assert len(diff) == 3537
    assert diff.agrees.all(), diff[~diff.agrees].head()
    assert "3,537 requests to http://127.0.0.1:" in uninterrupted.output
    assert ": 0 answered otherwise than the model, 0 without an answer; production's recorded answers differ " \
           "from the model on 24; 3 quarantined lines not sent" in uninterrupted.output
    assert (diff.actual_body[diff.expected_status == 404] == NOT_FOUND_BODY.decode()).all()
    assert set(diff.expected_outcome) == {"matched", "interim", "early", "duplicate", "late", "wrong_webhook",
                                          "not_found", "no_identifiers", "unknown_token"}
    assert len(uninterrupted.log) == 3537  # one line per request, no retries needed


def test_serve_stops_cleanly_on_ctrl_c(uninterrupted: Replayed) -> None:
    assert uninterrupted.serve_exit == 0
    assert "stopped; capture log" in uninterrupted.serve_output
    assert "holds 3,537 callbacks" in uninterrupted.serve_output


def test_crash_mid_replay_then_restart_gives_the_uninterrupted_answers(
        sample_plan: list[PlannedRequest], uninterrupted: Replayed, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    outcome: dict[str, Any] = {}

    def replay_in_background(url: str) -> None:
        opts = SendOptions(target=httpx.URL(url), concurrency=4, retries=60, backoff_s=0.05, max_backoff_s=0.5,
                           timeout_s=5.0)
        try:  # bounded: the whole replay gives up after 120 s
            outcome["attempts"] = asyncio.run(asyncio.wait_for(send_plan(sample_plan, opts), timeout=120))
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    with serving(SAMPLE, capture, tmp_path, "--replay-clock") as first:
        port = first.port
        worker = threading.Thread(target=replay_in_background, args=(first.url,))
        worker.start()
        deadline = time.monotonic() + 60
        while _lines(capture / "callbacks.jsonl") < 1000 and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.01)
        first.proc.send_signal(signal.SIGKILL)  # mid-replay, no chance to clean up
        first.proc.wait(timeout=30)
    killed_at = _lines(capture / "callbacks.jsonl")
    with serving(SAMPLE, capture, tmp_path, "--replay-clock", port=port) as second:
        worker.join(timeout=150)
        assert not worker.is_alive()
        assert second.stop(signal.SIGTERM) == 0
        restarted = second.output.read_text(encoding="utf-8")
    assert "error" not in outcome, outcome.get("error")
    assert 1000 <= killed_at < 3537, "the kill did not land mid-replay"
    assert re.search(rf"capture log .*: {killed_at:,} callbacks \({killed_at:,} judged again\)", restarted)

    attempts = outcome["attempts"]
    assert any(a.error for a in attempts), "no request saw the crash"
    diff = diff_table(sample_plan, attempts).set_index("seq")
    expected = uninterrupted.diff.set_index("seq")
    assert diff.agrees.all()
    assert diff.actual_status.tolist() == expected.actual_status.tolist()
    assert diff.actual_body.tolist() == expected.actual_body.tolist()
    # Judged once each: a request logged but not answered before the kill was answered again, not re-judged.
    logged = [json.loads(line)["request_id"] for line in (capture / "callbacks.jsonl").read_text("utf-8").splitlines()]
    assert sorted(logged) == sorted(p.key for p in sample_plan)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_load_every_answered_request_is_in_the_capture_log(dataset: Callable[..., Path], tmp_path: Path) -> None:
    """6 clients × 500 callbacks, 4 in flight each; the server is SIGKILLed two thirds of the way through."""
    leads = 1500
    created = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    folder = dataset(WEBHOOKS, [dispatch(n, "wh-b", created) for n in range(leads)], [])
    capture = tmp_path / "capture"
    answered: dict[str, int] = {}
    with serving(folder, capture, tmp_path) as server:
        kill_after = 2000

        async def client(number: int) -> None:
            gate = asyncio.Semaphore(4)
            async with httpx.AsyncClient(base_url=server.url, timeout=5.0, trust_env=False) as http:
                async def one(k: int) -> None:
                    lead = (number * 500 + k) % leads  # every lead called twice: a match, then a duplicate
                    request_id = f"c{number}-{k}"
                    async with gate:
                        try:
                            response = await http.post(f"/webhooks/wh-b?pcid=PC-{lead}",
                                                       headers={"X-Load-Id": request_id})
                        except httpx.TransportError:
                            return  # the server is gone: not answered
                    answered[request_id] = response.status_code
                    if len(answered) == kill_after:
                        server.proc.send_signal(signal.SIGKILL)
                await asyncio.gather(*(one(k) for k in range(500)))

        async def everyone() -> None:
            await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(6))), timeout=120)

        asyncio.run(everyone())
        server.proc.wait(timeout=30)
    lines = read_callbacks(capture, folder / "webhooks.json")  # the dataset loader reads the log back
    logged = {dict(line.request.headers)["x-load-id"]: line.response_status for line in lines}
    assert len(answered) >= kill_after
    missing = {k: v for k, v in answered.items() if logged.get(k) != v}
    assert not missing, f"{len(missing)} answered requests not in the log as answered, e.g. {list(missing)[:5]}"
    by_lead: dict[str, list[int | None]] = {}
    for line in lines:  # the log is in judging order: per lead a match, then duplicates
        by_lead.setdefault(line.request.url, []).append(line.response_status)
    assert all(statuses == [200] + [404] * (len(statuses) - 1) for statuses in by_lead.values())


# --------------------------------------------------------------------------- refusals in the capture log


#: What a client sends to ``serve --replay-clock --max-body-bytes 100`` (request id, method, path, body,
#: seconds after 10:00 or None for no replay clock), the receiver's answer and the outcome the log replays to.
#: Each refusal comes before (or, out of order, after) a callback to the same lead that is judged.
REFUSALS_SCRIPT: list[tuple[str, str, bytes, float | None, int, str]] = [
    ("r-413", "/webhooks/wh-a?pcid=PC-1", b"x" * 200, 1, 413, "refused"),  # body over the limit
    ("r-1", "/webhooks/wh-a?pcid=PC-1", b"", 2, 200, "matched"),
    ("r-409", "/webhooks/wh-a?pcid=PC-1", b"", 1.5, 409, "refused"),  # older than PC-1's last callback
    ("r-outside", "/other/wh-a?pcid=PC-2", b"", 3, 404, "refused"),  # outside the prefix
    ("r-2", "/webhooks/wh-a?pcid=PC-2", b"", 4, 200, "matched"),
    ("r-slashes", "//10.0.0.1/webhooks/wh-a?pcid=PC-3", b"", 5, 404, "refused"),  # outside the prefix too
    ("r-3", "/webhooks/wh-a?pcid=PC-3", b"", 6, 200, "matched"),
    ("r-400", "/webhooks/wh-a?pcid=PC-4", b"", None, 400, "refused"),  # no X-Replay-Received-At
    ("r-4", "/webhooks/wh-a?pcid=PC-4", b"", 7, 200, "matched"),
    ("r-dup", "/webhooks/wh-a?pcid=PC-1", b"", 8, 404, "duplicate"),
    ("r-none", "/webhooks/wh-a?pcid=PC-9", b"", 9, 404, "not_found"),
]


@dataclass(frozen=True)
class Refusals:
    folder: Path  # the dataset with the capture log as its callbacks.jsonl
    answers: dict[str, int]  # what the client got, by request id
    replayed: pd.DataFrame  # `webhook-audit replay` of the folder: callback_outcomes
    replay_output: str
    http_code: int  # `webhook-audit replay-http` of the folder against a fresh receiver
    http_output: str
    http_diff: pd.DataFrame


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Refusals:
    """A receiver refuses some requests before judging them; its log is replayed offline and over HTTP."""
    base = tmp_path_factory.mktemp("refusals")
    source = base / "source"
    write_dataset(source, WEBHOOKS, [dispatch(n) for n in range(1, 5)], [])
    answers: dict[str, int] = {}
    with serving(source, base / "capture", base, "--replay-clock", "--max-body-bytes", "100") as server:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            for request_id, path, body, seconds, _, _ in REFUSALS_SCRIPT:
                headers = {"X-Replay-Request-Id": request_id}
                if seconds is not None:
                    moment = datetime(2026, 11, 20, 10, 0, tzinfo=UTC) + timedelta(seconds=seconds)
                    headers["X-Replay-Received-At"] = moment.isoformat()
                answers[request_id] = http.post(server.url + path, content=body, headers=headers).status_code
        assert server.stop(signal.SIGINT) == 0
    folder = base / "dataset"
    folder.mkdir()
    for name in ("webhooks.json", "dispatches.jsonl"):
        (folder / name).write_bytes((source / name).read_bytes())
    (folder / "callbacks.jsonl").write_bytes((base / "capture" / "callbacks.jsonl").read_bytes())
    code, replay_output = run_cli("replay", str(folder), "--out", str(base / "replayed"))
    assert code == 0, replay_output
    replayed = pd.read_parquet(base / "replayed" / "callback_outcomes.parquet")
    with serving(folder, base / "capture-2", base, "--replay-clock") as server:
        http_code, http_output = run_cli("replay-http", str(folder), "--target", server.url, "--out",
                                         str(base / "http"))
    return Refusals(folder, answers, replayed, replay_output, http_code, http_output,
                    pd.read_parquet(base / "http" / "http_diff.parquet") if http_code == 0 else pd.DataFrame())


def test_the_capture_log_replays_to_the_receivers_answers_refusals_included(refusals: Refusals) -> None:
    """Every line of the log, refused or judged, replays (`webhook-audit replay`) to the answer the client got."""
    assert refusals.answers == {row[0]: row[4] for row in REFUSALS_SCRIPT}
    replayed = refusals.replayed.set_index("request_id")
    assert sorted(replayed.index) == sorted(refusals.answers)
    assert replayed.recorded_status.to_dict() == refusals.answers
    assert (replayed.status_code == replayed.recorded_status).all()  # agreement on every line: 100 %
    assert replayed.outcome.to_dict() == {row[0]: row[5] for row in REFUSALS_SCRIPT}
    refused = replayed[replayed.outcome == "refused"]
    assert refused.webhook_id.isna().all() and refused.lead_id.isna().all()  # charged to no webhook, no lead


def test_the_summary_counts_only_judged_callbacks_in_rates_and_agreement(refusals: Refusals) -> None:
    with open_audit(refusals.folder) as audit:
        overall = rates(audit).set_index("webhook_id").loc["(all)"]
    judged = [row for row in REFUSALS_SCRIPT if row[5] != "refused"]
    assert (overall.callbacks, overall.recorded, overall.agree, overall.disagree) == (
        len(judged), len(judged), len(judged), 0)
    assert overall.answered_404 == sum(row[4] == 404 for row in judged)
    assert {reason: overall[f"404_{reason}"] for reason in REASONS_404 if overall[f"404_{reason}"]} == {
        "duplicate": 1, "not_found": 1}


def test_replay_http_sends_only_what_the_receiver_judged_and_counts_the_refused_apart(refusals: Refusals) -> None:
    assert refusals.http_code == 0, refusals.http_output
    diff = refusals.http_diff
    judged = [row for row in REFUSALS_SCRIPT if row[5] != "refused"]
    assert sorted(diff.request_id) == sorted(row[0] for row in judged)
    assert diff.agrees.all() and diff.recorded_agrees.all()
    assert f"{len(judged)} requests to http://127.0.0.1:" in refusals.http_output
    assert (": 0 answered otherwise than the model, 0 without an answer; production's recorded answers differ from "
            f"the model on 0; {len(REFUSALS_SCRIPT) - len(judged)} refused by the receiver at capture, not sent"
            in " ".join(refusals.http_output.split()))
    code, output = run_cli("replay-http", str(refusals.folder), "--target", "http://127.0.0.1:9", "--dry-run")
    assert code == 0
    assert f"Plan: {len(judged)} requests to http://127.0.0.1:9 in " in output
    assert f"{len(REFUSALS_SCRIPT) - len(judged)} lines refused by the receiver at capture are not sent" in output


@pytest.mark.parametrize(("prefix", "status"), [
    pytest.param("/", 200, id="prefix-slash-judges-it-as-the-model-does"),
    pytest.param("/webhooks", 404, id="outside-the-prefix-answered-unjudged"),
])
def test_a_path_opening_with_two_slashes_is_sent_as_captured(dataset: Callable[..., Path], tmp_path: Path,
                                                             prefix: str, status: int) -> None:
    """The model reads `//10.0.0.1/webhooks/wh-a` as a path (T1); so does the receiver, under its prefix or not."""
    planned = planned_for(dataset, [dispatch(1)], [callback("r1", 5, "//10.0.0.1/webhooks/wh-a?pcid=PC-1")])
    assert [(p.target_path, p.expected_outcome, p.expected_status) for p in planned] == [
        ("//10.0.0.1/webhooks/wh-a?pcid=PC-1", "matched", 200)]
    receiver, _ = Receiver.open(dataset(WEBHOOKS, [dispatch(1)], []), tmp_path / "capture",
                                ReceiverConfig(prefix=prefix, replay_clock=True))
    try:
        async def go() -> list[Any]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as client:
                return await send_plan(planned, options(target=httpx.URL("http://127.0.0.1:9")), client=client)
        (attempt,) = asyncio.run(go())
    finally:
        receiver.close()
    assert attempt.status == status
    assert diff_table(planned, [attempt]).agrees.tolist() == [status == 200]
