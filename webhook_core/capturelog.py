"""The receiver's capture log: every request it answers, on disk before the answer.

A capture folder holds two append-only JSONL files (docs/http.md):

* ``callbacks.jsonl`` — one line per request to the webhook endpoint, in the
  ``callbacks.jsonl`` format of docs/semantics.md (I3), with ``response_status``
  and ``response_body`` saying what was answered (and ``note`` for a request the
  receiver refused before judging it). It is read back by the dataset loader.
* ``registrations.jsonl`` — one line per waiting webhook registered through the
  admin endpoint: a ``dispatches.jsonl`` row plus ``after_callback``, the number
  of callback lines written before it, which places it among the callbacks.

**Logged before answered.** A request is judged, its line (request *and* answer)
is appended to an in-memory batch, and the answer is sent only once that batch
has been written and ``fdatasync``-ed. Batches are written by one thread, one at
a time, in append order (group commit: the requests that arrive while a batch is
being synced share the next sync). So a line is in the file before its answer
leaves, and a line is durable only if every line judged before it is.

A batch writes ``registrations.jsonl`` before ``callbacks.jsonl``: a callback
judged after a registration is durable only if that registration is.

A crash can leave a torn last line (never answered, since its sync never
returned): opening the log cuts it off. If a write or sync fails the files are
cut back to the last good batch and the log refuses every later append; the
receiver then stops judging (answers 503) so its memory never runs ahead of
its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook_core.exceptions import WebhookAuditError
from webhook_core.loading import connect, load_dataset
from webhook_core.requests import CapturedRequest

__all__ = [
    "CALLBACKS_FILE",
    "REGISTRATIONS_FILE",
    "CaptureLog",
    "CaptureLogError",
    "LoggedCallback",
    "encode_line",
    "read_callbacks",
    "read_registrations",
]

CALLBACKS_FILE = "callbacks.jsonl"
REGISTRATIONS_FILE = "registrations.jsonl"
_LOCK_FILE = ".lock"


class CaptureLogError(WebhookAuditError):
    """The capture log cannot be opened, read back or written."""


def encode_line(record: dict[str, Any]) -> bytes:
    """One JSONL line. Raw UTF-8 (not ``\\u`` escapes) keeps lines short; every
    string the receiver logs was decoded with ``errors="replace"``, so it encodes."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass(frozen=True, slots=True)
class LoggedCallback:
    """A line of ``callbacks.jsonl`` as the dataset loader reads it back."""

    request: CapturedRequest  # seq is the line number
    response_status: int | None
    response_body: str | None


class CaptureLog:
    """Append-only writer for a capture folder, with group commit (see the module doc).

    Opening takes an exclusive lock on the folder (two receivers appending to one
    log would interleave two histories) and cuts off torn last lines.
    """

    def __init__(self, folder: Path, *, sync: bool = True) -> None:
        self.folder = folder
        self.sync = sync
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CaptureLogError(f"{folder}: cannot use as capture folder: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise CaptureLogError(f"{folder}: capture folder in use by another webhook-audit serve; "
                                  "stop it or give another --capture-dir") from exc
        #: Bytes cut off torn last lines, per file name (reported by ``serve``).
        self.torn_bytes: dict[str, int] = {}
        created = not (folder / CALLBACKS_FILE).exists() or not (folder / REGISTRATIONS_FILE).exists()
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        for name in (REGISTRATIONS_FILE, CALLBACKS_FILE):
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fds[name] = fd
            self.torn_bytes[name] = _cut_torn_tail(path, fd)
            self._sizes[name] = os.fstat(fd).st_size
        if created and sync:  # a new file's directory entry must be durable too
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.callback_lines = _count_lines(folder / CALLBACKS_FILE)
        self.registration_lines = _count_lines(folder / REGISTRATIONS_FILE)
        self._pending: dict[str, list[bytes]] = {REGISTRATIONS_FILE: [], CALLBACKS_FILE: []}
        self._batch: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._failed: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-log")
        self._closed = False

    @property
    def failed(self) -> str | None:
        """Why the log stopped accepting lines, or None while it works."""
        return self._failed

    def append_callback(self, line: bytes) -> asyncio.Future[None]:
        """Queue a callback line; the future is done once it is durable. Call from the event loop.

        The line's number is ``callback_lines`` after the call: the caller judges and
        appends in one step (no ``await`` between) so line numbers follow judging order.
        """
        return self._append(CALLBACKS_FILE, line)

    def append_registration(self, line: bytes) -> asyncio.Future[None]:
        return self._append(REGISTRATIONS_FILE, line)

    def _append(self, name: str, line: bytes) -> asyncio.Future[None]:
        if self._failed is not None:
            raise CaptureLogError(self._failed)
        loop = asyncio.get_running_loop()
        self._pending[name].append(line)
        if name == CALLBACKS_FILE:
            self.callback_lines += 1
        else:
            self.registration_lines += 1
        if self._batch is None:
            self._batch = loop.create_future()
            # Waiters shield the shared future; retrieve a failure here so an
            # abandoned batch does not log "exception was never retrieved".
            self._batch.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())
        return self._batch

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._batch is not None:
            batch, self._batch = self._batch, None
            data = {name: b"".join(lines) for name, lines in self._pending.items()}
            self._pending = {name: [] for name in self._pending}
            try:
                await loop.run_in_executor(self._executor, self._write, data)
            except OSError as exc:
                self._failed = f"capture log write failed: {exc.strerror or exc}; the receiver stopped judging"
                for future in (batch, self._batch):
                    if future is not None and not future.done():
                        future.set_exception(CaptureLogError(self._failed))
                self._batch = None
                self._pending = {name: [] for name in self._pending}
                return
            if not batch.done():
                batch.set_result(None)

    def _write(self, data: dict[str, bytes]) -> None:
        """Write and sync one batch (in the log's thread); on failure cut every file back."""
        try:
            for name in (REGISTRATIONS_FILE, CALLBACKS_FILE):  # registrations first (module doc)
                chunk = data[name]
                if not chunk:
                    continue
                fd = self._fds[name]
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.sync:
                    os.fdatasync(fd)
                self._sizes[name] += len(chunk)
        except OSError:
            for name, fd in self._fds.items():
                with contextlib.suppress(OSError):  # best effort: the log is marked failed anyway
                    os.ftruncate(fd, self._sizes[name])
            raise

    async def drain(self) -> None:
        """Wait until every queued line is durable."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def close(self) -> None:
        """Release the files and the lock, after the batch being written (if any).

        Lines still queued are dropped, not written: their answers wait for the
        sync, so none of them was answered, and the log holds what was answered.
        """
        if self._closed:
            return
        self._closed = True
        self._pending = {name: [] for name in self._pending}
        self._executor.shutdown(wait=True)
        for fd in self._fds.values():
            os.close(fd)
        os.close(self._lock_fd)


def _cut_torn_tail(path: Path, fd: int) -> int:
    """Cut a last line without its newline (a crash mid-write); return the bytes cut."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with path.open("rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        end = size
        block = 1 << 16
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return size - keep


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def read_callbacks(folder: Path, webhooks_json: Path) -> list[LoggedCallback]:
    """Every line of ``folder/callbacks.jsonl`` in line order, read by the dataset loader.

    The loader needs a dataset folder, so a temporary one links the dataset's
    ``webhooks.json``, an empty ``dispatches.jsonl`` and the capture log. A line the
    loader quarantines is an error: the receiver wrote every line itself.
    """
    log = folder / CALLBACKS_FILE
    if not log.exists() or log.stat().st_size == 0:
        return []
    with tempfile.TemporaryDirectory(prefix="webhook-audit-capture-") as staging_name:
        staging = Path(staging_name)
        (staging / "webhooks.json").symlink_to(webhooks_json.resolve())
        (staging / "dispatches.jsonl").write_bytes(b"")
        (staging / CALLBACKS_FILE).symlink_to(log.resolve())
        con = connect()
        try:
            load_dataset(con, staging)
            bad = con.execute("SELECT line, reason FROM quarantine WHERE source_file = ? ORDER BY line LIMIT 1",
                              [CALLBACKS_FILE]).fetchone()
            if bad is not None:
                raise CaptureLogError(f"{log}: line {bad[0]}: {bad[1]}; the receiver writes every line itself, so "
                                      "the file was changed by hand: fix or remove that line")
            rows = con.execute("""
                SELECT seq, request_id, received_at, method, url, headers, body, recorded_status, recorded_body
                FROM callbacks ORDER BY seq
            """).fetchall()
        finally:
            con.close()
    return [
        LoggedCallback(
            CapturedRequest(request_id=request_id, received_at=received_at, url=url, method=method,
                            headers=tuple((h["name"], h["value"]) for h in headers), body=body, seq=seq),
            status, recorded_body)
        for seq, request_id, received_at, method, url, headers, body, status, recorded_body in rows
    ]


def read_registrations(folder: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line, record)`` for every line of ``folder/registrations.jsonl``."""
    path = folder / REGISTRATIONS_FILE
    if not path.exists():
        return []
    records = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise CaptureLogError(f"{path}: line {number}: not valid JSON; the receiver writes every line "
                                      "itself, so the file was changed by hand: fix or remove that line") from exc
            if not isinstance(record, dict):
                raise CaptureLogError(f"{path}: line {number}: not a JSON object")
            records.append((number, record))
    return records

