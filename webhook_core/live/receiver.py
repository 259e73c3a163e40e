"""The reference receiver: a plain ASGI app that answers webhook callbacks as production does.

``ANY {prefix}/{token}`` is judged by the online matcher (docs/semantics.md) and
answered ``200 {"status":"ok"}`` for ``matched`` / ``interim`` and ``404`` with
:data:`~webhook_core.domain.NOT_FOUND_BODY` for everything else — the same
bytes whatever the reason, so a caller learns nothing about which tokens or IDs
exist. Every request to it is written to the capture log (``live/capturelog.py``)
before it is answered; on start the receiver rebuilds its state from the dataset
and that log, so after a crash it answers as if it had never stopped.

Other paths: ``POST /admin/waiting-webhooks`` registers a waiting webhook
(``Authorization: Bearer TOKEN``), ``GET /admin/health`` says the receiver is up.
Everything else is a 404 with the same body. Design and guarantees: docs/http.md.

``serve`` runs it under uvicorn with the connection limits of ``live/connections.py``,
so slow or silent clients cannot hold it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from webhook_core.audit.online import matcher_from_tables
from webhook_core.domain import NOT_FOUND_BODY, OK_BODY
from webhook_core.exceptions import CaptureLogError, ReceiverError
from webhook_core.live.capturelog import CaptureLog, LoggedCallback, read_callbacks, read_registrations
from webhook_core.live.wire import (
    ADMIN_PREFIX,
    HEALTH_PATH,
    REGISTER_PATH,
    REPLAY_CLOCK_HEADER,
    REPLAY_ID_HEADER,
    json_error,
)
from webhook_core.load.dataset import Dataset, connect, load_dataset
from webhook_core.load.gate import check_quarantine
from webhook_core.rules.matching import OnlineMatcher, WaitingWebhook
from webhook_core.rules.requests import CapturedRequest
from webhook_core.rules.settings import WebhookVersions, parse_timestamp
from webhook_core.timeutil import iso_utc

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Receiver",
    "ReceiverConfig",
    "StartReport",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 1 << 20

_REGISTRATION_FIELDS = ("lead_id", "conversion_id", "advertiser_id", "external_id", "webhook_id", "created_at")
# An oversized body is read and dropped up to this size so the connection ends
# cleanly and the client sees the 413 (not a reset); past it the connection is closed.
_DRAIN_LIMIT = 16 << 20
_JUDGED = (200, 404)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_UNAVAILABLE = json_error(503, "capture log unavailable; the receiver stopped answering callbacks")
_CLOSE = (b"connection", b"close")


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """``prefix``: callbacks are ``{prefix}/{token}`` (``/`` for every path outside ``/admin/``)."""

    prefix: str = "/webhooks"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    admin_token: str | None = None
    replay_clock: bool = False
    #: Stop when more than this share of the dispatches file is quarantined (webhook_core.load.gate).
    max_quarantined: float | None = None

    def __post_init__(self) -> None:
        prefix = self.prefix.rstrip("/")
        if not self.prefix.startswith("/"):
            raise ReceiverError(f"--prefix {self.prefix!r}: must start with '/', e.g. /webhooks")
        if (prefix + "/").startswith(ADMIN_PREFIX):
            raise ReceiverError(f"--prefix {self.prefix!r}: /admin/ is the admin endpoint; choose another prefix")
        if self.max_body_bytes < 0:
            raise ReceiverError("--max-body-bytes must be 0 or more")
        object.__setattr__(self, "prefix", prefix)


@dataclass(frozen=True, slots=True)
class StartReport:
    """What the receiver found at start."""

    dataset: Dataset
    dispatches: int
    log_lines: int  # lines of callbacks.jsonl read back
    rejudged: int  # of those, the ones judged again (the rest were refusals or outside the prefix)
    registrations: int
    torn_bytes: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Answer:
    status: int
    body: bytes
    durable: asyncio.Future[None] | None  # None once read back from disk


class _RegistrationError(ValueError):
    pass


class Receiver:
    """The ASGI application. Build it with :meth:`open`; call :meth:`close` after the server stops."""

    def __init__(self, webhooks: WebhookVersions, matcher: OnlineMatcher, log: CaptureLog,
                 config: ReceiverConfig, *, first_registration_row: int) -> None:
        self.webhooks = webhooks
        self.matcher = matcher
        self.log = log
        self.config = config
        self._next_row = first_registration_row
        self._answers: dict[str, _Answer] = {}  # replay clock only: judged answers by request id
        self._floor: datetime | None = None  # the live clock never goes back (see _now)

    # ------------------------------------------------------------------ start

    @classmethod
    def open(cls, dataset: Path, capture_dir: Path, config: ReceiverConfig) -> tuple[Receiver, StartReport]:
        """Load ``dataset``, register its dispatches, and replay the capture log onto that state."""
        con = connect()
        try:
            # The dataset's callbacks are history the receiver does not read (docs/http.md). With the
            # admin endpoint on, leads may all come by registration: an empty dispatches file is fine.
            loaded = load_dataset(con, dataset, required=("dispatches",),
                                  may_be_empty=("dispatches",) if config.admin_token else ())
            if config.max_quarantined is not None:
                # A quarantined dispatch is a lead the receiver answers 404 for; its callbacks file is history.
                check_quarantine(con, dataset, config.max_quarantined, tables=("dispatches",))
            # The order check is per lead: with the replay clock, leads interleave (docs/http.md).
            matcher = matcher_from_tables(con, loaded.webhooks)
            matcher.per_lead_order = True
            counted = con.execute('SELECT count(*), coalesce(max("row"), 0) FROM dispatches').fetchone()
        finally:
            con.close()
        dispatches, last_row = (int(counted[0]), int(counted[1])) if counted else (0, 0)
        log = CaptureLog(capture_dir)
        try:
            receiver = cls(loaded.webhooks, matcher, log, config, first_registration_row=last_row + 1)
            lines, rejudged, registrations = receiver._rebuild(loaded.path / "webhooks.json")
        except BaseException:
            log.close()
            raise
        return receiver, StartReport(loaded, dispatches, lines, rejudged, registrations, dict(log.torn_bytes))

    def _rebuild(self, webhooks_json: Path) -> tuple[int, int, int]:
        """Feed the log back in the order it was written: the same inputs, the same state.

        Registrations go back between the callbacks they came between; every line
        answered by the matcher is judged again and must get the same answer.
        """
        folder = self.log.folder
        registrations = read_registrations(folder)
        callbacks = read_callbacks(folder, webhooks_json)
        pending = iter(registrations)
        upcoming = next(pending, None)
        rejudged = 0
        for logged in callbacks:
            while upcoming is not None and _after(upcoming, folder) < logged.request.seq:
                self._replay_registration(*upcoming)
                upcoming = next(pending, None)
            rejudged += self._rejudge(logged)
        while upcoming is not None:
            self._replay_registration(*upcoming)
            upcoming = next(pending, None)
        return len(callbacks), rejudged, len(registrations)

    def _replay_registration(self, line: int, record: dict[str, Any]) -> None:
        where = f"{self.log.folder / 'registrations.jsonl'}: line {line}"
        fields = {k: v for k, v in record.items() if k != "after_callback"}
        try:
            waiting = self._parse_registration(fields, default_created_at=None)
            self.matcher.register(waiting)
        except ValueError as exc:
            raise ReceiverError(f"{where}: {exc}; was the dataset changed since it was written? "
                                "Restore it or start with a new --capture-dir") from exc
        self._next_row += 1

    def _rejudge(self, logged: LoggedCallback) -> int:
        request, status = logged.request, logged.response_status
        self._see(request.received_at)
        path = request.url.split("?", 1)[0]
        if status not in _JUDGED or not self._routed(path):
            return 0  # refused before judging (400, 409, 413, 500) or outside the prefix
        where = f"{self.log.folder / 'callbacks.jsonl'}: line {request.seq} (request {request.request_id})"
        try:
            again = self.matcher.match(request).status_code
        except ValueError as exc:
            raise ReceiverError(f"{where}: {exc}") from exc
        if again != status:
            raise ReceiverError(f"{where} was answered {status} but judges {again} now: the dataset or --prefix "
                                "changed since the log was written; restore them or start with a new --capture-dir")
        if self.config.replay_clock:
            self._answers[request.request_id] = _Answer(status, OK_BODY if status == 200 else NOT_FOUND_BODY, None)
        return 1

    def close(self) -> None:
        self.log.close()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw_path.decode("utf-8", "replace")
        malformed = _malformed(scope)
        if path.startswith(ADMIN_PREFIX):
            if malformed is not None:
                await _respond(send, 400, json_error(400, malformed), [_CLOSE])
                return
            await self._admin(scope, receive, send, path)
        else:
            await self._callback(scope, receive, send, path, malformed)

    async def _callback(self, scope: Scope, receive: Receive, send: Send, path: str, malformed: str | None) -> None:
        if self.log.failed:
            await _respond(send, 503, _UNAVAILABLE)
            return
        headers = [(n.decode("latin-1"), v.decode("utf-8", "replace")) for n, v in scope["headers"]]
        body = await self._read_body(receive, headers)
        if body is None:
            return  # the client went away: nothing was answered, nothing is logged
        if self.log.failed:
            await _respond(send, 503, _UNAVAILABLE)
            return
        query: bytes = scope.get("query_string", b"")
        url = path + ("?" + query.decode("utf-8", "replace") if query else "")
        method: str = scope["method"]

        refusal: tuple[int, str] | None = None
        key: str | None = None
        if self.config.replay_clock:
            clock = _header(headers, REPLAY_CLOCK_HEADER)
            key = _header(headers, REPLAY_ID_HEADER) or None
            headers = [(n, v) for n, v in headers if n.lower() not in (REPLAY_CLOCK_HEADER, REPLAY_ID_HEADER)]
            try:
                received_at = parse_timestamp(clock) if clock else None
            except ValueError:
                received_at = None
            if received_at is None:
                received_at = self._now()
                refusal = (400, f"--replay-clock: header {REPLAY_CLOCK_HEADER} is missing or not ISO 8601")
            elif key is not None and key in self._answers and malformed is None:
                await self._answer_again(send, self._answers[key])  # a retry of a request already judged
                return
        else:
            received_at = self._now()

        seq = self.log.callback_lines + 1
        request_id = key or f"rcv-{seq}"
        text = None if isinstance(body, _TooLarge) else body.decode("utf-8", "replace")
        # Encode the request before judging: nothing can fail between judging and logging.
        logged = _json({"received_at": iso_utc(received_at), "url": url, "method": method,
                        "headers": [[n, v] for n, v in headers], "body": text, "request_id": request_id})[:-1]
        judged = False
        note: str | None = None
        if isinstance(body, _TooLarge):
            status, answer = 413, json_error(413, f"request body over the limit of {self.config.max_body_bytes} bytes")
            note = f"body of {body.describe()} over the {self.config.max_body_bytes}-byte limit: not kept, not judged"
        elif malformed is not None:
            status, answer, note = 400, json_error(400, malformed), f"refused: {malformed}: not judged"
        elif refusal is not None:
            status, answer, note = refusal[0], json_error(*refusal), "refused: not judged"
        elif not self._routed(path):
            status, answer, note = 404, NOT_FOUND_BODY, f"outside {self.config.prefix or ''}/: not judged"
        else:
            request = CapturedRequest(request_id, received_at, url, method, tuple(headers), text, seq)
            try:
                status = self.matcher.match(request).status_code
                answer, judged = (OK_BODY if status == 200 else NOT_FOUND_BODY), True
            except ValueError as exc:  # replay clock: this lead's callbacks arrived out of order
                status, answer, note = 409, json_error(409, str(exc)), "refused: out of order for its lead"
            except Exception:  # a bug; the matcher changes no state before it could raise
                traceback.print_exc(file=sys.stderr)
                status, answer, note = 500, json_error(500, "internal error"), "internal error: not judged"
        tail = {"response_status": status, "response_body": answer.decode("utf-8")}
        if note is not None:  # refused before judging: replayed as such, not judged again (semantics.md, I3)
            tail["note"] = note
            tail["refused"] = True
        durable = self.log.append_callback(logged + b"," + _json(tail)[1:] + b"\n")
        if judged and self.config.replay_clock:
            self._answers[request_id] = _Answer(status, answer, durable)
        try:
            await asyncio.shield(durable)
        except CaptureLogError:
            await _respond(send, 503, _UNAVAILABLE)
            return
        await _respond(send, status, answer, None if malformed is None else [_CLOSE])

    async def _answer_again(self, send: Send, answer: _Answer) -> None:
        if answer.durable is not None:
            try:
                await asyncio.shield(answer.durable)
            except CaptureLogError:
                await _respond(send, 503, _UNAVAILABLE)
                return
        await _respond(send, answer.status, answer.body)

    def _routed(self, path: str) -> bool:
        return path.startswith(self.config.prefix + "/") and not path.startswith(ADMIN_PREFIX)

    def _now(self) -> datetime:
        """The wall clock, held at the latest time seen so the log stays in time order if the clock steps back."""
        now = datetime.now(UTC)
        if self._floor is not None and now < self._floor:
            return self._floor
        self._floor = now
        return now

    def _see(self, moment: datetime) -> None:
        if self._floor is None or moment > self._floor:
            self._floor = moment

    async def _read_body(self, receive: Receive, headers: list[tuple[str, str]]) -> bytes | _TooLarge | None:
        """The whole body; ``_TooLarge`` past the limit; None if the client disconnected."""
        limit = self.config.max_body_bytes
        declared = _header(headers, "content-length")
        over = declared.isdigit() and int(declared) > limit
        if over and int(declared) > _DRAIN_LIMIT:
            return _TooLarge(int(declared))  # not worth reading: the server closes the connection
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if not over:
                if size > limit:
                    over, chunks = True, []
                else:
                    chunks.append(chunk)
            if not message.get("more_body", False):
                break
            if over and size > _DRAIN_LIMIT:
                return _TooLarge(None)
        return _TooLarge(size) if over else b"".join(chunks)

    # ------------------------------------------------------------------ admin

    async def _admin(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method: str = scope["method"]
        if path == HEALTH_PATH:
            await _respond(send, 200, OK_BODY)
            return
        if path != REGISTER_PATH:
            await _respond(send, 404, NOT_FOUND_BODY)
            return
        headers = [(n.decode("latin-1"), v.decode("utf-8", "replace")) for n, v in scope["headers"]]
        token = self.config.admin_token
        if not token:
            await _respond(send, 403, json_error(403, "the admin endpoint is off: start serve with --admin-token "
                                                  "or WEBHOOK_AUDIT_ADMIN_TOKEN"))
            return
        given = _header(headers, "authorization")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
            await _respond(send, 401, json_error(401, "send Authorization: Bearer <admin token>"),
                           [(b"www-authenticate", b"Bearer")])
            return
        if method != "POST":
            await _respond(send, 405, json_error(405, "POST a waiting webhook"), [(b"allow", b"POST")])
            return
        body = await self._read_body(receive, headers)
        if body is None:
            return
        if isinstance(body, _TooLarge):
            await _respond(send, 413, json_error(413, f"over the limit of {self.config.max_body_bytes} bytes"))
            return
        if self.log.failed:
            await _respond(send, 503, _UNAVAILABLE)
            return
        try:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise _RegistrationError("send one JSON object")
            default = None
            if not self.config.replay_clock:  # a replay has no "now": created_at must be given
                default = self._now()
            waiting = self._parse_registration(document, default_created_at=default)
        except (ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, _RegistrationError) else "body is not valid JSON"
            await _respond(send, 400, json_error(400, message))
            return
        existing = self.matcher.waiting(waiting.conversion_id)  # from the dataset or registered here
        if existing is not None and _fields(existing)[:-1] == _fields(waiting)[:-1]:  # a retry: same lead
            await self.log.drain()  # it may still be on its way to disk
            if self.log.failed:
                await _respond(send, 503, _UNAVAILABLE)
                return
            await _respond(send, 200, _json({"status": "already registered", **_describe(existing)}))
            return
        version = self.webhooks.live(waiting.webhook_id, waiting.created_at)
        if version is None:
            reason = ("unknown webhook_id (not in webhooks.json)" if waiting.webhook_id not in
                      self.webhooks.webhook_ids else "webhook has no version live at created_at")
            await _respond(send, 400, json_error(400, reason))
            return
        try:
            self.matcher.register(waiting)
        except ValueError:
            await _respond(send, 409, json_error(409, f"conversion_id {waiting.conversion_id!r} is already registered"))
            return
        record = {name: getattr(waiting, name) for name in _REGISTRATION_FIELDS[:-1]}
        record["created_at"] = iso_utc(waiting.created_at)
        record["after_callback"] = self.log.callback_lines
        durable = self.log.append_registration(_json(record) + b"\n")
        self._next_row += 1
        try:
            await asyncio.shield(durable)
        except CaptureLogError:
            await _respond(send, 503, _UNAVAILABLE)
            return
        deadline = None
        if version.wait and version.timeout_us is not None:
            deadline = iso_utc(waiting.created_at + timedelta(microseconds=version.timeout_us))
        await _respond(send, 201, _json({"status": "registered", **_describe(waiting), "deadline": deadline}))

    def _parse_registration(self, document: dict[str, Any], *,
                            default_created_at: datetime | None) -> WaitingWebhook:
        """A registration: the ``dispatches.jsonl`` fields, as the admin endpoint and the log hold them."""
        unknown = sorted(set(document) - set(_REGISTRATION_FIELDS))
        if unknown:
            raise _RegistrationError(f"unknown field {unknown[0]!r}; a waiting webhook has "
                                     + ", ".join(_REGISTRATION_FIELDS))
        values: dict[str, str] = {}
        for name in ("lead_id", "conversion_id", "advertiser_id", "webhook_id"):
            value = document.get(name)
            if not isinstance(value, str) or value == "":
                raise _RegistrationError(f"field {name!r}: required, a non-empty string")
            values[name] = value
        external = document.get("external_id")
        if external is not None and not isinstance(external, str):
            raise _RegistrationError("field 'external_id': a string or null")
        created_text = document.get("created_at")
        if created_text is None:
            if default_created_at is None:
                raise _RegistrationError("field 'created_at': required (ISO 8601)")
            created_at = default_created_at
        else:
            try:
                if not isinstance(created_text, str):
                    raise ValueError
                created_at = parse_timestamp(created_text)
            except ValueError:
                raise _RegistrationError("field 'created_at': not an ISO 8601 timestamp") from None
        return WaitingWebhook(values["lead_id"], values["conversion_id"], values["advertiser_id"],
                              external or None, values["webhook_id"], created_at, self._next_row)


@dataclass(frozen=True, slots=True)
class _TooLarge:
    size: int | None  # bytes, when known

    def describe(self) -> str:
        return "unknown size" if self.size is None else f"{self.size} bytes"


def _after(registration: tuple[int, dict[str, Any]], folder: Path) -> int:
    line, record = registration
    after = record.get("after_callback")
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ReceiverError(f"{folder / 'registrations.jsonl'}: line {line}: field 'after_callback' must be a "
                            "count of callback lines")
    return after


def _fields(waiting: WaitingWebhook) -> tuple[Any, ...]:
    return (waiting.lead_id, waiting.conversion_id, waiting.advertiser_id, waiting.external_id,
            waiting.webhook_id, waiting.created_at, waiting.row)


def _describe(waiting: WaitingWebhook) -> dict[str, Any]:
    return {"lead_id": waiting.lead_id, "conversion_id": waiting.conversion_id, "webhook_id": waiting.webhook_id,
            "created_at": iso_utc(waiting.created_at)}


def _malformed(scope: Scope) -> str | None:
    """Why a request h11 let through is still refused (400, connection closed), or None.

    h11 takes ``Transfer-Encoding`` over ``Content-Length`` when both are sent, and
    any ``HTTP/d.d`` version; a proxy in front may have framed the body the other
    way, or not speak that version at all (request smuggling), so neither is judged.
    """
    version = scope.get("http_version", "1.1")
    if version not in ("1.0", "1.1"):
        return f"HTTP/{version} is not served; send HTTP/1.1"
    names = {name.lower() for name, _ in scope["headers"]}
    if b"content-length" in names and b"transfer-encoding" in names:
        return "Content-Length and Transfer-Encoding together make the body's length ambiguous; send one"
    return None


def _header(headers: list[tuple[str, str]], name: str) -> str:
    """The first header called ``name`` (ASCII case-insensitive), or ''."""
    return next((v for n, v in headers if n.lower() == name), "")


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # State is built before the server starts (Receiver.open), so there is nothing to do here.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
