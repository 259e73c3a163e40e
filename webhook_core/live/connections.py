"""How long a client may hold a connection to the receiver, and how many may be open.

uvicorn times out only a kept-alive connection after an answer: a client that
sends its headers or body a byte at a time, or nothing at all, would hold its
connection forever (a slowloris). ``serve`` runs the receiver with
:func:`server_config`: uvicorn's h11 protocol with :class:`ConnectionLimits`.
The limits and what a client sees are in docs/http.md ("Connections").
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from webhook_core.exceptions import ReceiverError
from webhook_core.live.wire import json_error

__all__ = ["DEFAULT_LIMITS", "ConnectionLimits", "server_config"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long a client may take, and how many connections may be open (seconds; docs/http.md).

    ``header_timeout``: from the connection's opening (or, on a kept-alive
    connection, the next request's first byte) to the end of the request's
    headers. ``body_timeout``: from the end of the headers to the end of the body.
    ``idle_timeout``: a kept-alive connection waiting for its next request. A
    connection past one is closed without an answer; one over ``max_connections``
    is answered 503 and closed.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ReceiverError(f"--{name.replace('_', '-')} must be a finite number of seconds above 0")
        if self.max_connections < 1:
            raise ReceiverError("--max-connections must be 1 or more")


DEFAULT_LIMITS = ConnectionLimits()


_BUSY = json_error(503, "too many open connections; try again later")
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(_BUSY)).encode("ascii") + b"\r\nconnection: close\r\n\r\n" + _BUSY)


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with :class:`ConnectionLimits`.

    uvicorn times out only a kept-alive connection after an answer: a client that
    sends its headers or body a byte at a time, or nothing at all, would hold its
    connection forever. Each connection here is always in one phase — headers,
    body, the app's turn, idle — and every phase but the app's has a deadline,
    armed once when the phase begins (so trickling bytes does not extend it).
    """

    limits: ClassVar[ConnectionLimits] = DEFAULT_LIMITS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._phase = ""
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Answer, stop writing, and drop what the client sends until it closes: closing at
            # once with its request unread would reset the connection and lose the 503.
            transport.write(_BUSY_RESPONSE)
            if transport.can_write_eof():
                transport.write_eof()
            self._enter("refused", self.limits.header_timeout)
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self._phase == "refused":
            return
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter("closed", None)
        super().connection_lost(exc)

    def _watch(self) -> None:
        if self.transport.is_closing():
            self._enter("closed", None)
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._enter("body", self.limits.body_timeout)
        elif state is not h11.IDLE:
            self._enter("app", None)  # the request is complete: the rest is the receiver's work
        elif self._phase in ("", "headers") or self.conn.trailing_data[0]:
            self._enter("headers", self.limits.header_timeout)
        else:
            self._enter("idle", self.limits.idle_timeout)

    def _enter(self, phase: str, seconds: float | None) -> None:
        if phase == self._phase:
            return
        self._phase = phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None:
            self._deadline = self.loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        # Mid-body, the app's receive() then reports a disconnect: nothing is answered or logged.
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: Callable[..., Awaitable[None]], limits: ConnectionLimits = DEFAULT_LIMITS) -> uvicorn.Config:
    """The uvicorn configuration ``serve`` runs ``app`` with."""
    chosen = limits

    class GuardedH11Protocol(_GuardedH11Protocol):
        limits = chosen

    return uvicorn.Config(
        app, http=GuardedH11Protocol, lifespan="off", access_log=False, log_level="warning", server_header=False,
        # uvicorn's own keep-alive timer, never before ours (it takes whole seconds).
        timeout_keep_alive=max(1, math.ceil(limits.idle_timeout)), timeout_graceful_shutdown=10)
