"""Progress while a file loads: bytes read by the line reader, and DuckDB's own progress of
one long statement, polled from a second thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from webhook_core.load import linereader

__all__ = ["ProgressCallback", "bytes_progress", "execute_reporting", "line_chunks"]

#: ``progress(label, bytes_done, bytes_total)`` is called as a file is read.
ProgressCallback = Callable[[str, int, int], None]



def execute_reporting(con: duckdb.DuckDBPyConnection, sql: str, report: Callable[[float], None] | None) -> None:
    """Run ``sql``; while it runs, ``report(percent)`` from DuckDB's own progress tracking.

    The statement runs in a worker thread and this one polls ``query_progress``, which
    DuckDB allows from another thread. Where DuckDB will not track progress (Jupyter
    without ipywidgets) the statement just runs.
    """
    if report is None:
        con.execute(sql)
        return
    try:
        con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false; "
                    "SET progress_bar_time = 0")
    except duckdb.Error:
        con.execute(sql)
        return
    failures: list[BaseException] = []

    def work() -> None:
        try:
            con.execute(sql)
        except BaseException as exc:  # handed to the caller's thread below
            failures.append(exc)

    worker = threading.Thread(target=work, name="webhook-audit-load", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.25)
            percent = con.query_progress()
            if percent >= 0:
                report(min(percent, 100.0))
    except KeyboardInterrupt:
        con.interrupt()
        worker.join()
        raise
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("SET enable_progress_bar = false")
    if failures:
        raise failures[0]


def line_chunks(path: Path, progress: ProgressCallback | None) -> Iterator[pa.Table]:
    return linereader.iter_line_chunks(path, progress=bytes_progress(path, progress))


def bytes_progress(path: Path, progress: ProgressCallback | None) -> Callable[[int], None] | None:
    """Turn "so many more bytes read" into ``progress(file name, bytes done, file size)``."""
    if progress is None:
        return None
    total = path.stat().st_size
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        progress(path.name, done, total)

    progress(path.name, 0, total)
    return advance
