"""Stream a text file into DuckDB as ``(line, raw)`` rows, a chunk at a time.

DuckDB's own readers skip blank lines and either stop at a bad line or drop it
without saying which; the quarantine needs the line number and raw text of every
bad line. The loader therefore lets DuckDB's parallel readers do the work when the
lines and records can be lined up (``count_lines``, ``blank_line_numbers``), reads
the few lines it must quarantine back by number (``pick_lines``), and falls back to
these chunks otherwise. Splitting happens in NumPy and Arrow, never row by row in
Python.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

__all__ = ["blank_line_numbers", "count_lines", "count_lines_finding", "iter_line_chunks", "pick_lines"]

CHUNK_BYTES = 32 * 1024 * 1024

Progress = Callable[[int], None]


def iter_line_chunks(path: Path, *, chunk_bytes: int | None = None,
                     progress: Progress | None = None) -> Iterator[pa.Table]:
    """Yield Arrow tables ``line int64, raw string, utf8 bool`` covering every line.

    A line that is not valid UTF-8 comes with ``utf8 = false`` and its raw text
    with the bad bytes written as ``\\xNN``.
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    next_line = 1
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(chunk_bytes)
            if progress is not None and block:
                progress(len(block))
            data = carry + block
            if not block:
                if data:
                    yield _table(data, next_line)
                return
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            table = _table(data[:cut], next_line)
            yield table
            next_line += table.num_rows


def _table(data: bytes, first: int) -> pa.Table:
    """The lines of ``data`` (no final newline) as an Arrow table, without a Python object per line.

    Line boundaries come from NumPy, the strings are Arrow views of the same bytes,
    and Arrow validates the UTF-8 in one pass; only a chunk holding a bad byte is
    split line by line to find it.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    offsets = np.concatenate(([0], ends + 1, [len(data) + 1])).astype(np.int64)
    count = len(offsets) - 1
    # Each line runs from its offset to the next one minus the newline: drop the newlines from the
    # buffer by giving every line its own [start, end) through a compacting copy of the bytes.
    starts = offsets[:-1]
    lengths = offsets[1:] - starts - 1
    kept = np.delete(raw, ends) if len(ends) else raw
    value_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    binary = pa.Array.from_buffers(pa.large_binary(), count,
                                   [None, pa.py_buffer(value_offsets), pa.py_buffer(kept.tobytes())])
    numbers = pa.array(np.arange(first, first + count, dtype=np.int64))
    try:
        text = binary.cast(pa.large_string()).cast(pa.string())
        valid = pa.repeat(True, count)
    except pa.ArrowInvalid:
        # Rare: find the bad lines one by one, only within this chunk.
        lines = data.split(b"\n")
        decoded, flags = [], []
        for line in lines:
            text_of_line, utf8 = _decoded(line)
            decoded.append(text_of_line)
            flags.append(utf8)
        text = pa.array(decoded, pa.string())
        valid = pa.array(flags, pa.bool_())
    return pa.table({"line": numbers, "raw": text, "utf8": valid})


def count_lines(path: Path, *, progress: Progress | None = None) -> int:
    """How many lines ``path`` has, as ``iter_line_chunks`` would yield them (a last line without
    a newline counts; an empty file has none)."""
    return count_lines_finding(path, b"", progress=progress)[0]


def count_lines_finding(path: Path, byte: bytes, *, progress: Progress | None = None) -> tuple[int, bool]:
    """``count_lines(path)``, and whether ``byte`` (one byte, or none when empty) is in the file: one pass."""
    newlines = 0
    ends_open = False  # the file's last byte is not a newline
    found = False
    with path.open("rb", buffering=0) as handle:
        buffer, mask = _read_buffers(handle)
        while read := handle.readinto(buffer):
            newlines += int(np.count_nonzero(_newlines(buffer, read, mask)))
            ends_open = buffer[read - 1] != ord("\n")
            found = found or (bool(byte) and buffer.find(byte, 0, read) >= 0)
            if progress is not None:
                progress(read)
    return newlines + int(ends_open), found


def blank_line_numbers(path: Path, *, longest: int = 16, most: int = 64) -> list[int] | None:
    """The numbers of the lines that are only spaces and tabs (and one final CR), ascending.

    ``None`` when there are more than ``most`` of them, or when a short line is all ASCII
    whitespace but not blank by that rule (a vertical tab, a form feed): DuckDB's JSON
    reader skips such a line while the line reader does not. Only lines of at most
    ``longest`` bytes are examined, so one longer line of whitespace goes unreported.
    """
    found: list[int] = []
    first_line = 1
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(CHUNK_BYTES)
            data = carry + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            whole, carry = data[:cut], data[cut:]
            if whole:
                raw = np.frombuffer(whole, dtype=np.uint8)
                ends = np.flatnonzero(raw == 10)
                if not block and (not len(ends) or ends[-1] != len(whole) - 1):
                    ends = np.append(ends, len(whole))  # a last line without a newline
                starts = np.concatenate(([0], ends[:-1] + 1))
                for index in np.flatnonzero(ends - starts <= longest):
                    line = whole[starts[index]:ends[index]]
                    if line.strip(b" \t\r\x0b\x0c"):
                        continue
                    if line.rstrip(b"\r").strip(b" \t") or line.count(b"\r") > 1 or line[:-1].count(b"\r"):
                        return None  # whitespace DuckDB skips but the line reader keeps as a record
                    found.append(first_line + int(index))
                    if len(found) > most:
                        return None
                first_line += len(ends)
            if not block:
                return found


def pick_lines(path: Path, numbers: Iterable[int]) -> pa.Table:
    """The lines numbered ``numbers`` (1-based), as ``iter_line_chunks`` yields them.

    A chunk without a wanted line only has its newlines counted; just the wanted lines are
    cut out and decoded (a few lines of a 3 GB file in seconds, not the minute a full split takes).
    """
    wanted = sorted(n for n in set(numbers) if n >= 1)
    found: list[int] = []
    texts: list[str] = []
    valid: list[bool] = []
    next_line = 1  # the number of the first line in the buffer
    held = 0  # bytes of the buffer holding a line begun in the previous read
    with path.open("rb", buffering=0) as handle:
        buffer, mask = _read_buffers(handle)
        while len(found) < len(wanted):
            if held == len(buffer):  # one line longer than the buffer
                buffer.extend(bytes(len(buffer)))
                mask = np.empty(len(buffer), dtype=bool)
            read = handle.readinto(memoryview(buffer)[held:])
            size = held + read
            # Whole lines end at the last newline; at the end of the file, at its last byte.
            cut = buffer.rfind(b"\n", 0, size) if read else size
            if cut < 0 or size == 0:
                if not read:
                    break
                held = size
                continue
            newline = _newlines(buffer, cut, mask)
            last = next_line + int(np.count_nonzero(newline))
            if wanted[len(found)] <= last:
                ends = np.flatnonzero(newline)
                starts = np.concatenate(([0], ends + 1))
                stops = np.concatenate((ends, [cut]))
                while len(found) < len(wanted) and wanted[len(found)] <= last:
                    index = wanted[len(found)] - next_line
                    text, utf8 = _decoded(bytes(buffer[starts[index]:stops[index]]))
                    found.append(wanted[len(found)])
                    texts.append(text)
                    valid.append(utf8)
            if not read:
                break
            next_line = last + 1
            held = size - cut - 1
            buffer[:held] = buffer[cut + 1:size]
    return pa.table({"line": pa.array(found, pa.int64()), "raw": pa.array(texts, pa.string()),
                     "utf8": pa.array(valid, pa.bool_())})


def _read_buffers(handle: BinaryIO) -> tuple[bytearray, np.ndarray]:
    """A buffer for reading ``handle`` a chunk at a time, ``CHUNK_BYTES`` or the whole file if
    smaller, and its newline mask for ``_newlines``. A bytearray is zeroed when made, and zeroing
    32 MiB for a file of a few lines took about 20 ms of each load (most of a small dataset's line
    count). A pipe has no size to go by."""
    status = os.fstat(handle.fileno())
    size = min(CHUNK_BYTES, status.st_size + 1 if stat.S_ISREG(status.st_mode) else CHUNK_BYTES)
    return bytearray(size), np.empty(size, dtype=bool)


def _newlines(buffer: bytearray, size: int, mask: np.ndarray) -> np.ndarray:
    """Where ``buffer[:size]`` holds a newline, as ``mask[:size]``.

    Counting the mask (kept between reads) takes about 60 % of the time ``bytearray.count`` does
    (docs/benchmarks.md, "Newlines counted with NumPy"), and the mask also gives the newlines'
    positions. The NumPy view of ``buffer`` ends here: a buffer with a view cannot grow.
    """
    found: np.ndarray = np.equal(np.frombuffer(buffer, dtype=np.uint8, count=size), 10, out=mask[:size])
    return found


def _decoded(line: bytes) -> tuple[str, bool]:
    """A line's text and whether it is UTF-8; bad bytes written as ``\\xNN`` (as ``_table`` does)."""
    try:
        return line.decode("utf-8"), True
    except UnicodeDecodeError:
        return line.decode("utf-8", errors="backslashreplace"), False
