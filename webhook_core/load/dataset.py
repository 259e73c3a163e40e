"""Loading a dataset folder into DuckDB.

A dataset is a folder with ``webhooks.json``, one ``dispatches.{csv,jsonl,parquet}``
and one ``callbacks.{jsonl,har,parquet}``, or in place of either file a folder
``dispatches/`` or ``callbacks/`` of such files (``inputs.py``; docs/semantics.md, "Inputs").

Loading never stops on a bad row and never drops one silently: a row that cannot
be used goes to the ``quarantine`` table with its file, line (or HAR entry
number), raw text and reason, and every file reconciles as
``read = loaded + quarantined``. A lone file that cannot be used at all raises a
:class:`~webhook_core.exceptions.DatasetError` naming the file and field; such a file
in a folder is quarantined whole instead.

Tables written (all replaced on each load):

* ``webhook_versions`` – one row per webhook version;
* ``dispatches`` – waiting webhooks: ``row, lead_id, conversion_id, advertiser_id,
  external_id, webhook_id, created_at, source_line``; ``row`` is the lead's key and its
  position in the input (its file's rank and its line, or Parquet row number: ``inputs.py``), the
  tie-break between leads; ``source_line`` is its line in its file;
* ``callbacks`` – captured requests: ``seq, request_id, received_at, method, url,
  headers, body, recorded_status, recorded_body, capture_notes, refused`` (``seq``: the file's rank and
  the line, ``inputs.py``), ``headers`` a list of
  ``{name, value}`` in captured order. It is a view over ``callback_rows``, which keeps
  the headers as captured (JSON) because building the list for every row cost about as
  much as the rest of the load, while the replay reads a header of few callbacks;
* ``callback_keys`` – instead of ``callbacks`` when loaded with ``keep_requests=False``: of each
  callback only what the replay judges it by (``webhook_core.rules.keys``), computed while the file is
  read, for a one-shot replay of large captures (``webhook-audit replay`` without ``--database``).
  ``callbacks`` is then a view that fails, when read, with a message saying to load again;
* ``quarantine`` – ``source_file, line, raw, reason`` (``source_file``: the path in the dataset,
  ``callbacks.jsonl`` or ``callbacks/2026-11-02.jsonl``; ``line``: the line in that file);
* ``dispatch_quarantine`` – of the quarantined dispatches with an identifier, ``source_file, line`` and
  the identifiers;
* ``load_report`` – ``source_file, table_name, read, loaded, quarantined, zone_less``, one row per file.

Two fast paths, taken only when they give exactly what the line readers give
(``tests/test_loading.py`` holds them to it): a ``callbacks.jsonl`` that DuckDB's CSV
reader splits into exactly its lines is read by it in parallel and judged in SQL, and
a ``dispatches.csv`` whose lines after the header are records (and at most 64 empty
lines) takes its line numbers from its row order instead of a second pass over the file.
Either way only the rows that end up quarantined have their raw text read back from the
file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import duckdb

from webhook_core.exceptions import DatasetError, MissingFileError
from webhook_core.load.callbacks import CALLBACK_READERS, load_callbacks
from webhook_core.load.dispatches import DISPATCH_READERS, load_dispatches
from webhook_core.load.gate import check_quarantine, load_warnings
from webhook_core.load.inputs import InputFile, find_inputs
from webhook_core.load.progress import ProgressCallback
from webhook_core.load.schema import create_tables, write_webhook_versions
from webhook_core.load.timestamps import install_timestamp_reader, timestamp_hint
from webhook_core.rules.macros import install_macros
from webhook_core.rules.settings import WebhookVersions, load_webhooks

__all__ = ["CALLBACK_FORMATS", "DISPATCH_FORMATS", "DUCKDB_SHARE", "Dataset", "FileReport", "configure", "connect",
           "duckdb_memory_limit", "finish_load", "load_dataset", "prepare"]

#: The formats a dataset's files may have, by suffix, in the order error messages list them.
DISPATCH_FORMATS = tuple(DISPATCH_READERS)
CALLBACK_FORMATS = tuple(CALLBACK_READERS)


@dataclass(frozen=True, slots=True)
class FileReport:
    path: str
    table: str
    read: int
    loaded: int
    quarantined: int
    #: Loaded rows whose timestamp named no zone, read as UTC (None: not counted, a keys-only load's callbacks).
    zone_less: int | None = 0


@dataclass(frozen=True, slots=True)
class Dataset:
    path: Path
    webhooks: WebhookVersions
    files: tuple[FileReport, ...]
    #: What the load did not stop for but an analyst should know (``webhook_core.load.gate.load_warnings``).
    warnings: tuple[str, ...] = ()


#: The share of a process's memory budget (``--memory-limit``) given to DuckDB's buffer pool. The process
#: also holds the interpreter, its libraries and memory DuckDB allocates outside its pool: about 0.55 GiB
#: above DuckDB's limit in the 10M-callback benchmark (docs/benchmarks.md).
DUCKDB_SHARE = 0.8


def duckdb_memory_limit(process_budget: int | None) -> str | None:
    """DuckDB's ``memory_limit`` for a process budget in bytes: its share, :data:`DUCKDB_SHARE`."""
    return None if process_budget is None else f"{int(process_budget * DUCKDB_SHARE) // 1024**2}MiB"


def connect(database: str = ":memory:", *, memory_limit: str | None = None,
            temp_directory: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for webhook_core (UTC session, macros installed).

    ``memory_limit`` (e.g. ``"4GB"``) and ``temp_directory`` let data larger than
    memory spill to disk instead of failing.
    """
    con = duckdb.connect(database)
    prepare(con, memory_limit=memory_limit, temp_directory=temp_directory, threads=threads)
    return con


def prepare(con: duckdb.DuckDBPyConnection, *, memory_limit: str | None = None,
            temp_directory: str | None = None, threads: int | None = None) -> None:
    """The session settings of :func:`configure`, and the package's SQL macros installed."""
    configure(con, memory_limit=memory_limit, temp_directory=temp_directory, threads=threads)
    install_macros(con)


def configure(con: duckdb.DuckDBPyConnection, *, memory_limit: str | None = None,
              temp_directory: str | None = None, threads: int | None = None) -> None:
    """A session's settings: UTC, no progress bar of DuckDB's, the memory budget and where to spill. (A
    read-only audit database takes these, and holds the macros already.)"""
    # A naive timestamp means UTC, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's own bar would write to stdout mid-table; the CLI shows its own progress. (In Jupyter
    # DuckDB refuses to touch the setting without ipywidgets, and draws no text bar there anyway.)
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    if memory_limit is not None:
        con.execute("SET memory_limit = ?", [memory_limit])
    if temp_directory is not None:
        con.execute("SET temp_directory = ?", [temp_directory])
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")


def load_dataset(con: duckdb.DuckDBPyConnection, folder: str | Path, *,
                 progress: ProgressCallback | None = None, keep_requests: bool = True,
                 required: Collection[str] = (), may_be_empty: Collection[str] = (),
                 max_quarantined: float | None = None, timestamp_format: str | None = None) -> Dataset:
    """Load ``folder`` into ``con``'s tables and return what was read, loaded and quarantined.

    ``keep_requests=False`` keeps of each callback only its keys (table ``callback_keys``, no
    ``callbacks``): enough for :func:`~webhook_core.audit.replay.replay` with these webhook settings
    (timeouts may differ), and far less memory and time on large captures.

    ``required`` names the tables (``"dispatches"``, ``"callbacks"``) whose file (or the files of whose
    folder, together) must load at least one row, else a :class:`DatasetError` names the file (folder),
    what was read and quarantined and the commonest reason (the tables are loaded all the same). Of
    those, a table named in ``may_be_empty`` may have no rows at all; one whose every row was
    quarantined is still an error. Entries of a folder that are not read (other suffixes, subfolders;
    hidden files and ``_`` markers aside) are warnings.
    A file whose quarantined share exceeds ``max_quarantined`` (e.g. ``0.01``) is a :class:`DatasetError`
    too (``webhook_core.load.gate``; the CLI's ``--max-quarantined``). ``timestamp_format`` (strptime
    directives) reads timestamps that are not ISO 8601 (``webhook_core.load.timestamps``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError("not a folder; a dataset is a folder with webhooks.json, "
                               "dispatches.* and callbacks.*", path=str(folder))
    webhooks = load_webhooks(folder / "webhooks.json")
    dispatch_files, skipped = find_inputs(folder, "dispatches", DISPATCH_FORMATS)
    callback_files, skipped_callbacks = find_inputs(folder, "callbacks", CALLBACK_FORMATS)
    prepare(con)
    install_timestamp_reader(con, timestamp_format)
    create_tables(con)
    write_webhook_versions(con, webhooks)
    load_dispatches(con, dispatch_files, progress)
    load_callbacks(con, callback_files, progress, None if keep_requests else webhooks)
    return finish_load(con, folder, webhooks, {"dispatches": dispatch_files, "callbacks": callback_files},
                       (*skipped, *skipped_callbacks), required=required, may_be_empty=may_be_empty,
                       max_quarantined=max_quarantined)


def finish_load(con: duckdb.DuckDBPyConnection, folder: Path, webhooks: WebhookVersions,
                inputs: dict[str, list[InputFile]], skipped: tuple[str, ...], *, required: Collection[str],
                may_be_empty: Collection[str], max_quarantined: float | None) -> Dataset:
    """:func:`load_dataset`'s checks of what ``con``'s ``load_report`` and ``quarantine`` say, once every file is
    loaded (also run by the Spark engine's load of a URI dataset); the :class:`Dataset`."""
    rows = con.execute(
        "SELECT source_file, table_name, read, loaded, quarantined, zone_less FROM load_report "
        "ORDER BY table_name DESC, source_file"
    ).fetchall()
    files = tuple(FileReport(*row) for row in rows)
    for table, table_inputs in inputs.items():
        reports = [report for report in files if report.table == table]
        if table in required and sum(report.loaded for report in reports) == 0:
            if sum(report.read for report in reports) == 0 and table in may_be_empty:
                continue
            raise _nothing_loaded(con, folder, table, table_inputs, reports)
    if max_quarantined is not None:
        check_quarantine(con, folder, max_quarantined)
    return Dataset(folder, webhooks, files, (*skipped, *load_warnings(con)))


def _nothing_loaded(con: duckdb.DuckDBPyConnection, folder: Path, table: str, inputs: list[InputFile],
                    reports: list[FileReport]) -> DatasetError:
    """The error for a required table of which no row was loaded, from any of its files: it names the file,
    or the folder (and in the example the file)."""
    in_folder = not inputs or inputs[0].in_folder
    path = str(folder / table) if in_folder else str(folder / inputs[0].name)
    read = sum(report.read for report in reports)
    if read == 0:
        kind = "folder" if in_folder else "file"
        fix = (f"the {kind} has no dispatches; add one row per waiting webhook" if table == "dispatches"
               else f"the {kind} has no callbacks; add the captured requests (docs/semantics.md, I3-I5)")
        return DatasetError(f"0 rows: {fix}", path=path)
    found = con.execute("""
        SELECT reason, arg_min(source_file, (source_file, line)) AS source, arg_min(line, (source_file, line)) AS line
        FROM quarantine WHERE list_contains(?, source_file)
        GROUP BY reason ORDER BY count(*) DESC, source, line LIMIT 1
    """, [[report.path for report in reports]]).fetchone()
    reason, source, line = found if found is not None else ("unknown", "", 0)
    unit = {".har": "entry", ".parquet": "row"}.get(Path(source).suffix, "line")
    where = f"{source} {unit}" if in_folder else unit
    # Every dispatch reason but a malformed row or duplicate can also be fixed in webhooks.json (Q3).
    fix = ("fix those rows or webhooks.json (docs/semantics.md, Q3)" if table == "dispatches"
           else "fix those rows (docs/semantics.md, Q2)") + timestamp_hint(reason)
    quarantined = sum(report.quarantined for report in reports)
    return DatasetError(f"0 of {read:,} rows loaded ({quarantined:,} quarantined; commonest reason: "
                        f"{reason}, e.g. {where} {line}); {fix}", path=path)
