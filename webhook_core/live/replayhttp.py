"""Replaying a dataset's captured callbacks over HTTP, and diffing the answers.

Every loaded callback is sent to a target (method, path and query rebased onto
the target URL, headers minus hop-by-hop ones, body byte for byte) with
``httpx.AsyncClient``. The callbacks of one lead go in ``(received_at, seq)``
order, one after the other; different leads go concurrently. The answers are
compared per request with the model (the SQL replay) and with production's
recorded answer. Design: docs/http.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import httpx
import pandas as pd

from webhook_core.audit.replay import replay
from webhook_core.domain import NOT_FOUND_BODY, Outcome
from webhook_core.exceptions import ReplayHttpError
from webhook_core.live.wire import REPLAY_CLOCK_HEADER, REPLAY_ID_HEADER
from webhook_core.rules.settings import WebhookVersions
from webhook_core.timeutil import iso_utc

__all__ = [
    "ATTEMPT_COLUMNS",
    "DIFF_COLUMNS",
    "HOP_BY_HOP",
    "Attempt",
    "PlannedRequest",
    "SendOptions",
    "attempts_table",
    "check_target",
    "diff_table",
    "disagreement_summary",
    "forwarded_headers",
    "parse_rate",
    "plan_requests",
    "plan_summary",
    "rebase_path",
    "refused_at_capture",
    "send_plan",
]

#: Not forwarded: hop-by-hop headers (RFC 9110 7.6.1), and the framing/routing ones
#: the client must compute for the request it actually sends (Host, Content-Length).
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", REPLAY_CLOCK_HEADER, REPLAY_ID_HEADER,
})

DIFF_COLUMNS = (
    "seq", "request_id", "received_at", "webhook_id", "token", "lead_id", "method", "target_path",
    "expected_outcome", "expected_status", "recorded_status", "actual_status", "actual_body", "error", "attempts",
    "latency_ms", "agrees", "recorded_agrees",
)
ATTEMPT_COLUMNS = ("seq", "request_id", "attempt", "started_at", "latency_ms", "status", "body", "error", "retryable")

_ABSOLUTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# Answers worth another try: the request may never have reached the target.
_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One captured callback, as it will be sent, with what the model expects."""

    seq: int
    request_id: str
    key: str  # X-Replay-Request-Id: the request ID, made unique with the seq when the dataset repeats it
    received_at: datetime
    lane: str  # callbacks of one lane go one after the other: the resolved lead, else the request alone
    webhook_id: str | None
    token: str | None
    lead_id: str | None
    method: str
    target_path: str  # path and query as sent, before the target's base path
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expected_outcome: str
    expected_status: int
    recorded_status: int | None


@dataclass(frozen=True, slots=True)
class Attempt:
    seq: int
    request_id: str
    attempt: int  # 1-based
    started_at: datetime
    latency_ms: float
    status: int | None
    body: bytes | None
    error: str | None
    retryable: bool


@dataclass(frozen=True, slots=True)
class SendOptions:
    target: httpx.URL
    concurrency: int = 8
    rate: float | None = None  # requests (attempts) per second, all lanes together
    retries: int = 3  # further attempts after a connection error or timeout
    backoff_s: float = 0.2  # first wait; doubles per retry
    max_backoff_s: float = 5.0
    timeout_s: float = 10.0
    replay_clock: bool = True


# --------------------------------------------------------------------------- target


def check_target(target: str, *, allow_remote: bool) -> httpx.URL:
    """The target as a base URL; outside loopback only with ``allow_remote``.

    Loopback is judged from the URL alone (``localhost``, 127.0.0.0/8, ``::1``), not
    by resolving a name: a name that resolves to loopback today may not tomorrow.
    """
    try:
        url = httpx.URL(target)
    except httpx.InvalidURL as exc:
        raise ReplayHttpError(f"--target {target}: not a URL ({exc})") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ReplayHttpError(f"--target {target}: give an http:// or https:// URL, e.g. http://127.0.0.1:8080")
    if url.query or url.fragment:
        raise ReplayHttpError(f"--target {target}: give a base URL without ?query or #fragment; each callback's "
                              "own path and query are appended to it")
    if not allow_remote and not _is_loopback(url.host):
        raise ReplayHttpError(f"--target {target}: {url.host} is not a loopback address (localhost, 127.0.0.0/8, "
                              "::1) and replay-http sends every captured callback, with its IDs, to the target; "
                              "pass --allow-remote if you mean to")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_rate(text: str) -> float:
    """``200`` or ``200/s`` → 200.0 requests per second."""
    number = text.strip().removesuffix("/s").strip()
    try:
        rate = float(number)
    except ValueError:
        raise ReplayHttpError(f"--rate {text!r}: write requests per second, e.g. 200/s") from None
    if not 0 < rate < float("inf"):
        raise ReplayHttpError(f"--rate {text!r}: must be a positive number of requests per second")
    return rate


# --------------------------------------------------------------------------- plan


def plan_requests(con: duckdb.DuckDBPyConnection, webhooks: WebhookVersions) -> list[PlannedRequest]:
    """Judge the loaded ``callbacks`` with the SQL replay and shape each as it will be sent.

    Returned in ``(received_at, seq)`` order. Lines a receiver refused at capture (outcome
    ``refused``) are left out: they were never judged, so the model has no answer to hold a
    target to, and sent again most would be judged (a 413's body was not kept; a 400 for a
    missing replay clock would now carry one). :func:`refused_at_capture` counts them.
    """
    replay(con, webhooks)
    rows = con.execute(f"""
        SELECT o.seq, o.request_id, o.received_at, o.webhook_id, o.token, o.lead_id, c.method, c.url, c.headers,
               c.body, o.outcome, o.status_code, o.recorded_status,
               count(*) OVER (PARTITION BY o.request_id) > 1 AS repeated
        FROM callback_outcomes o JOIN callbacks c USING (seq)
        WHERE o.outcome <> '{Outcome.REFUSED.value}'
        ORDER BY o.ord
    """).fetchall()
    planned = []
    for (seq, request_id, received_at, webhook_id, token, lead_id, method, url, headers, body, outcome, status,
         recorded, repeated) in rows:
        pairs = tuple((h["name"], h["value"]) for h in headers)
        planned.append(PlannedRequest(
            seq=seq, request_id=request_id, key=f"{request_id}#{seq}" if repeated else request_id,
            received_at=received_at,
            # Only a resolved lead has state that order can change (docs/http.md, "Ordering").
            lane=f"lead:{lead_id}" if lead_id is not None else f"request:{seq}",
            webhook_id=webhook_id, token=token, lead_id=lead_id, method=method, target_path=rebase_path(url),
            headers=forwarded_headers(pairs), body=(body or "").encode("utf-8"),
            expected_outcome=outcome, expected_status=status, recorded_status=recorded,
        ))
    return planned


def refused_at_capture(con: duckdb.DuckDBPyConnection) -> int:
    """How many loaded lines :func:`plan_requests` left out as refused at capture (call it after that)."""
    row = con.execute(f"SELECT count(*) FROM callback_outcomes WHERE outcome = '{Outcome.REFUSED.value}'").fetchone()
    return 0 if row is None else int(row[0])


def rebase_path(url: str) -> str:
    """The path and query of a captured URL (T1: absolute or a path), as sent to the target.

    ``.`` and ``..`` segments are sent as ``%2E`` / ``%2E%2E``: the token is read
    percent-decoded (T1), so it is unchanged, and no client or server can collapse
    them as dot segments (httpx would).
    """
    url = url.split("#", 1)[0]
    before, question, query = url.partition("?")
    if _ABSOLUTE_URL.match(before):
        after_scheme = before.split("://", 1)[1]
        slash = after_scheme.find("/")
        before = "" if slash < 0 else after_scheme[slash:]
    if not before.startswith("/"):
        before = "/" + before
    segments = ["%2E" if s == "." else "%2E%2E" if s == ".." else s for s in before.split("/")]
    return "/".join(segments) + (question + query)


def forwarded_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Captured headers minus hop-by-hop ones (and any the Connection header names), order and repeats kept."""
    named = {token.strip().lower() for n, v in headers if n.lower() == "connection" for token in v.split(",")}
    return tuple((n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() not in named)


def plan_summary(planned: Sequence[PlannedRequest]) -> pd.DataFrame:
    """Requests per webhook (the token, for unknown tokens) and method: the dry run's table."""
    counts = Counter((p.webhook_id or f"{p.token} (unknown token)", p.method) for p in planned)
    frame = pd.DataFrame([(w, m, n) for (w, m), n in sorted(counts.items())],
                         columns=["webhook", "method", "requests"])
    return frame


# --------------------------------------------------------------------------- send


async def send_plan(planned: Sequence[PlannedRequest], options: SendOptions, *,
                    on_done: Callable[[PlannedRequest, Attempt], None] | None = None,
                    client: httpx.AsyncClient | None = None) -> list[Attempt]:
    """Send every planned request; return every attempt, in the order they finished.

    Lanes are taken in the order of their first request by ``concurrency``
    workers; a worker sends its lane's requests one after the other, each only
    after the previous one was answered (or gave up).
    """
    lanes: dict[str, list[PlannedRequest]] = defaultdict(list)
    for request in planned:
        lanes[request.lane].append(request)
    queue: asyncio.Queue[list[PlannedRequest]] = asyncio.Queue()
    for lane in lanes.values():  # dicts keep insertion order: lanes by their first request
        queue.put_nowait(lane)
    attempts: list[Attempt] = []
    pacer = _Pacer(options.rate)
    target = options.target
    base = f"{target.scheme}://{target.netloc.decode('ascii')}{target.raw_path.decode('ascii').rstrip('/')}"

    async def worker(http: httpx.AsyncClient) -> None:
        while True:
            try:
                lane = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            for request in lane:
                final = await _send_with_retries(http, request, base, options, pacer, attempts)
                if on_done is not None:
                    on_done(request, final)

    own = client is None
    http = client or httpx.AsyncClient(
        timeout=options.timeout_s,
        limits=httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency),
        trust_env=False,  # no proxy from the environment: the target is exactly --target
    )
    try:
        await asyncio.gather(*(worker(http) for _ in range(max(1, options.concurrency))))
    finally:
        if own:
            await http.aclose()
    return attempts


async def _send_with_retries(http: httpx.AsyncClient, request: PlannedRequest, base: str, options: SendOptions,
                             pacer: _Pacer, attempts: list[Attempt]) -> Attempt:
    headers = [(n.encode("utf-8"), v.encode("utf-8")) for n, v in request.headers]
    if options.replay_clock:
        headers += [(b"X-Replay-Received-At", iso_utc(request.received_at).encode("ascii")),
                    (b"X-Replay-Request-Id", request.key.encode("utf-8"))]
    try:
        # httpx percent-encodes what HTTP cannot carry (spaces, non-ASCII): the same
        # values once decoded (L1, L5, T1).
        url = httpx.URL(base + request.target_path)
    except httpx.InvalidURL as exc:  # e.g. a control character: it cannot go on the wire as captured
        attempt = Attempt(request.seq, request.request_id, 1, datetime.now(UTC), 0.0, None, None,
                          f"not sent: {_describe(exc)}", False)
        attempts.append(attempt)
        return attempt
    number = 0
    while True:
        number += 1
        await pacer.wait()
        started = datetime.now(UTC)
        clock = time.perf_counter()
        status: int | None = None
        body: bytes | None = None
        error: str | None = None
        retryable = False
        try:
            # A Request built directly, not client.build_request: no default headers
            # (Accept, User-Agent, ...) or cookies are added to what was captured.
            outgoing = httpx.Request(request.method, url, headers=headers, content=request.body,
                                     extensions={"timeout": httpx.Timeout(options.timeout_s).as_dict()})
            response = await http.send(outgoing)
            status, body = response.status_code, response.content
        except _RETRYABLE as exc:
            error, retryable = _describe(exc), True
        except httpx.HTTPError as exc:  # e.g. a header h11 will not send: trying again will not help
            error = _describe(exc)
        attempt = Attempt(request.seq, request.request_id, number, started, (time.perf_counter() - clock) * 1000,
                          status, body, error, retryable)
        attempts.append(attempt)
        if not retryable or number > options.retries:
            return attempt
        await asyncio.sleep(min(options.backoff_s * 2 ** (number - 1), options.max_backoff_s))


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Pacer:
    """At most ``rate`` attempts per second across all workers (none: unpaced)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 0.0 if rate is None else 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        if self.interval == 0.0:
            return
        now = time.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


# --------------------------------------------------------------------------- diff


def diff_table(planned: Sequence[PlannedRequest], attempts: Sequence[Attempt]) -> pd.DataFrame:
    """Per request: expected (the model), recorded (production), actual (the target), and whether they agree.

    ``agrees``: the target answered the model's status, and for a 404 exactly the
    production body (M6; a HEAD answer has no body). ``recorded_agrees``: production's
    recorded status equals the model's (empty when nothing was recorded).
    """
    final: dict[int, Attempt] = {}
    tries: Counter[int] = Counter()
    for attempt in attempts:
        tries[attempt.seq] += 1
        if attempt.seq not in final or attempt.attempt > final[attempt.seq].attempt:
            final[attempt.seq] = attempt
    rows = []
    for request in planned:
        last = final.get(request.seq)
        status = last.status if last else None
        body = last.body if last else None
        agrees = status == request.expected_status and (
            status != 404 or request.method == "HEAD" or body == NOT_FOUND_BODY)
        rows.append((
            request.seq, request.request_id, request.received_at, request.webhook_id, request.token, request.lead_id,
            request.method, request.target_path, request.expected_outcome, request.expected_status,
            request.recorded_status, status, None if body is None else body.decode("utf-8", "replace"),
            last.error if last else "not sent", tries[request.seq], last.latency_ms if last else None, agrees,
            None if request.recorded_status is None else request.recorded_status == request.expected_status,
        ))
    frame = pd.DataFrame(rows, columns=list(DIFF_COLUMNS))
    for column in ("recorded_status", "actual_status"):
        frame[column] = frame[column].astype("Int64")
    frame["recorded_agrees"] = frame["recorded_agrees"].astype("boolean")
    return frame


def attempts_table(attempts: Sequence[Attempt]) -> pd.DataFrame:
    frame = pd.DataFrame([(a.seq, a.request_id, a.attempt, a.started_at, a.latency_ms, a.status,
                           None if a.body is None else a.body.decode("utf-8", "replace"), a.error, a.retryable)
                          for a in attempts], columns=list(ATTEMPT_COLUMNS))
    frame["status"] = frame["status"].astype("Int64")
    return frame.sort_values(["seq", "attempt"], kind="stable").reset_index(drop=True)


def disagreement_summary(diff: pd.DataFrame) -> pd.DataFrame:
    """Per expected outcome: requests, how many the target answered otherwise or not at all, and production's."""
    answered = diff["actual_status"].notna()
    flags = pd.DataFrame({
        "expected_outcome": diff["expected_outcome"],
        "requests": 1,
        "agree": diff["agrees"].astype(bool),
        "disagree": ~diff["agrees"].astype(bool) & answered,
        "no_answer": ~answered,
        "recorded": diff["recorded_agrees"].notna(),
        "recorded_disagree": diff["recorded_agrees"].eq(False).fillna(False).astype(bool),
    })
    return flags.groupby("expected_outcome", sort=True).sum().astype("int64").reset_index()
