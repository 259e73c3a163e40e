"""A dataset's input files: ``STEM.EXT`` alone, or a folder ``STEM/`` of files in any mix of formats.

A folder holds rotated capture logs (docs/semantics.md, I7): its files are read in the byte order of
their names, and each file's place in that order, its **rank**, goes into the one order key the replay
sorts by, ``seq`` (``row`` for dispatches)::

    seq = rank × 2^ORDER_BITS + line

so ``(received_at, seq)`` is ``(received_at, file name, line)``. A lone file is rank 0: ``seq`` is its
line, as it always was. ``seq`` stays below 2^40 because the replay packs ``(received_at, seq)`` into one
key as ``us × 2^40 + seq``: a folder may hold at most 2^(40 − ORDER_BITS) files of fewer than
2^ORDER_BITS lines each.

A file in a folder that cannot be used at all (a HAR that is not JSON, a Parquet file without a
required column, a CSV header without one, a file that cannot be opened) does not stop the load as a
lone file does: its lines (a readable Parquet file's rows) are quarantined with the reason, so the
quarantine gate (``gate.py``) judges it like any other file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from webhook_core.exceptions import DatasetError, MissingFileError
from webhook_core.load import linereader
from webhook_core.load.formats import parquet_columns
from webhook_core.quoting import quote_identifier, quote_literal

__all__ = ["MAX_FILES", "MAX_LINE", "ORDER_BITS", "UNUSABLE", "ChosenInput", "InputFile", "Listing", "check_lines",
           "choose_inputs", "find_inputs", "is_uri", "stage_unusable", "unusable_reason"]

#: Bits of ``seq`` (and a dispatch's ``row``) that hold the line; the bits above hold the file's rank.
ORDER_BITS = 28
#: The last line (entry, row) a file in a folder may have a row on: 268,435,455.
MAX_LINE = (1 << ORDER_BITS) - 1
#: Files a folder may hold: 4,096, so that every ``seq`` stays below 2^40 (``replay._ORD``).
MAX_FILES = 1 << (40 - ORDER_BITS)
#: Where :func:`stage_unusable` puts an unusable file's lines: ``line, raw``.
UNUSABLE = "wa_unusable_lines"


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file: where it is and what the tables call it."""

    path: Path
    #: Its path relative to the dataset, ``callbacks.jsonl`` or ``callbacks/2026-11-02.jsonl``: the
    #: ``source_file`` of ``quarantine`` and ``load_report``.
    name: str
    #: Its place in the folder's name order, from 0 (a lone file: 0).
    rank: int = 0
    in_folder: bool = False

    @property
    def offset(self) -> int:
        """What its rank adds to each line to give ``seq`` (``row``)."""
        return self.rank << ORDER_BITS

    @property
    def id_prefix(self) -> str:
        """What opens a callback's default ``request_id`` before its line (I3): nothing for the first file,
        ``NAME:`` (the file's name in the folder) for the others, so that default IDs stay unique."""
        return "" if self.rank == 0 else f"{self.path.name}:"


def is_uri(dataset: str | Path) -> bool:
    """Whether ``dataset`` names a place by URI (``scheme://…``: ``s3a://``, ``file:///``), which only the Spark
    engine reads (docs/spark.md), rather than a local path."""
    return isinstance(dataset, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", dataset) is not None


#: A listing of one folder: each entry's name and whether it is a file (else a folder, or something else).
Listing = Mapping[str, bool]


def find_inputs(folder: Path, stem: str, formats: Sequence[str]) -> tuple[list[InputFile], list[str]]:
    """The ``stem`` input of the dataset ``folder``: the one ``stem.EXT`` file, or the files of the folder
    ``stem/`` in byte order of their names; with the warnings for the folder's entries not read.

    None, several ``stem.EXT`` files, or a file and the folder, is a :class:`DatasetError`.
    """
    # Only the entries the rules look at: a file named like an input, and the folder of the stem.
    top = {f"{stem}.{ext}": True for ext in formats if (folder / f"{stem}.{ext}").is_file()}
    if (folder / stem).is_dir():
        top[stem] = False

    def list_folder() -> Listing:
        directory = folder / stem
        return {entry: (directory / entry).is_file() for entry in os.listdir(directory)}

    chosen, warnings = choose_inputs(top, list_folder, stem, formats, where=str(folder),
                                     folder_where=str(folder / stem))
    return [InputFile(folder / file.name, file.name, file.rank, file.in_folder) for file in chosen], warnings


@dataclass(frozen=True, slots=True)
class ChosenInput:
    """An input file picked by :func:`choose_inputs`, wherever the dataset is."""

    #: Its path relative to the dataset: ``callbacks.jsonl`` or ``callbacks/2026-11-02.jsonl``.
    name: str
    rank: int
    in_folder: bool


def choose_inputs(top: Listing, list_folder: Callable[[], Listing], stem: str, formats: Sequence[str], *,
                  where: str, folder_where: str) -> tuple[list[ChosenInput], list[str]]:
    """:func:`find_inputs`' rules on listings, for any file system: ``top`` lists the dataset folder (at least its
    ``stem.EXT`` files and the entry ``stem``), ``list_folder`` the folder ``stem/`` when ``top`` holds it as a
    folder. ``where`` and ``folder_where`` name the dataset and that folder in errors."""
    found = [f"{stem}.{ext}" for ext in formats if top.get(f"{stem}.{ext}") is True]
    if top.get(stem) is False:
        if found:
            raise DatasetError(f"both {', '.join(found)} and the folder {stem}/; keep the file or the folder",
                               path=where)
        return _folder_inputs(list_folder(), stem, formats, folder_where)
    if not found:
        names = ", ".join(f"{stem}.{ext}" for ext in formats)
        raise MissingFileError(f"no {stem} file; a dataset needs one of {names} or a folder {stem}/ of them",
                               path=where)
    if len(found) > 1:
        raise DatasetError(f"several {stem} files ({', '.join(found)}); keep one", path=where)
    return [ChosenInput(found[0], 0, False)], []


def _folder_inputs(listing: Listing, stem: str, formats: Sequence[str],
                   where: str) -> tuple[list[ChosenInput], list[str]]:
    # Byte order of the names, whatever the locale: the order a rotated log's date or counter gives.
    entries = sorted(listing, key=os.fsencode)
    readable: list[str] = []
    warnings: list[str] = []
    for entry in entries:
        # Hidden files and Hadoop/Spark markers (_SUCCESS, .part-0.crc) are never captures.
        if entry.startswith((".", "_")):
            continue
        if not listing[entry]:
            warnings.append(f"{stem}/{entry}: not a file; not read (only the files directly in {stem}/ are)")
        elif PurePosixPath(entry).suffix.lstrip(".") not in formats:
            suffixes = ", ".join(f".{ext}" for ext in formats)
            warnings.append(f"{stem}/{entry}: not read: {stem} files end in {suffixes}")
        else:
            readable.append(entry)
    if len(readable) > MAX_FILES:
        raise DatasetError(f"{len(readable):,} files; a folder holds at most {MAX_FILES:,}: "
                           "merge some (e.g. a day's files into one)", path=where)
    return [ChosenInput(f"{stem}/{entry}", rank, True) for rank, entry in enumerate(readable)], warnings


def check_lines(con: duckdb.DuckDBPyConnection, file: InputFile, sql: str) -> None:
    """A :class:`DatasetError` when a file in a folder has a row past :data:`MAX_LINE` (``sql`` is a query
    giving its rows' largest line): its ``seq`` would run into the next file's."""
    if not file.in_folder:
        return
    found = con.execute(sql).fetchone()
    if found is not None and found[0] is not None and found[0] > MAX_LINE:
        raise DatasetError(f"more than {MAX_LINE:,} lines; a file in a folder holds at most that many: "
                           "split it in two", path=str(file.path))


def unusable_reason(file: InputFile, error: Exception) -> str:
    """The quarantine reason for every row of a file in a folder that could not be used at all."""
    if isinstance(error, DatasetError):
        text = str(error).removeprefix(f"{error.path}: ")
    elif isinstance(error, OSError):
        text = f"cannot open it ({error.strerror or error})"
    else:
        text = str(error).splitlines()[0]
    return f"unusable file: {text}"


def stage_unusable(con: duckdb.DuckDBPyConnection, file: InputFile) -> None:
    """The rows of a file that could not be used, as :data:`UNUSABLE` (``line, raw``) for the quarantine.

    A readable Parquet file gives its rows (raw: the row as JSON, as its reader quarantines one); any
    other file its non-blank lines, as the line reader reads them; a file that cannot be opened at all,
    one row: line 0 with empty text, so that it counts as read and quarantined (and the gate sees it).
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE {UNUSABLE} (line BIGINT, raw VARCHAR)")
    literal = quote_literal(str(file.path))
    if file.path.suffix == ".parquet":
        try:
            columns = ", ".join(quote_identifier(c) for c in parquet_columns(con, file.path))
            con.execute(f"""
                INSERT INTO {UNUSABLE}
                SELECT file_row_number + 1, CAST(to_json(struct_pack({columns})) AS VARCHAR)
                FROM read_parquet({literal}, file_row_number = true)
            """)
            return
        except (DatasetError, duckdb.Error):
            con.execute(f"DELETE FROM {UNUSABLE}")
    try:
        for chunk in linereader.iter_line_chunks(file.path):
            con.register("wa_unusable_chunk", chunk)
            con.execute(f"""
                INSERT INTO {UNUSABLE}
                SELECT line, raw FROM (SELECT line, regexp_replace(raw, '\\r$', '') AS raw FROM wa_unusable_chunk)
                WHERE NOT regexp_full_match(raw, '[ \t]*')
            """)
            con.unregister("wa_unusable_chunk")
    except OSError:
        con.execute(f"DELETE FROM {UNUSABLE}")
        con.execute(f"INSERT INTO {UNUSABLE} VALUES (0, '')")
