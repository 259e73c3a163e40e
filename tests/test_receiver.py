"""The reference receiver (webhook_core/live/receiver.py) and its capture log, in process.

Requests go through httpx's ASGI transport: no sockets, so these run in
milliseconds. Only the connection limits and HTTP framing, which live in the
server, are tested over loopback sockets here (one ``serve`` subprocess for the
module); the end-to-end, load and crash tests over HTTP are in test_replay_http.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from webhook_core import connect, load_dataset, replay
from webhook_core.cli import cli
from webhook_core.domain import OK_BODY
from webhook_core.exceptions import CaptureLogError, ReceiverError
from webhook_core.live import capturelog as capturelog_module
from webhook_core.live.capturelog import CaptureLog, read_callbacks
from webhook_core.live.receiver import Receiver, ReceiverConfig
from webhook_core.rules import extraction
from webhook_core.rules.requests import CapturedRequest

from datasets import write_dataset

# Production's 404 body (M6) written out, not imported: a change to the package's constant must fail here.
NOT_FOUND_BODY = b'{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'
WEBHOOKS = [
    {"webhook_id": "wh-a", "advertiser_id": "acme", "wait": True, "timeout_s": 60},
    {"webhook_id": "wh-b", "advertiser_id": "beta", "wait": False},
    {"webhook_id": "wh-r", "advertiser_id": "refco", "wait": True,
     "pairing": [{"identifier": "conversion_id", "location": "json.data.ref"}],
     "status_location": "json.status", "interim_statuses": ["pending"]},
]
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DISPATCHES = [
    {"lead_id": "L1", "conversion_id": "PC-1", "advertiser_id": "acme", "external_id": "E1", "webhook_id": "wh-a",
     "created_at": "2026-11-20T10:00:00Z"},
    {"lead_id": "L2", "conversion_id": "PC-2", "advertiser_id": "beta", "external_id": None, "webhook_id": "wh-b",
     "created_at": "2026-11-20T10:00:00Z"},
    {"lead_id": "L3", "conversion_id": "PC-3", "advertiser_id": "refco", "external_id": None, "webhook_id": "wh-r",
     "created_at": "2026-11-20T10:00:00Z"},
    {"lead_id": "L4", "conversion_id": "PC-4", "advertiser_id": "acme", "external_id": None, "webhook_id": "wh-a",
     "created_at": "2026-11-20T10:00:00Z"},
]
TOKEN = "s3cret"


@pytest.fixture
def sample(dataset: Callable[..., Path]) -> Path:
    return dataset(WEBHOOKS, DISPATCHES, [])


@contextmanager
def opened(folder: Path, capture: Path, **options: Any) -> Iterator[Receiver]:
    receiver, _ = Receiver.open(folder, capture, ReceiverConfig(**options))
    try:
        yield receiver
    finally:
        receiver.close()


Call = tuple[str, str, bytes, list[tuple[str, str]]]


def at(seconds: float) -> list[tuple[str, str]]:
    """Replay-clock header for T0 + seconds."""
    moment = T0 + timedelta(seconds=seconds)
    return [("X-Replay-Received-At", moment.isoformat().replace("+00:00", "Z"))]


def send_all(receiver: Receiver, calls: Sequence[Call], *, concurrently: bool = False) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=receiver)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver.test") as client:
            def one(call: Call) -> Any:
                method, path, body, headers = call
                return client.request(method, path, content=body, headers=headers)
            if concurrently:
                return list(await asyncio.gather(*(one(c) for c in calls)))
            return [await one(c) for c in calls]
    return asyncio.run(go())


def log_lines(capture: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (capture / "callbacks.jsonl").read_text(encoding="utf-8").splitlines()]


# A day of callbacks touching every outcome (replay clock: T0 + seconds).
SCRIPT: list[Call] = [
    ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(-5)),  # early
    ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(5)),  # matched
    ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(6)),  # duplicate
    ("POST", "/webhooks/wh-r", b'{"data":{"ref":"PC-3"},"status":"pending"}', at(7)),  # interim
    ("POST", "/webhooks/wh-r", b'{"data":{"ref":"PC-3"},"status":"ok"}', at(8)),  # matched
    ("GET", "/webhooks/wh-a?external_id=E1&advertiser_id=acme", b"", at(9)),  # duplicate by external ID
    ("POST", "/webhooks/wh-a?pcid=PC-4", b"", at(120)),  # late
    ("POST", "/webhooks/wh-a?pcid=PC-2", b"", at(10)),  # wrong_webhook
    ("POST", "/webhooks/wh-a?pcid=PC-999", b"", at(11)),  # not_found
    ("POST", "/webhooks/wh-a", b"hello", at(12)),  # no_identifiers
    ("POST", "/webhooks/wh-zzz?pcid=PC-1", b"", at(13)),  # unknown_token
    ("POST", "/webhooks/wh-b", b"pcid=PC-2&status=sold", [("Content-Type", "application/x-www-form-urlencoded"),
                                                          *at(14)]),  # matched (form)
]
SCRIPT_STATUSES = [404, 200, 404, 200, 200, 404, 404, 404, 404, 404, 404, 200]


# --------------------------------------------------------------------------- answers (M6)


def test_answers_follow_the_rules_and_every_404_is_byte_identical(sample: Path, tmp_path: Path) -> None:
    """M6: 200 + a small JSON body for matched/interim, one 404 body whatever the reason."""
    with opened(sample, tmp_path / "cap", replay_clock=True) as receiver:
        responses = send_all(receiver, SCRIPT)
    assert [r.status_code for r in responses] == SCRIPT_STATUSES
    for response in responses:
        assert response.content == (OK_BODY if response.status_code == 200 else NOT_FOUND_BODY)
        assert response.headers["content-type"] == "application/json"
    assert "server" not in responses[0].headers  # nothing advertised


def test_paths_outside_the_prefix_get_the_same_404_and_are_logged_unjudged(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap", replay_clock=True, prefix="/hooks/") as receiver:
        outside, inside, bare = send_all(receiver, [
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(5)),  # T1 would find the token: not under the prefix
            ("POST", "/hooks/wh-a?pcid=PC-1", b"", at(6)),
            ("GET", "/favicon.ico", b"", at(7)),
        ])
    assert (outside.status_code, outside.content) == (404, NOT_FOUND_BODY)
    assert (bare.status_code, bare.content) == (404, NOT_FOUND_BODY)
    assert inside.status_code == 200  # the lead was still waiting: the first request was not judged
    lines = log_lines(tmp_path / "cap")
    assert [line["note"] for line in (lines[0], lines[2])] == ["outside /hooks/: not judged"] * 2
    assert "note" not in lines[1]


def test_prefix_must_not_hide_the_admin_endpoint() -> None:
    with pytest.raises(ReceiverError, match="admin"):
        ReceiverConfig(prefix="/admin")
    with pytest.raises(ReceiverError, match="start with '/'"):
        ReceiverConfig(prefix="webhooks")


# --------------------------------------------------------------------------- the capture log


def test_every_request_is_logged_in_the_dataset_format_before_it_is_answered(sample: Path, tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    seen_at_answer: dict[str, bool] = {}
    with opened(sample, capture, replay_clock=True) as receiver:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            request_id = dict(scope["headers"]).get(b"x-replay-request-id", b"").decode()

            async def checked(message: Any) -> None:
                if message["type"] == "http.response.start":  # the line must already be on disk
                    text = (capture / "callbacks.jsonl").read_text(encoding="utf-8")
                    seen_at_answer[request_id] = f'"request_id":"{request_id}"' in text
                await send(message)
            await receiver(scope, receive, checked)

        calls = [(m, p, b, [*h, ("X-Replay-Request-Id", f"r{i}")]) for i, (m, p, b, h) in enumerate(SCRIPT)]
        responses = send_all(app, calls, concurrently=True)  # type: ignore[arg-type]
    assert seen_at_answer == {f"r{i}": True for i in range(len(SCRIPT))}
    lines = log_lines(capture)
    assert {line["request_id"]: line["response_status"] for line in lines} == {
        f"r{i}": r.status_code for i, r in enumerate(responses)}
    first = lines[0]
    assert set(first) == {"received_at", "url", "method", "headers", "body", "request_id", "response_status",
                          "response_body"}
    assert all(name.lower() not in ("x-replay-received-at", "x-replay-request-id") for name, _ in first["headers"])


def test_the_capture_log_is_a_dataset_whose_recorded_answers_are_the_models(sample: Path, tmp_path: Path) -> None:
    """Read back by the dataset loader, the log replays (SQL) to exactly what the receiver answered."""
    capture = tmp_path / "cap"
    with opened(sample, capture, replay_clock=True) as receiver:
        send_all(receiver, SCRIPT)
    folder = tmp_path / "as-dataset"
    folder.mkdir()
    shutil.copy(sample / "webhooks.json", folder)
    shutil.copy(sample / "dispatches.jsonl", folder)
    shutil.copy(capture / "callbacks.jsonl", folder)
    con = connect()
    loaded = load_dataset(con, folder)
    assert [(f.loaded, f.quarantined) for f in loaded.files if f.table == "callbacks"] == [(len(SCRIPT), 0)]
    result = replay(con, loaded.webhooks).callbacks()
    assert (result.status_code == result.recorded_status).all()
    assert sorted(result.outcome) == sorted(["early", "matched", "duplicate", "interim", "matched", "duplicate",
                                             "late", "wrong_webhook", "not_found", "no_identifiers",
                                             "unknown_token", "matched"])
    con.close()


def test_a_restart_answers_as_if_the_receiver_had_never_stopped(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "whole", replay_clock=True) as receiver:
        uninterrupted = [(r.status_code, r.content) for r in send_all(receiver, SCRIPT)]
    for cut in (1, 2, 5, 9):
        capture = tmp_path / f"cut{cut}"
        with opened(sample, capture, replay_clock=True) as receiver:
            before = send_all(receiver, SCRIPT[:cut])
        receiver, report = Receiver.open(sample, capture, ReceiverConfig(replay_clock=True))
        try:
            after = send_all(receiver, SCRIPT[cut:])
        finally:
            receiver.close()
        assert report.log_lines == report.rejudged == cut
        assert [(r.status_code, r.content) for r in before + after] == uninterrupted


def test_a_torn_last_line_is_cut_on_start(sample: Path, tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    with opened(sample, capture, replay_clock=True) as receiver:
        send_all(receiver, SCRIPT[:3])
    with (capture / "callbacks.jsonl").open("ab") as handle:
        torn = b'{"received_at":"2026-11-20T10:00:09Z","url":"/webhooks/wh-a?pcid=PC-'  # killed mid-write
        handle.write(torn)
    receiver, report = Receiver.open(sample, capture, ReceiverConfig(replay_clock=True))
    try:
        assert report.torn_bytes["callbacks.jsonl"] == len(torn)
        assert report.log_lines == 3
        assert [r.status_code for r in send_all(receiver, SCRIPT[3:])] == SCRIPT_STATUSES[3:]
    finally:
        receiver.close()
    assert len(log_lines(capture)) == len(SCRIPT)


def test_a_log_that_the_dataset_no_longer_explains_is_refused_in_one_line(dataset: Callable[..., Path],
                                                                        tmp_path: Path) -> None:
    before = dataset(WEBHOOKS, DISPATCHES, [])
    capture = tmp_path / "cap"
    with opened(before, capture, replay_clock=True) as receiver:
        send_all(receiver, SCRIPT[:2])  # PC-1 matched
    changed = dataset(WEBHOOKS, DISPATCHES[1:], [])  # PC-1's dispatch is gone
    with pytest.raises(ReceiverError) as caught:
        Receiver.open(changed, capture, ReceiverConfig(replay_clock=True))
    message = str(caught.value)
    assert "\n" not in message
    assert "line 2 (request rcv-2) was answered 200 but judges 404 now" in message
    with opened(before, capture, replay_clock=True):  # and the refused start released the folder
        pass


def test_one_capture_folder_serves_one_receiver(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap"), pytest.raises(CaptureLogError, match="in use by another"):
        Receiver.open(sample, tmp_path / "cap", ReceiverConfig())


def test_a_failed_write_stops_judging_and_leaves_the_log_as_answered(sample: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    capture = tmp_path / "cap"
    with opened(sample, capture, replay_clock=True) as receiver:
        send_all(receiver, SCRIPT[:1])
        size = (capture / "callbacks.jsonl").stat().st_size

        def full_disk(fd: int) -> None:
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(capturelog_module.os, "fdatasync", full_disk)
        failed = send_all(receiver, SCRIPT[1:3])
        monkeypatch.undo()
        later = send_all(receiver, SCRIPT[3:4])
    assert [r.status_code for r in failed + later] == [503, 503, 503]
    assert b"capture log unavailable" in failed[0].content
    assert (capture / "callbacks.jsonl").stat().st_size == size  # cut back: what was not answered is not there
    with opened(sample, capture, replay_clock=True) as receiver:  # and the state is as answered: PC-1 still waits
        assert [r.status_code for r in send_all(receiver, SCRIPT[1:3])] == [200, 404]


def test_capture_log_group_commit_keeps_order_and_counts_lines(tmp_path: Path) -> None:
    log = CaptureLog(tmp_path / "cap")
    try:
        async def go() -> None:
            futures = [log.append_callback(f"{i}\n".encode()) for i in range(100)]
            assert len({id(f) for f in futures}) < 100  # batched: many lines share one sync
            await asyncio.gather(*futures)
        asyncio.run(go())
        assert log.callback_lines == 100
    finally:
        log.close()
    assert (tmp_path / "cap" / "callbacks.jsonl").read_text().split() == [str(i) for i in range(100)]


def test_a_hand_edited_capture_log_is_refused(sample: Path, tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    with opened(sample, capture, replay_clock=True) as receiver:
        send_all(receiver, SCRIPT[:2])
    with (capture / "callbacks.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"url": "/webhooks/wh-a"}\n')
    with pytest.raises(CaptureLogError, match="line 3: missing received_at"):
        read_callbacks(capture, sample / "webhooks.json")


# --------------------------------------------------------------------------- the clock


def test_without_replay_clock_the_header_is_ignored(dataset: Callable[..., Path], tmp_path: Path) -> None:
    now = datetime.now(UTC)
    live = [dict(DISPATCHES[0], created_at=(now - timedelta(seconds=1)).isoformat())]
    folder = dataset(WEBHOOKS, live, [])
    with opened(folder, tmp_path / "cap") as receiver:
        (response,) = send_all(receiver, [("POST", "/webhooks/wh-a?pcid=PC-1", b"",
                                           [("X-Replay-Received-At", "2026-11-20T10:00:05Z")])])
    assert response.status_code == 200  # judged now, in time; at the header's time it would be early
    (line,) = log_lines(tmp_path / "cap")
    assert datetime.fromisoformat(line["received_at"]) >= now
    assert ["x-replay-received-at", "2026-11-20T10:00:05Z"] in line["headers"]  # an ordinary header, kept


def test_replay_clock_refuses_a_request_without_a_time(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap", replay_clock=True) as receiver:
        missing, bad, good = send_all(receiver, [
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", []),
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", [("X-Replay-Received-At", "yesterday")]),
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(5)),
        ])
    assert (missing.status_code, bad.status_code, good.status_code) == (400, 400, 200)
    assert [line["response_status"] for line in log_lines(tmp_path / "cap")] == [400, 400, 200]


def test_replay_clock_refuses_a_lead_out_of_order_and_takes_other_leads_in_any_order(sample: Path,
                                                                                   tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap", replay_clock=True) as receiver:
        statuses = [r.status_code for r in send_all(receiver, [
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(50)),  # L1 matched at +50 s
            ("POST", "/webhooks/wh-b?pcid=PC-2", b"", at(10)),  # another lead, earlier: fine
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(20)),  # L1 again, earlier than +50 s: refused
            ("POST", "/webhooks/wh-a?pcid=PC-999", b"", at(1)),  # no lead: no order to keep
        ])]
    assert statuses == [200, 200, 409, 404]
    refused = log_lines(tmp_path / "cap")[2]
    assert refused["note"] == "refused: out of order for its lead"
    receiver, report = Receiver.open(sample, tmp_path / "cap", ReceiverConfig(replay_clock=True))
    receiver.close()
    assert (report.log_lines, report.rejudged) == (4, 3)  # the refusal is skipped on rebuild


def test_replay_clock_answers_a_retry_again_without_judging_it_twice(sample: Path, tmp_path: Path) -> None:
    call = ("POST", "/webhooks/wh-a?pcid=PC-1", b"", [*at(5), ("X-Replay-Request-Id", "req-1")])
    with opened(sample, tmp_path / "cap", replay_clock=True) as receiver:
        first, retry = send_all(receiver, [call, call])
    assert (first.status_code, retry.status_code) == (200, 200)  # judged again it would be a duplicate
    assert len(log_lines(tmp_path / "cap")) == 1
    with opened(sample, tmp_path / "cap", replay_clock=True) as receiver:  # also after a restart
        (again,) = send_all(receiver, [call])
    assert again.status_code == 200
    assert len(log_lines(tmp_path / "cap")) == 1


# --------------------------------------------------------------------------- bodies


def test_oversized_bodies_get_413_and_are_logged_without_the_body(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap", replay_clock=True, max_body_bytes=100) as receiver:
        exact, over, after = send_all(receiver, [
            ("POST", "/webhooks/wh-b", b"pcid=PC-2&x=" + b"a" * 88, at(1)),  # 100 bytes: fine
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"x" * 5000, at(2)),
            ("POST", "/webhooks/wh-a?pcid=PC-1", b"", at(3)),
        ])
    assert (exact.status_code, over.status_code, after.status_code) == (200, 413, 200)  # PC-1 was not judged
    line = log_lines(tmp_path / "cap")[1]
    assert line["body"] is None
    assert line["response_status"] == 413
    assert line["note"] == "body of 5000 bytes over the 100-byte limit: not kept, not judged"


@pytest.mark.parametrize("body", [
    b'{"pcid": "PC-1"',  # truncated JSON
    b"[" * 50_000 + b"]" * 50_000,  # nested past Python's recursion limit (B2)
    b'{"pcid": 1e999999, "x": NaN}',
    b"\xff\xfe pcid=PC-1 \xc3\x28",  # not UTF-8
    b"pcid=PC\x00-1",
    b'{"pcid": "' + b"9" * 100_000 + b'"}',
    b"%%%=%ZZ&pcid=%FF",
])
def test_malformed_bodies_are_answered_by_the_rules_never_500(sample: Path, tmp_path: Path, body: bytes) -> None:
    capture = tmp_path / "cap"
    with opened(sample, capture, replay_clock=True, max_body_bytes=1 << 20) as receiver:
        (response,) = send_all(receiver, [("POST", "/webhooks/wh-a", body, [("Content-Type", "application/json"),
                                                                            *at(5)])])
    assert response.status_code == 404
    assert response.content == NOT_FOUND_BODY
    receiver, report = Receiver.open(sample, capture, ReceiverConfig(replay_clock=True))  # rebuilds identically
    receiver.close()
    assert report.rejudged == 1


def lines_run_to_drop_trailing_commas(body: str) -> int:
    """Python lines executed by the trailing-comma step while the receiver parses ``body`` (on its event loop)."""
    code = extraction._drop_trailing_commas.__code__
    count = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if frame.f_code is not code:
            return None
        if event == "line":
            count += 1
        return tracer

    request = CapturedRequest("r", T0, "/webhooks/wh-r", "POST", (("content-type", "application/json"),), body, 1)
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        parsed = extraction.parse_request(request)
    finally:
        sys.settrace(previous)
    assert parsed.body_kind is extraction.BodyKind.JSON
    assert parsed.json_body["data"]["ref"] == "PC-3"
    return count


def test_a_trailing_comma_costs_no_python_work_per_character() -> None:
    """B2's trailing comma is dropped by re and str methods (C), not a Python loop over the body."""
    def body(items: int) -> str:
        listed = ", ".join(f'{{"id": "item-{i}", "note": "a \\"quoted\\", [x], {{y}}", "n": {i}}}'
                           for i in range(items))
        return f'{{"data": {{"ref": "PC-3", "items": [{listed}],}}, "status": "ok",}}'
    assert lines_run_to_drop_trailing_commas(body(10)) == lines_run_to_drop_trailing_commas(body(10_000))


def reference_drop_trailing_commas(text: str) -> str:
    """B2's rule read one character at a time: the meaning the fast version must keep."""
    out: list[str] = []
    in_string = escaped = False
    pending, last = -1, ""
    for char in text:
        if in_string:
            out.append(char)
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
            last = '"'
            continue
        if char not in " \t\r\n":
            if char in "]}" and pending >= 0:
                out[pending] = ""
            pending = len(out) if char == "," and last not in ("", "[", "{", ",", ":") else -1
            in_string, last = char == '"', char
        out.append(char)
    return "".join(out)


def test_trailing_commas_are_dropped_exactly_where_b2_says() -> None:
    def parsed(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return "invalid"
    pieces = ['"', "\\", ",", "]", "}", "[", "{", ":", " ", "\n", "1", "a", '"a"', "null", '"k":', "é"]
    rng = random.Random(20)
    texts = ['{"a": 1,}', "[1, 2 ,]", "[,]", "{,}", '{"a":,}', "[1,,]", '["x,]",]', '["\\\\",]', '["\\",]"]',
             "  ,]", '{"a": [1,], "b": {"c": "}",},}']
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))) for _ in range(20_000)]
    for text in texts:
        assert parsed(extraction._drop_trailing_commas(text)) == parsed(reference_drop_trailing_commas(text)), text


# --------------------------------------------------------------------------- admin


def register(lead: str, conversion: str, created: str | None = "2026-11-20T10:00:00Z", **extra: Any) -> bytes:
    document = {"lead_id": lead, "conversion_id": conversion, "advertiser_id": "acme", "external_id": None,
                "webhook_id": "wh-a", **extra}
    if created is not None:
        document["created_at"] = created
    return json.dumps(document).encode()


BEARER = [("Authorization", f"Bearer {TOKEN}")]


def test_admin_endpoint_needs_the_bearer_token(sample: Path, tmp_path: Path) -> None:
    body = register("L9", "PC-9")
    with opened(sample, tmp_path / "off") as receiver:
        (off,) = send_all(receiver, [("POST", "/admin/waiting-webhooks", body, BEARER)])
    with opened(sample, tmp_path / "on", admin_token=TOKEN) as receiver:
        missing, wrong, basic, get, health = send_all(receiver, [
            ("POST", "/admin/waiting-webhooks", body, []),
            ("POST", "/admin/waiting-webhooks", body, [("Authorization", "Bearer nope")]),
            ("POST", "/admin/waiting-webhooks", body, [("Authorization", f"Basic {TOKEN}")]),
            ("GET", "/admin/waiting-webhooks", b"", BEARER),
            ("GET", "/admin/health", b"", []),
        ])
    assert off.status_code == 403 and b"--admin-token" in off.content
    assert (missing.status_code, wrong.status_code, basic.status_code) == (401, 401, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert get.status_code == 405
    assert health.status_code == 200
    assert not (tmp_path / "on" / "registrations.jsonl").read_bytes()
    assert not (tmp_path / "on" / "callbacks.jsonl").read_bytes()  # admin requests are not callbacks


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{", 400, "not valid JSON"),
    (b"[]", 400, "send one JSON object"),
    (register("L9", "PC-9", colour="red"), 400, "unknown field 'colour'"),
    (register("", "PC-9"), 400, "field 'lead_id': required"),
    (register("L9", "PC-9", "soon"), 400, "field 'created_at': not an ISO 8601 timestamp"),
    (register("L9", "PC-9", None), 400, "field 'created_at': required"),  # a replay has no "now"
    (register("L9", "PC-9", webhook_id="wh-nope"), 400, "unknown webhook_id"),
    (register("L9", "PC-1"), 409, "conversion_id 'PC-1' is already registered"),
])
def test_admin_refuses_a_bad_registration_with_a_reason(sample: Path, tmp_path: Path, body: bytes, status: int,
                                                        message: str) -> None:
    with opened(sample, tmp_path / "cap", admin_token=TOKEN, replay_clock=True) as receiver:
        (response,) = send_all(receiver, [("POST", "/admin/waiting-webhooks", body, BEARER)])
    assert response.status_code == status
    assert message in response.json()["message"]


def test_registrations_take_effect_in_order_and_survive_a_restart(sample: Path, tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    callback = ("POST", "/webhooks/wh-a?pcid=PC-9", b"", at(30))
    with opened(sample, capture, admin_token=TOKEN, replay_clock=True) as receiver:
        before, created, retry, matched = send_all(receiver, [
            callback,  # not registered yet: not_found
            ("POST", "/admin/waiting-webhooks", register("L9", "PC-9"), BEARER),  # created_at before that callback
            ("POST", "/admin/waiting-webhooks", register("L9", "PC-9"), BEARER),  # a retry of the same
            ("POST", "/webhooks/wh-a?pcid=PC-9", b"", at(31)),
        ])
    assert [r.status_code for r in (before, created, retry, matched)] == [404, 201, 200, 200]
    assert created.json() == {"status": "registered", "lead_id": "L9", "conversion_id": "PC-9", "webhook_id": "wh-a",
                              "created_at": "2026-11-20T10:00:00.000000Z", "deadline": "2026-11-20T10:01:00.000000Z"}
    assert json.loads((capture / "registrations.jsonl").read_text())["after_callback"] == 1
    # Registered first on rebuild, the first callback would judge 200 and the start would be refused.
    with opened(sample, capture, admin_token=TOKEN, replay_clock=True) as receiver:
        duplicate, conflict = send_all(receiver, [
            ("POST", "/webhooks/wh-a?pcid=PC-9", b"", at(32)),
            ("POST", "/admin/waiting-webhooks", register("L9-other", "PC-9"), BEARER),
        ])
    assert (duplicate.status_code, conflict.status_code) == (404, 409)


def test_registering_a_dataset_dispatch_again_is_a_retry_not_a_conflict(sample: Path, tmp_path: Path) -> None:
    """docs/http.md: posting the same registration again answers 200, whether it came from the dataset or not."""
    same = dict(DISPATCHES[0])
    other = dict(same, lead_id="L1-other")
    with opened(sample, tmp_path / "cap", admin_token=TOKEN, replay_clock=True) as receiver:
        again, conflict = send_all(receiver, [
            ("POST", "/admin/waiting-webhooks", json.dumps(same).encode(), BEARER),
            ("POST", "/admin/waiting-webhooks", json.dumps(other).encode(), BEARER),
        ])
    assert (again.status_code, again.json()) == (200, {
        "status": "already registered", "lead_id": "L1", "conversion_id": "PC-1", "webhook_id": "wh-a",
        "created_at": "2026-11-20T10:00:00.000000Z"})
    assert (conflict.status_code, conflict.json()["message"]) == (409, "conversion_id 'PC-1' is already registered")
    assert not (tmp_path / "cap" / "registrations.jsonl").read_bytes()  # nothing new to log


def test_a_registration_without_created_at_is_made_now(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap", admin_token=TOKEN) as receiver:
        created, matched = send_all(receiver, [
            ("POST", "/admin/waiting-webhooks", register("L9", "PC-9", None), BEARER),
            ("POST", "/webhooks/wh-a?pcid=PC-9", b"", []),
        ])
    assert (created.status_code, matched.status_code) == (201, 200)
    assert datetime.fromisoformat(created.json()["created_at"]) <= datetime.now(UTC)


def test_capture_files_are_created_durably(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "new" / "cap"):
        names = sorted(os.listdir(tmp_path / "new" / "cap"))
    assert names == [".lock", ".webhook-audit-capture", "callbacks.jsonl", "registrations.jsonl"]


# --------------------------------------------------------------------------- the capture folder is the receiver's


def test_a_new_capture_folder_is_private_and_marked(sample: Path, tmp_path: Path) -> None:
    with opened(sample, tmp_path / "cap"):
        pass
    assert stat.S_IMODE((tmp_path / "cap").stat().st_mode) == 0o700
    assert {stat.S_IMODE((tmp_path / "cap" / name).stat().st_mode) for name in os.listdir(tmp_path / "cap")} == {0o600}
    assert json.loads((tmp_path / "cap" / ".webhook-audit-capture").read_bytes())["version"] == 1
    empty = tmp_path / "empty"  # e.g. made by mktemp -d: taken, and marked
    empty.mkdir()
    with opened(sample, empty):
        pass
    assert (empty / ".webhook-audit-capture").read_bytes() == (tmp_path / "cap" / ".webhook-audit-capture").read_bytes()


def refused(sample: Path, capture: Path) -> str:
    with pytest.raises(CaptureLogError) as caught:
        Receiver.open(sample, capture, ReceiverConfig())
    return str(caught.value)


def test_a_symbolic_link_in_a_capture_folder_is_refused_and_its_target_left_alone(sample: Path, tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    with opened(sample, capture, replay_clock=True) as receiver:
        send_all(receiver, SCRIPT[:1])
    elsewhere = tmp_path / "precious.jsonl"
    content = b'{"line":1}\n{"line":2,"no newline yet":true}'  # a torn tail, if it were the receiver's
    elsewhere.write_bytes(content)
    (capture / "callbacks.jsonl").unlink()
    (capture / "callbacks.jsonl").symlink_to(elsewhere)
    assert refused(sample, capture) == (f"{capture / 'callbacks.jsonl'}: a symbolic link; the receiver writes only "
                                        "files it created: give a new --capture-dir (serve creates it)")
    assert elsewhere.read_bytes() == content
    linked = tmp_path / "linked"  # the folder itself
    linked.symlink_to(capture, target_is_directory=True)
    assert refused(sample, linked) == (f"{linked}: a symbolic link; the capture folder must be a real folder the "
                                       "receiver owns: give its real path or a new --capture-dir")


def test_a_log_the_receiver_did_not_create_is_neither_cut_nor_adopted(sample: Path, tmp_path: Path) -> None:
    capsym = tmp_path / "capsym"  # no marker: the reviewer's folder, a link to another file in it
    capsym.mkdir()
    elsewhere = tmp_path / "other.jsonl"
    elsewhere.write_bytes(b'{"a":1}\n{"b":')
    (capsym / "callbacks.jsonl").symlink_to(elsewhere)
    assert refused(sample, capsym) == (
        f"{capsym}: holds callbacks.jsonl but no .webhook-audit-capture marker, so webhook-audit serve did not "
        "create this log and will not write to it or cut it; give a new --capture-dir (serve creates it)")
    assert elsewhere.read_bytes() == b'{"a":1}\n{"b":'
    assert sorted(os.listdir(capsym)) == ["callbacks.jsonl"]  # not even a lock file was made
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    assert refused(sample, other) == (f"{other}: not empty and not a capture folder (no .webhook-audit-capture "
                                      "marker); give a new or empty --capture-dir")


def test_a_dataset_folder_is_never_a_capture_folder(dataset: Callable[..., Path], tmp_path: Path) -> None:
    folder = dataset(WEBHOOKS, DISPATCHES, [{"request_id": "r1", "received_at": "2026-11-20T10:00:05Z",
                                             "url": "/webhooks/wh-a?pcid=PC-1", "method": "POST"}])
    log = folder / "callbacks.jsonl"
    log.write_bytes(log.read_bytes().rstrip(b"\n"))  # its last line has no newline: not a torn tail to cut
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    assert refused(folder, folder) == (f"{folder}: holds a dataset (dispatches.jsonl, webhooks.json); the capture "
                                       "folder is the receiver's own: give another --capture-dir")
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before


def test_a_capture_folder_others_can_write_to_is_refused(sample: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert refused(sample, shared) == (f"{shared}: writable by every user, so anyone could change the log; give a "
                                       "new --capture-dir (serve creates it private, mode 0700)")
    assert not os.listdir(shared)


def test_a_marker_of_another_format_is_refused(sample: Path, tmp_path: Path) -> None:
    capture = tmp_path / "cap"
    with opened(sample, capture):
        pass
    (capture / ".webhook-audit-capture").write_text('{"format":"webhook-audit capture folder","version":2}\n')
    assert refused(sample, capture) == (f"{capture / '.webhook-audit-capture'}: not a marker this version of "
                                        "webhook-audit wrote; give a new --capture-dir (serve creates it)")


# --------------------------------------------------------------------------- over loopback sockets: the server

LIMIT_S = 1.0  # the test server's header, body and idle timeouts
MAX_CONNECTIONS = 12


@dataclass(frozen=True)
class Live:
    port: int
    capture: Path

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def exchange(self, request: bytes) -> bytes:
        """Send ``request`` on a new connection and read until the server closes it."""
        with self.connect() as sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def logged(self, url: str) -> list[dict[str, Any]]:
        return [line for line in log_lines(self.capture) if line["url"] == url]


def start_serve(folder: Path, capture: Path, output: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "WEBHOOK_AUDIT_ADMIN_TOKEN"}
    with output.open("wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "webhook_core.cli", "serve", str(folder), "--port", "0",
                                 "--capture-dir", str(capture), *args],
                                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("live")
    folder = write_dataset(root / "ds", WEBHOOKS, DISPATCHES, [])
    output = root / "serve.out"
    limits = [f"--{name}-timeout" for name in ("header", "body", "idle")]
    proc = start_serve(folder, root / "cap", output, *(a for flag in limits for a in (flag, str(LIMIT_S))),
                       "--max-connections", str(MAX_CONNECTIONS))
    try:
        deadline = time.monotonic() + 60
        while (found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", output.read_text("utf-8"))) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not start: {output.read_text('utf-8')[-2000:]}")
            time.sleep(0.05)
        yield Live(int(found.group(1)), root / "cap")
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _closed_by_server(sock: socket.socket) -> bool:
    """For a non-blocking socket."""
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_slow_and_silent_clients_are_cut_off_and_others_answered_meanwhile(live: Live) -> None:
    """A slowloris cannot hold the receiver: each phase of a request has a deadline that trickling does not extend."""
    started = time.monotonic()
    slow: dict[str, socket.socket] = {}
    for i in range(3):
        slow[f"silent {i}"] = live.connect()
        slow[f"slow headers {i}"] = live.connect()
        slow[f"slow headers {i}"].sendall(b"POST /webhooks/wh-a HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        slow[f"slow body {i}"] = live.connect()
        slow[f"slow body {i}"].sendall(b"POST /webhooks/wh-a HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n")
    slow["kept alive"] = live.connect()
    slow["kept alive"].sendall(b"GET /admin/health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert slow["kept alive"].recv(65536).startswith(b"HTTP/1.1 200 ")
    for sock in slow.values():
        sock.setblocking(False)
    closed_after: dict[str, float] = {}
    answered_in = None
    try:
        while len(closed_after) < len(slow) and time.monotonic() - started < LIMIT_S + 4:
            for name, sock in slow.items():
                if name in closed_after:
                    continue
                try:
                    if name.startswith("slow"):
                        sock.send(b"x")  # a byte every 0.1 s: never done, never silent
                    if _closed_by_server(sock):
                        closed_after[name] = time.monotonic() - started
                except OSError:
                    closed_after[name] = time.monotonic() - started
            if answered_in is None and time.monotonic() - started > LIMIT_S / 2:  # all ten held open by now
                assert not closed_after
                asked = time.monotonic()
                response = httpx.post(f"http://127.0.0.1:{live.port}/webhooks/wh-a?pcid=PC-999", timeout=5)
                answered_in = time.monotonic() - asked
                assert (response.status_code, response.content) == (404, NOT_FOUND_BODY)
            time.sleep(0.1)
    finally:
        for sock in slow.values():
            sock.close()
    assert set(closed_after) == set(slow)
    assert all(LIMIT_S * 0.9 <= after <= LIMIT_S + 2 for after in closed_after.values()), closed_after
    assert answered_in is not None and answered_in < LIMIT_S / 2
    assert not live.logged("/webhooks/wh-a")  # nothing was answered to them, so nothing is logged


def test_a_connection_over_the_limit_is_answered_503(live: Live) -> None:
    time.sleep(0.2)  # the server finishes closing the connections of the tests before
    held = [live.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:  # each one answered, so each is open on the server's side too
            sock.sendall(b"GET /admin/health HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        refused = live.exchange(b"GET /admin/health HTTP/1.1\r\nHost: t\r\n\r\n")
    finally:
        for sock in held:
            sock.close()
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"connection: close" in head
    assert json.loads(body) == {"code": 503, "message": "too many open connections; try again later"}
    time.sleep(0.2)
    assert live.exchange(b"GET /admin/health HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(("head", "message"), [
    (b"POST {url} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "Content-Length and Transfer-Encoding together make the body's length ambiguous; send one"),
    (b"POST {url} HTTP/9.9\r\nHost: t\r\nContent-Length: 0\r\n\r\n", "HTTP/9.9 is not served; send HTTP/1.1"),
    (b"GET {url} HTTP/2.0\r\nHost: t\r\n\r\n", "HTTP/2.0 is not served; send HTTP/1.1"),
])
def test_ambiguous_framing_and_unknown_versions_are_refused_400_and_logged_unjudged(live: Live, head: bytes,
                                                                                    message: str) -> None:
    url = f"/webhooks/wh-a?pcid=PC-1&case={len(head)}"
    answer = live.exchange(head.replace(b"{url}", url.encode()))  # returns once the server closed
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 ") and b"connection: close" in status
    assert json.loads(body) == {"code": 400, "message": message}
    (line,) = live.logged(url)
    assert (line["response_status"], line["note"]) == (400, f"refused: {message}: not judged")
    health = live.exchange(b"GET /admin/health HTTP/9.9\r\nHost: t\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 400 ")  # the admin endpoint refuses them too (and logs no callback)


def test_replay_clock_refuses_to_listen_outside_loopback(sample: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --replay-clock the caller sets the clock: never reachable from another host."""
    served: list[object] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: served.append(sockets))
    result = CliRunner().invoke(cli, ["serve", str(sample), "--capture-dir", str(tmp_path / "cap"), "--replay-clock",
                                      "--host", "0.0.0.0", "--port", "0"])
    assert (result.exit_code, served) == (1, [])
    assert result.output.strip().splitlines() == [
        "Error: --host 0.0.0.0: not a loopback address (localhost, 127.0.0.0/8, ::1), and under --replay-clock "
        "every caller sets the receiver's clock; listen on 127.0.0.1 or drop --replay-clock"]
    assert not (tmp_path / "cap").exists()  # refused before anything was loaded or created
