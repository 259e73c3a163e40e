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

**The folder is the receiver's own.** It is created with mode 0700 and a
marker file, ``.webhook-audit-capture``; an existing folder is used only if it
holds that marker or is empty (then the marker is written). A symbolic link (the
folder or a file in it), a folder holding a dataset's files, a log without the
marker, or a folder owned by another user or writable by others is refused
before anything in it is written or cut.

A crash can leave a torn last line (never answered, since its sync never
returned): opening the log cuts it off (only in a marked folder: the receiver
cuts nothing it cannot show it wrote). If a write or sync fails the files are
cut back to the last good batch and the log refuses every later append; the
receiver then stops judging (answers 503) so its memory never runs ahead of
its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook_core.exceptions import CaptureLogError
from webhook_core.load.dataset import connect, load_dataset
from webhook_core.rules.requests import CapturedRequest

__all__ = [
    "CALLBACKS_FILE",
    "MARKER_FILE",
    "REGISTRATIONS_FILE",
    "CaptureLog",
    "LoggedCallback",
    "encode_line",
    "read_callbacks",
    "read_registrations",
]

CALLBACKS_FILE = "callbacks.jsonl"
REGISTRATIONS_FILE = "registrations.jsonl"
#: Written when the receiver makes a folder its capture folder: what it may append to and cut.
MARKER_FILE = ".webhook-audit-capture"
_MARKER = b'{"format":"webhook-audit capture folder","version":1}\n'
_LOCK_FILE = ".lock"
_DATASET_FILES = ("webhooks.json", "dispatches.")  # a name, or a prefix ending in "."


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
        #: Bytes cut off torn last lines, per file name (reported by ``serve``).
        self.torn_bytes: dict[str, int] = {}
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        # Every file is opened relative to this descriptor, so the folder checked is the folder written.
        self._dir_fd, created = _claim_folder(folder)
        self._lock_fd = -1
        try:
            self._lock_fd = _open_own(self._dir_fd, folder, _LOCK_FILE, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise CaptureLogError(f"{folder}: capture folder in use by another webhook-audit serve; "
                                      "stop it or give another --capture-dir") from exc
            for name in (REGISTRATIONS_FILE, CALLBACKS_FILE):
                created = created or not _exists(self._dir_fd, name)
                fd = _open_own(self._dir_fd, folder, name, os.O_RDWR | os.O_APPEND | os.O_CREAT)
                self._fds[name] = fd
                self.torn_bytes[name] = _cut_torn_tail(fd)
                self._sizes[name] = os.fstat(fd).st_size
            if created and sync:  # a new file's directory entry must be durable too
                os.fsync(self._dir_fd)
        except BaseException:
            for fd in (*self._fds.values(), self._lock_fd, self._dir_fd):
                if fd >= 0:
                    os.close(fd)
            raise
        self.callback_lines = _count_lines(self._fds[CALLBACKS_FILE])
        self.registration_lines = _count_lines(self._fds[REGISTRATIONS_FILE])
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
        os.close(self._dir_fd)


def _claim_folder(folder: Path) -> tuple[int, bool]:
    """Open ``folder`` as this receiver's capture folder (see the module doc): ``(descriptor, created)``.

    Nothing is written to a folder that is refused; an empty folder gets the marker.
    """
    created = False
    try:
        folder.mkdir(mode=0o700, parents=True)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise CaptureLogError(f"{folder}: cannot create the capture folder: {exc.strerror}") from exc
    if folder.is_symlink():
        raise CaptureLogError(f"{folder}: a symbolic link; the capture folder must be a real folder the receiver "
                              "owns: give its real path or a new --capture-dir")
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # replaced by a link since the check above, or not a folder at all
        what = "not a folder" if exc.errno == errno.ENOTDIR else f"cannot open: {exc.strerror}"
        if folder.is_symlink():
            what = "a symbolic link"
        raise CaptureLogError(f"{folder}: {what}; give a new --capture-dir (serve creates it)") from exc
    try:
        info = os.fstat(dir_fd)
        if info.st_uid != os.geteuid():
            raise CaptureLogError(f"{folder}: owned by another user; the capture folder must be the receiver's "
                                  "own: give a new --capture-dir (serve creates it)")
        if info.st_mode & stat.S_IWOTH:
            raise CaptureLogError(f"{folder}: writable by every user, so anyone could change the log; give a new "
                                  "--capture-dir (serve creates it private, mode 0700)")
        entries = set(os.listdir(dir_fd))
        dataset = sorted(n for n in entries if n == _DATASET_FILES[0] or n.startswith(_DATASET_FILES[1]))
        if dataset:
            raise CaptureLogError(f"{folder}: holds a dataset ({', '.join(dataset)}); the capture folder is the "
                                  "receiver's own: give another --capture-dir")
        if MARKER_FILE not in entries:
            logs = [n for n in (CALLBACKS_FILE, REGISTRATIONS_FILE) if n in entries]
            if logs:
                raise CaptureLogError(f"{folder}: holds {logs[0]} but no {MARKER_FILE} marker, so webhook-audit serve "
                                      "did not create this log and will not write to it or cut it; give a new "
                                      "--capture-dir (serve creates it)")
            if entries:
                raise CaptureLogError(f"{folder}: not empty and not a capture folder (no {MARKER_FILE} marker); give "
                                      "a new or empty --capture-dir")
            created = _write_marker(dir_fd, folder) or created
        _check_marker(dir_fd, folder)
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd, created


def _write_marker(dir_fd: int, folder: Path) -> bool:
    """Write the marker; False if another receiver wrote it first (the lock then decides between them)."""
    try:
        fd = os.open(MARKER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
    except FileExistsError:
        return False
    except OSError as exc:
        raise CaptureLogError(f"{folder / MARKER_FILE}: cannot write: {exc.strerror}") from exc
    try:
        os.write(fd, _MARKER)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _check_marker(dir_fd: int, folder: Path) -> None:
    fd = _open_own(dir_fd, folder, MARKER_FILE, os.O_RDONLY)
    try:
        content = os.read(fd, 4096)
    finally:
        os.close(fd)
    if content != _MARKER:
        raise CaptureLogError(f"{folder / MARKER_FILE}: not a marker this version of webhook-audit wrote; give a new "
                              "--capture-dir (serve creates it)")


def _open_own(dir_fd: int, folder: Path, name: str, flags: int) -> int:
    """Open a regular file of the capture folder that this user owns; never through a symbolic link.

    ``O_NONBLOCK`` keeps a FIFO put in its place from blocking the open; it is refused just after.
    """
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CaptureLogError(f"{folder / name}: a symbolic link; the receiver writes only files it created: "
                                  "give a new --capture-dir (serve creates it)") from exc
        raise CaptureLogError(f"{folder / name}: cannot open: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        what = "owned by another user" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise CaptureLogError(f"{folder / name}: {what}; the receiver writes only files it created: give a new "
                              "--capture-dir (serve creates it)")
    os.set_blocking(fd, True)
    return fd


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _cut_torn_tail(fd: int) -> int:
    """Cut a last line without its newline (a crash mid-write); return the bytes cut."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    block = 1 << 16
    keep = 0
    while end > 0:
        start = max(0, end - block)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    os.ftruncate(fd, keep)
    os.fsync(fd)
    return size - keep


def _count_lines(fd: int) -> int:
    count = 0
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
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
                SELECT seq, request_id, received_at, method, url, headers, body, recorded_status, recorded_body,
                       refused
                FROM callbacks ORDER BY seq
            """).fetchall()
        finally:
            con.close()
    return [
        LoggedCallback(
            CapturedRequest(request_id=request_id, received_at=received_at, url=url, method=method,
                            headers=tuple((h["name"], h["value"]) for h in headers), body=body, seq=seq,
                            recorded_status=status, refused=refused),
            status, recorded_body)
        for seq, request_id, received_at, method, url, headers, body, status, recorded_body, refused in rows
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

