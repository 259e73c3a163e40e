"""The Spark engine's load of a dataset given as a URI (``s3a://``, ``hdfs://``, ``abfss://``, ``file:///``):
through Spark and Hadoop, never the driver's local file system (docs/spark.md, "How it runs").

- The dataset is listed through the Hadoop FileSystem API and its inputs chosen by ``load/inputs.py``'s rules
  (:func:`~webhook_core.load.inputs.choose_inputs`: the same files, order, warnings and errors as a local folder).
- Each callbacks file is loaded by the DuckDB loader in a Spark task: ``binaryFile`` gives a file's bytes in one
  row, the task writes them to a local file of the same name and runs ``load_callbacks`` on it with the file's
  rank, so ``seq``, default request IDs, quarantine reasons and the ``load_report`` row are those of a local load.
  The tasks' rows (callbacks, quarantine, report) are written to the staging location as one Parquet table.
- ``webhooks.json`` and the dispatches are copied through Hadoop to a local folder and loaded on the driver:
  a conversion ID's uniqueness spans the dispatch files (``load/dispatches.py``).

The quarantine and the load report end up in the driver's DuckDB connection as a local load leaves them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]
from pyspark.sql import DataFrame, SparkSession

from webhook_core.audit.schema import CALLBACK_ROWS
from webhook_core.exceptions import ConfigError, DatasetError, MissingFileError, SparkEngineError
from webhook_core.load.callbacks import load_callbacks
from webhook_core.load.dataset import CALLBACK_FORMATS, DISPATCH_FORMATS, Dataset, finish_load, prepare
from webhook_core.load.dispatches import load_dispatches
from webhook_core.load.inputs import ChosenInput, InputFile, Listing, choose_inputs
from webhook_core.load.schema import create_tables, write_webhook_versions
from webhook_core.load.timestamps import install_timestamp_reader
from webhook_core.rules.settings import load_webhooks

__all__ = ["LOADED_CALLBACKS", "MAX_FILE_BYTES", "StagedLoad", "copy_to_local", "hadoop_path", "join", "load_uri",
           "remove"]

#: The callbacks as the keys' extraction reads them (``rules/keys.py``), from a connection's ``callback_rows``.
LOADED_CALLBACKS = f"""SELECT seq, request_id, received_at, recorded_status, refused, url,
                              CAST(headers AS VARCHAR) AS headers, body FROM {CALLBACK_ROWS}"""

#: Spark's ``binaryFile`` reader holds a file in one row, a Java array: at most 2 GiB less a byte.
MAX_FILE_BYTES = (1 << 31) - 1

#: What each load task writes, one table for its three kinds of rows (``kind``): ``callback`` (the columns of
#: :data:`LOADED_CALLBACKS`), ``quarantine`` (``source_file, line, raw, reason``), ``report`` (``load_report``'s
#: columns) and ``error`` (a lone file that cannot be used: ``source_file`` and the message in ``reason``).
_LOADED = (
    ("kind", "STRING", pa.string()), ("seq", "BIGINT", pa.int64()), ("request_id", "STRING", pa.string()),
    ("received_at", "TIMESTAMP", pa.timestamp("us", "UTC")), ("recorded_status", "INT", pa.int32()),
    ("refused", "BOOLEAN", pa.bool_()), ("url", "STRING", pa.string()), ("headers", "STRING", pa.string()),
    ("body", "STRING", pa.string()), ("source_file", "STRING", pa.string()), ("line", "BIGINT", pa.int64()),
    ("raw", "STRING", pa.string()), ("reason", "STRING", pa.string()), ("read", "BIGINT", pa.int64()),
    ("loaded", "BIGINT", pa.int64()), ("quarantined", "BIGINT", pa.int64()), ("zone_less", "BIGINT", pa.int64()),
)
_LOADED_SCHEMA = ", ".join(f"{name} {spark}" for name, spark, _ in _LOADED)
_LOADED_ARROW = pa.schema([(name, arrow) for name, _, arrow in _LOADED])
_CALLBACK_NAMES = ("seq", "request_id", "received_at", "recorded_status", "refused", "url", "headers", "body")


def _columns(kind: str, present: Collection[str]) -> str:
    """A SELECT list of every :data:`_LOADED` column: ``kind``, the ``present`` ones, NULL for the others."""
    duck = {"STRING": "VARCHAR", "BIGINT": "BIGINT", "TIMESTAMP": "TIMESTAMPTZ", "INT": "INTEGER",
            "BOOLEAN": "BOOLEAN"}
    return ", ".join(f"'{kind}' AS kind" if name == "kind" else
                     f"{name if name in present else 'NULL'}::{duck[spark]} AS {name}" for name, spark, _ in _LOADED)


_TASK_ROWS = f"""
    SELECT {_columns("callback", _CALLBACK_NAMES)} FROM ({LOADED_CALLBACKS})
    UNION ALL
    SELECT {_columns("quarantine", ("source_file", "line", "raw", "reason"))} FROM quarantine
    UNION ALL
    SELECT {_columns("report", ("source_file", "read", "loaded", "quarantined", "zone_less"))} FROM load_report
"""


@dataclass(frozen=True, slots=True)
class StagedLoad:
    """A URI dataset loaded: the driver's part (``con``'s tables but the callbacks) and the staged callbacks."""

    dataset: Dataset
    #: The callbacks as :data:`LOADED_CALLBACKS` gives them, read from the staging location.
    callbacks: DataFrame


def join(location: str, name: str) -> str:
    """``name`` inside the folder ``location`` (a URI)."""
    return f"{location.rstrip('/')}/{name}"


def hadoop_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """The Hadoop ``FileSystem`` holding ``uri`` and its ``Path``; a :class:`SparkEngineError` saying what is
    missing when Spark has no file system for its scheme."""
    path = spark._jvm.org.apache.hadoop.fs.Path(uri)  # type: ignore[union-attr]
    try:
        return path.getFileSystem(spark._jsc.hadoopConfiguration()), path
    except Py4JJavaError as exc:
        scheme = uri.split("://", 1)[0]
        version = spark._jvm.org.apache.hadoop.util.VersionInfo.getVersion()  # type: ignore[union-attr]
        jar = {"s3a": f"org.apache.hadoop:hadoop-aws:{version}", "abfs": f"org.apache.hadoop:hadoop-azure:{version}",
               "abfss": f"org.apache.hadoop:hadoop-azure:{version}", "gs": "the GCS connector"}.get(scheme)
        fix = (f"add {jar} to Spark (--conf spark.jars.packages=… or the cluster's libraries)" if jar is not None
               else f"add the jar of a Hadoop FileSystem for {scheme}:// to Spark and set fs.{scheme}.impl")
        raise SparkEngineError(f"{uri}: Spark has no file system for {scheme}:// ({_java_message(exc)}); "
                               f"{fix}") from exc


def _java_message(exc: Py4JJavaError) -> str:
    """The innermost Java exception's message, on one line."""
    cause = exc.java_exception
    while cause.getCause() is not None:
        cause = cause.getCause()
    return str(cause.getMessage() or cause.toString()).splitlines()[0]


def remove(spark: SparkSession, uri: str) -> None:
    """Delete the folder ``uri`` and what it holds, through Hadoop."""
    file_system, path = hadoop_path(spark, uri)
    file_system.delete(path, True)


def _listing(file_system: Any, path: Any) -> dict[str, tuple[bool, int]]:
    """The folder's entries: whether each is a file, and its size."""
    return {status.getPath().getName(): (bool(status.isFile()), int(status.getLen()))
            for status in file_system.listStatus(path)}


def load_uri(spark: SparkSession, con: duckdb.DuckDBPyConnection, uri: str, stage: str, *,
             required: tuple[str, ...] = (), max_quarantined: float | None = None,
             timestamp_format: str | None = None) -> StagedLoad:
    """Load the dataset ``uri`` into ``con`` (all of :func:`~webhook_core.load.dataset.load_dataset`'s tables but
    the callbacks, which go to ``stage``, a URI every executor reads: ``loaded.parquet``)."""
    uri = uri.rstrip("/")
    file_system, root = hadoop_path(spark, uri)
    not_a_folder = MissingFileError("not a folder; a dataset is a folder with webhooks.json, dispatches.* and "
                                    "callbacks.*", path=uri)
    try:
        if not file_system.getFileStatus(root).isDirectory():
            raise not_a_folder
        top = _listing(file_system, root)
    except Py4JJavaError as exc:
        if "FileNotFoundException" in exc.java_exception.getClass().getName():
            raise not_a_folder from exc
        raise SparkEngineError(f"{uri}: cannot list it ({_java_message(exc)})") from exc
    files = {name: is_file for name, (is_file, _) in top.items()}

    def chosen(stem: str, formats: tuple[str, ...]) -> tuple[list[ChosenInput], list[str], dict[str, int]]:
        sizes: dict[str, int] = {}

        def list_folder() -> Listing:
            entries = _listing(file_system, spark._jvm.org.apache.hadoop.fs.Path(join(uri, stem)))  # type: ignore[union-attr]
            sizes.update({f"{stem}/{name}": size for name, (_, size) in entries.items()})
            return {name: is_file for name, (is_file, _) in entries.items()}

        inputs, warnings = choose_inputs(files, list_folder, stem, formats, where=uri, folder_where=join(uri, stem))
        sizes.update({name: size for name, (_, size) in top.items()})
        return inputs, warnings, sizes

    with tempfile.TemporaryDirectory(prefix="webhook-audit-load-") as local, _relocated(local, uri):
        mirror = Path(local)
        if files.get("webhooks.json"):
            copy_to_local(spark, join(uri, "webhooks.json"), mirror / "webhooks.json")
        webhooks = load_webhooks(mirror / "webhooks.json")
        dispatch_inputs, skipped, _ = chosen("dispatches", DISPATCH_FORMATS)
        callback_inputs, skipped_callbacks, sizes = chosen("callbacks", CALLBACK_FORMATS)
        for file in callback_inputs:
            if sizes[file.name] > MAX_FILE_BYTES:
                raise DatasetError(f"{sizes[file.name] / (1 << 30):.1f} GiB; Spark's binaryFile reader, which loads "
                                   "each callbacks file of a URI dataset in a task, reads at most 2 GiB a file: split "
                                   "it into a folder callbacks/ of smaller files, or give the dataset as a local path",
                                   path=join(uri, file.name))
        dispatch_files = []
        for file in dispatch_inputs:
            copy_to_local(spark, join(uri, file.name), mirror / file.name)
            dispatch_files.append(InputFile(mirror / file.name, file.name, file.rank, file.in_folder))
        prepare(con)
        install_timestamp_reader(con, timestamp_format)
        create_tables(con)
        write_webhook_versions(con, webhooks)
        load_dispatches(con, dispatch_files, None)
        callbacks = _load_callbacks_in_tasks(spark, con, uri, callback_inputs, join(stage, "loaded.parquet"),
                                             timestamp_format)
        # (callback_files: only their names and ranks are read, to name the file in an error)
        callback_files = [InputFile(mirror / file.name, file.name, file.rank, file.in_folder)
                          for file in callback_inputs]
        dataset = finish_load(con, mirror, webhooks, {"dispatches": dispatch_files, "callbacks": callback_files},
                              (*skipped, *skipped_callbacks), required=required, may_be_empty=(),
                              max_quarantined=max_quarantined)
    return StagedLoad(dataset, callbacks)


def copy_to_local(spark: SparkSession, uri: str, target: Path) -> None:
    """The file or folder ``uri`` copied to the local ``target``, through Hadoop (streamed: any size)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    file_system, path = hadoop_path(spark, uri)
    # (scheme and path apart: a URI's percent-encoding, of a [ say, would be taken literally)
    local = spark._jvm.org.apache.hadoop.fs.Path("file", None, str(target))  # type: ignore[union-attr]
    # (the raw local file system: no .crc file beside the copy)
    file_system.copyToLocalFile(False, path, local, True)


@contextlib.contextmanager
def _relocated(local: str, uri: str) -> Iterator[None]:
    """An error naming a file of the local copy ``local`` names it in the dataset ``uri`` instead."""
    try:
        yield
    except DatasetError as exc:
        if not exc.path.startswith(local):
            raise
        where = exc.path if exc.field is None else f"{exc.path}: field '{exc.field}'"
        raise type(exc)(str(exc).removeprefix(f"{where}: "), path=uri + exc.path[len(local):],
                        field=exc.field) from exc
    except ConfigError as exc:
        if not exc.source.startswith(local):
            raise
        raise type(exc)(exc.message, source=uri + exc.source[len(local):], webhook=exc.webhook,
                        field=exc.field) from exc


def _load_callbacks_in_tasks(spark: SparkSession, con: duckdb.DuckDBPyConnection, uri: str,
                             files: list[ChosenInput], target: str, timestamp_format: str | None) -> DataFrame:
    """The callbacks files loaded in Spark tasks, their rows written to ``target``; their quarantine and
    ``load_report`` rows inserted into ``con``. Returns the staged callbacks."""
    by_base = {file.name.rsplit("/", 1)[-1]: file for file in files}
    paths = [_escape_glob(join(uri, file.name)) for file in files]
    contents = spark.read.format("binaryFile").load(paths).select("path", "content")
    loaded = contents.mapInArrow(partial(_load_in_task, uri, by_base, timestamp_format), _LOADED_SCHEMA)
    loaded.write.mode("overwrite").parquet(target)
    staged = spark.read.parquet(target)
    others = staged.where("kind <> 'callback'").toArrow()
    errors = [row for row in others.to_pylist() if row["kind"] == "error"]
    if errors:
        first = min(errors, key=lambda row: str(row["source_file"]))
        raise DatasetError(str(first["reason"]), path=join(uri, str(first["source_file"])))
    con.register("wa_task_rows", others)
    con.execute("""
        INSERT INTO quarantine SELECT source_file, line, raw, reason FROM wa_task_rows
        WHERE kind = 'quarantine' ORDER BY source_file, line;
        INSERT INTO load_report SELECT source_file, 'callbacks', read, loaded, quarantined, zone_less FROM wa_task_rows
        WHERE kind = 'report' ORDER BY source_file;
    """)
    con.unregister("wa_task_rows")
    return staged.where("kind = 'callback'").select(*_CALLBACK_NAMES)


def _escape_glob(uri: str) -> str:
    """``uri`` with Hadoop's glob characters escaped: Spark reads a path holding them as a pattern."""
    return "".join(f"\\{char}" if char in "\\*?[]{}" else char for char in uri)


def _load_in_task(uri: str, files: Mapping[str, ChosenInput], timestamp_format: str | None,
                  batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """In a Spark task: each file of its rows (``path``, ``content``) of the dataset ``uri`` loaded by the DuckDB
    loader, as a local load of the dataset would load it; its rows as :data:`_LOADED` says."""
    for batch in batches:
        for index in range(batch.num_rows):
            base = str(batch.column("path")[index]).rsplit("/", 1)[-1]
            yield from _load_one(uri, files[base], batch.column("content")[index].as_buffer(), timestamp_format)


def _load_one(uri: str, file: ChosenInput, content: pa.Buffer,
              timestamp_format: str | None) -> Iterator[pa.RecordBatch]:
    local = Path(tempfile.mkdtemp(prefix="webhook-audit-task-"))
    con = duckdb.connect()
    try:
        path = local / file.name.rsplit("/", 1)[-1]
        path.write_bytes(memoryview(content))
        del content
        prepare(con, threads=1)
        install_timestamp_reader(con, timestamp_format)
        create_tables(con)
        try:
            load_callbacks(con, [InputFile(path, file.name, file.rank, file.in_folder)], None, None)
        except DatasetError as exc:  # a lone file that cannot be used: the driver names it in the dataset
            where = exc.path if exc.field is None else f"{exc.path}: field '{exc.field}'"
            message = str(exc).removeprefix(f"{where}: ")
            if exc.field is not None:
                message = f"field '{exc.field}': {message}"
            yield pa.RecordBatch.from_pylist([{"kind": "error", "source_file": file.name, "reason": message}],
                                             schema=_LOADED_ARROW)
            return
        # A reason that quotes the file (a reader's error) names it in the dataset, not at the task's copy.
        con.execute("UPDATE quarantine SET reason = replace(reason, ?, ?)", [str(path), join(uri, file.name)])
        reader = con.sql(_TASK_ROWS).to_arrow_reader(10_000)
        for rows in reader:
            yield rows.cast(_LOADED_ARROW)
    finally:
        con.close()
        shutil.rmtree(local, ignore_errors=True)
