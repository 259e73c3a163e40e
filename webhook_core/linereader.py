"""Stream a text file into DuckDB as ``(line, raw)`` rows, a chunk at a time.

DuckDB's own readers skip blank lines and either stop at a bad line or drop it
without saying which; the quarantine needs the line number and raw text of every
bad line. Splitting happens in C (``bytes.split``, Arrow), never row by row in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

__all__ = ["iter_line_chunks"]

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
                    yield _table([data], next_line)
                return
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            lines = data[:cut].split(b"\n")
            yield _table(lines, next_line)
            next_line += len(lines)


def _table(lines: list[bytes], first: int) -> pa.Table:
    numbers = pa.array(range(first, first + len(lines)), pa.int64())
    try:
        text = b"\n".join(lines).decode("utf-8").split("\n")
        valid = pa.repeat(True, len(lines))
    except UnicodeDecodeError:
        # Rare: find the bad lines one by one, only within this chunk.
        text, flags = [], []
        for line in lines:
            try:
                text.append(line.decode("utf-8"))
                flags.append(True)
            except UnicodeDecodeError:
                text.append(line.decode("utf-8", errors="backslashreplace"))
                flags.append(False)
        valid = pa.array(flags, pa.bool_())
    return pa.table({"line": numbers, "raw": pa.array(text, pa.string()), "utf8": valid})
