"""The set-based replay on Apache Spark: ``replay.py``'s outputs, row for row (docs/spark.md).

Three steps, each kept where its engine is exact:

1. **Load** on the driver with the DuckDB loader (quarantine, line numbers, ``read = loaded +
   quarantined``): Spark cannot number a JSONL file's lines or a HAR's entries. The callbacks' rows
   (with ``seq``), the dispatches and the quarantined dispatches' identifiers are staged as Parquet.
2. **Keys** in Spark tasks, by the same DuckDB SQL (``rules/keys.py``) on each partition
   (``mapInArrow``, one DuckDB connection per task): a projection with no join or aggregate gives the
   same rows whatever the split. Spark's own functions decode, parse JSON and match regular
   expressions differently (docs/spark.md, "Where the engines differ"), so extraction is never
   translated to them.
3. **Matching** (joins, windows, lead states) in Spark SQL, ``replay.py``'s statements one for one.
   Spark sorts NULLs first where DuckDB sorts them last, so every ``ORDER BY`` says where they go;
   the judging order ``ord`` (a HUGEINT in DuckDB) is the pair ``(us, seq)``; the default observation
   end, a global value, is computed on the driver and written into the SQL as a number.

pyspark is an optional dependency (``pip install 'webhook-audit[spark]'``): nothing else in the package
imports this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa
from pyarrow import parquet

from webhook_core.audit.replay import (
    CALLBACK_COLUMNS,
    LEAD_COLUMNS,
    TOKEN_NEVER_CONFIGURED,
    TOKEN_NOT_LIVE,
    _latest_us,
)
from webhook_core.audit.schema import DISPATCH_QUARANTINE, DISPATCHES, LOAD_REPORT, QUARANTINE
from webhook_core.domain import NOT_FOUND_BODY, LeadState, MatchedBy, Outcome
from webhook_core.exceptions import SparkEngineError
from webhook_core.load.dataset import Dataset, connect, load_dataset, prepare
from webhook_core.load.inputs import is_uri
from webhook_core.quoting import quote_identifier, quote_literal
from webhook_core.rules.keys import KEY_COLUMNS, keys_sql
from webhook_core.rules.settings import WebhookVersions
from webhook_core.timeutil import from_us, to_us

try:
    from pyspark.errors import PySparkException
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.functions import asc_nulls_last
except ImportError as error:  # the spark extra is not installed
    raise SparkEngineError("the Spark engine needs pyspark: pip install 'webhook-audit[spark]'") from error

from webhook_core.audit.spark_load import (  # (imports pyspark)
    LOADED_CALLBACKS,
    copy_to_local,
    join,
    load_uri,
    remove,
)

__all__ = ["SparkReplay", "replay_loaded", "replay_spark", "spark_session"]

#: ``callback_outcomes`` as Spark gives it: every column of the DuckDB view but ``ord`` (whose two parts,
#: ``us`` and ``seq``, are columns), in its order.
CALLBACK_OUTCOME_COLUMNS = (
    "seq", "request_id", "received_at", "webhook_id", "token", "conversion_id", "external_id", "advertiser_id",
    "matched_by", "lead_id", "outcome", "status_code", "response_body", "wait_s", "recorded_status", "lead_row",
    "us", "is_interim", "body_kind", "lead_quarantined", "owner_webhook_id", "token_webhook_id", "token_status",
)
#: ``lead_outcomes``: every column of the DuckDB view, in its order.
LEAD_OUTCOME_COLUMNS = (
    "row", "lead_id", "webhook_id", "created_at", "state", "finished_at", "wait_s", "callbacks", "first_callback_s",
    "conversion_id", "deadline", "observation_end", "waits",
)

#: The keys' Spark types, as the DuckDB SQL in each task casts them (``mapInArrow`` checks the batches' types).
_KEY_TYPES = {
    "seq": ("BIGINT", "BIGINT"), "request_id": ("VARCHAR", "STRING"), "us": ("BIGINT", "BIGINT"),
    "recorded_status": ("INTEGER", "INT"), "refused": ("BOOLEAN", "BOOLEAN"), "token": ("VARCHAR", "STRING"),
    "body_kind": ("VARCHAR", "STRING"), "webhook_id": ("VARCHAR", "STRING"), "conversion_id": ("VARCHAR", "STRING"),
    "external_id": ("VARCHAR", "STRING"), "advertiser_id": ("VARCHAR", "STRING"),
    "is_interim": ("BOOLEAN", "BOOLEAN"),
}
assert tuple(_KEY_TYPES) == KEY_COLUMNS, "the keys' types must follow rules.keys.KEY_COLUMNS"
_KEYS_SCHEMA = ", ".join(f"{name} {spark}" for name, (_, spark) in _KEY_TYPES.items())
_KEYS_CAST = ", ".join(f"CAST({name} AS {duck}) AS {name}" for name, (duck, _) in _KEY_TYPES.items())

#: The staged relation each task's DuckDB reads (one Arrow batch at a time).
_PART = "wa_part"


def spark_session(master: str | None = None, config: Mapping[str, str] | None = None) -> SparkSession:
    """The session to run on: the active one (spark-submit, a Databricks notebook) when ``master`` is None or
    names its master, else a new one on ``master`` (``local[2]``, ``spark://host:7077``, ``yarn``, …) with
    ``config`` (e.g. ``{"spark.driver.memory": "4g"}``).

    A local session's Python workers run this interpreter (they import webhook_core and the same duckdb)
    and bind to 127.0.0.1: a local run needs no network, and a hostname that resolves to nothing else
    only earns a warning.
    """
    active = SparkSession.getActiveSession()
    # (a Spark Connect session has no sparkContext: ask it for its master only when one was named)
    if active is not None and (master is None or active.sparkContext.master == master):
        return active
    launched = "PYSPARK_GATEWAY_PORT" in os.environ  # a JVM started by spark-submit: it set master and workers
    if (master or "local").startswith("local") and not launched:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("webhook-audit replay")
    if master is not None:
        builder = builder.master(master)
    # A naive timestamp means UTC (docs/semantics.md, I2), whatever the machine's zone.
    settings = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false", **(config or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except PySparkException as exc:
        raise SparkEngineError(f"Spark did not start ({str(exc).splitlines()[0]}); Spark 4 needs Java 17 "
                               "(`java -version`), and --spark-master a master it can reach") from exc


@dataclass
class SparkReplay:
    """The replay's outputs as Spark DataFrames. The keys and each callback's lead were computed when the
    replay was made (and written to the staging folder); the outcomes are computed from them when read.

    Use it as a context manager (or call :meth:`close`): the DataFrames read the staging folder (the loaded
    rows and the extracted keys), which :meth:`close` removes when the replay made it.
    """

    #: Every column of ``callback_outcomes`` but ``ord`` (:data:`CALLBACK_OUTCOME_COLUMNS`), in judging order.
    callback_outcomes: DataFrame
    #: Every column of ``lead_outcomes`` (:data:`LEAD_OUTCOME_COLUMNS`), in dispatch order.
    lead_outcomes: DataFrame
    observation_end: datetime | None
    #: Where the rows were staged: a local folder, or a URI (``replay_spark(stage_dir=…)``).
    stage_dir: Path | str
    _owns_stage: bool
    _closed: bool = field(default=False)
    #: The load's ``load_report`` and ``quarantine`` (as ``replay --out`` writes them), when
    #: :func:`replay_spark` loaded the dataset.
    load_report: pa.Table | None = None
    quarantine: pa.Table | None = None
    _spark: SparkSession | None = None

    def callbacks(self) -> DataFrame:
        """What ``replay --out`` writes as ``callback_outcomes``: ``replay.CALLBACK_COLUMNS``, in judging order."""
        return self.callback_outcomes.select(*CALLBACK_COLUMNS)

    def leads(self) -> DataFrame:
        """What ``replay --out`` writes as ``lead_outcomes``: ``replay.LEAD_COLUMNS``, in dispatch order."""
        return self.lead_outcomes.select(*LEAD_COLUMNS)

    def collect(self) -> tuple[pa.Table, pa.Table]:
        """Both outcome tables on the driver, as Arrow (every column; in judging and dispatch order). Bounded by
        the driver's memory and ``spark.driver.maxResultSize`` (1 GiB by default: about 8M callbacks); for
        more, :meth:`into_duckdb`."""
        return self.callback_outcomes.toArrow(), self.lead_outcomes.toArrow()

    def into_duckdb(self, con: duckdb.DuckDBPyConnection, callbacks_table: str, leads_table: str) -> None:
        """Both outcome tables (every column) into ``con`` as the tables ``callbacks_table`` and ``leads_table``,
        through Parquet that Spark writes to the staging location (copied here through Hadoop when that is a
        URI): the rows never pass through the driver's JVM, so no result size limits them. DuckDB holds them
        within its ``memory_limit``, spilling beyond it. In no particular order: sort when reading."""
        assert self._spark is not None, "into_duckdb needs the session the replay ran on"
        spark = self._spark
        stage = str(self.stage_dir)
        with tempfile.TemporaryDirectory(prefix="webhook-audit-outcomes-") as local:
            for table, frame in ((callbacks_table, self.callback_outcomes), (leads_table, self.lead_outcomes)):
                location = _location(stage, f"outcomes-{table}")
                # Microseconds with their zone (the default, INT96, would read back without one).
                with _session_setting(spark, "spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"):
                    frame.write.mode("overwrite").parquet(location)
                if is_uri(stage):
                    folder = Path(local) / table
                    copy_to_local(spark, location, folder)
                else:
                    folder = Path(stage).resolve() / f"outcomes-{table}"
                files = quote_literal(str(folder / "*.parquet"))
                con.execute(f"CREATE OR REPLACE TABLE {quote_identifier(table)} AS SELECT * FROM read_parquet({files})")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_stage:
            _remove_stage(self._spark, self.stage_dir)

    def __enter__(self) -> SparkReplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def replay_spark(dataset: str | Path, *, spark: SparkSession | None = None,
                 timeouts: Mapping[str | None, float] | None = None, observation_end: datetime | None = None,
                 stage_dir: str | Path | None = None, partitions: int | None = None,
                 max_quarantined: float | None = None, timestamp_format: str | None = None) -> SparkReplay:
    """Load ``dataset`` and replay it on Spark: the same outputs as :func:`~webhook_core.audit.replay.replay` with
    the same arguments. A local folder is loaded on the driver (:func:`~webhook_core.load.dataset.load_dataset`);
    a URI (``s3a://…``, ``file:///…``) through Spark, each callbacks file in a task (``spark_load.py``).

    ``spark`` defaults to :func:`spark_session` (the active session, else a local one). ``stage_dir`` is where
    the loaded rows are staged as Parquet, a local folder or a URI (default: a new temporary folder, removed by
    ``close()``); on a cluster it must be storage the driver writes and every executor reads (docs/spark.md).
    ``partitions`` splits the callbacks into that many tasks for the extraction (default: as Spark reads them).
    """
    con = connect()
    try:
        callbacks = None
        if is_uri(dataset):
            spark = spark or spark_session()
            owns_stage = stage_dir is None
            stage = tempfile.mkdtemp(prefix="webhook-audit-spark-") if stage_dir is None else str(stage_dir)
            try:
                staged = load_uri(spark, con, str(dataset), _location(stage), max_quarantined=max_quarantined,
                                  timestamp_format=timestamp_format)
            except BaseException:
                if owns_stage:
                    _remove_stage(spark, stage)
                raise
            loaded, callbacks, stage_dir = staged.dataset, staged.callbacks, stage
        else:
            loaded = load_dataset(con, dataset, max_quarantined=max_quarantined, timestamp_format=timestamp_format)
            owns_stage = stage_dir is None
        result = _replay(spark or spark_session(), con, loaded, timeouts=timeouts, observation_end=observation_end,
                         stage_dir=stage_dir, owns_stage=owns_stage, partitions=partitions, callbacks=callbacks)
        cursor = con.cursor()  # (an execute() above leaves a result open on con)
        result.load_report = cursor.sql(
            f"SELECT * FROM {LOAD_REPORT} ORDER BY table_name DESC, source_file").to_arrow_table()
        result.quarantine = cursor.sql(f"SELECT * FROM {QUARANTINE} ORDER BY source_file, line").to_arrow_table()
        return result
    finally:
        con.close()


def replay_loaded(spark: SparkSession, con: duckdb.DuckDBPyConnection, loaded: Dataset, *,
                  timeouts: Mapping[str | None, float] | None = None, observation_end: datetime | None = None,
                  stage_dir: str | Path | None = None, partitions: int | None = None,
                  callbacks: DataFrame | None = None) -> SparkReplay:
    """:func:`replay_spark` of a dataset loaded into ``con`` (with ``keep_requests=True``, the default), or, with
    ``callbacks``, of a URI dataset whose callbacks Spark loaded and staged (``spark_load.load_uri``). Runs the
    extraction and the callbacks' resolution on ``spark`` before it returns."""
    return _replay(spark, con, loaded, timeouts=timeouts, observation_end=observation_end, stage_dir=stage_dir,
                   owns_stage=stage_dir is None, partitions=partitions, callbacks=callbacks)


def _replay(spark: SparkSession, con: duckdb.DuckDBPyConnection, loaded: Dataset, *,
            timeouts: Mapping[str | None, float] | None, observation_end: datetime | None,
            stage_dir: str | Path | None, owns_stage: bool, partitions: int | None,
            callbacks: DataFrame | None) -> SparkReplay:
    webhooks = loaded.webhooks
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'callback_keys'").fetchone() != (0,):
        raise SparkEngineError("the callbacks were loaded with keep_requests=False: the Spark engine extracts their "
                               "keys itself; load the dataset with keep_requests=True")
    versions = webhooks.with_timeouts(timeouts) if timeouts else webhooks
    stage = tempfile.mkdtemp(prefix="webhook-audit-spark-") if stage_dir is None else str(stage_dir)
    try:
        end_us = to_us(observation_end) if observation_end is not None else _latest(con, callbacks)
        _stage(spark, con, stage, with_callbacks=callbacks is None)
        if callbacks is None:
            callbacks = spark.read.parquet(_location(stage, "callbacks.parquet"))
        if partitions is not None:
            callbacks = callbacks.repartition(int(partitions))
        keys = callbacks.mapInArrow(partial(_keys_of_partition, _task_sql(webhooks)), _KEYS_SCHEMA)
        _stage_versions(spark, versions, stage)
        callback_outcomes, lead_outcomes = _match(
            spark, keys, end_us=end_us, checkpoint=partial(_checkpoint, spark, stage),
            **{name: spark.read.parquet(_location(stage, f"{name}.parquet"))
               for name in ("dispatches", "dispatch_quarantine", "versions")})
    except BaseException:
        if owns_stage:
            _remove_stage(spark, stage)
        raise
    resolved_end = observation_end if observation_end is not None or end_us is None else from_us(end_us)
    return SparkReplay(callback_outcomes, lead_outcomes, resolved_end, stage if is_uri(stage) else Path(stage),
                       owns_stage, _spark=spark)


@contextlib.contextmanager
def _session_setting(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """``key`` set to ``value`` in the session for the block, then as it was."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def _location(stage: str, name: str | None = None) -> str:
    """``name`` in the staging location ``stage`` (a local folder or a URI), as a URI for Spark."""
    if is_uri(stage):
        return stage.rstrip("/") if name is None else join(stage, name)
    folder = Path(stage).resolve()
    return (folder if name is None else folder / name).as_uri()


def _remove_stage(spark: SparkSession | None, stage: str | Path) -> None:
    if is_uri(stage) and spark is not None:
        remove(spark, str(stage))
    elif not is_uri(stage):
        shutil.rmtree(stage, ignore_errors=True)


def _latest(con: duckdb.DuckDBPyConnection, callbacks: DataFrame | None) -> int | None:
    """The default observation end (``replay._latest_us``): of ``con``'s tables, and of the ``callbacks`` Spark
    loaded (a URI dataset's) when given."""
    latest = _latest_us(con, False)
    con.complete()  # (its fetchone leaves the result open, and DuckDB refuses con other work until it ends)
    if callbacks is None:
        return latest
    (staged,) = callbacks.selectExpr("max(unix_micros(received_at))").first() or (None,)
    return max((us for us in (latest, staged) if us is not None), default=None)


def _stage(spark: SparkSession, con: duckdb.DuckDBPyConnection, stage: str, *, with_callbacks: bool) -> None:
    """The loaded rows the replay reads, as Parquet in ``stage``: ``callbacks`` as ``keys_sql`` reads them (unless
    Spark loaded them). DuckDB writes them to a local folder; Spark to a URI (storage the executors read)."""
    relations = {
        "callbacks": LOADED_CALLBACKS,
        "dispatches": f"""SELECT "row", lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at
                          FROM {DISPATCHES}""",
        "dispatch_quarantine": f"SELECT conversion_id, external_id, advertiser_id FROM {DISPATCH_QUARANTINE}",
    }
    if not with_callbacks:
        del relations["callbacks"]
    if not is_uri(stage):
        Path(stage).mkdir(parents=True, exist_ok=True)
    cursor = con.cursor()
    for name, query in relations.items():
        if is_uri(stage):
            _write(spark, cursor.sql(query).to_arrow_table(), join(stage, f"{name}.parquet"))
        else:
            target = quote_literal(str(Path(stage) / f"{name}.parquet"))
            con.execute(f"COPY ({query}) TO {target} (FORMAT parquet)")


def _write(spark: SparkSession, table: pa.Table, uri: str) -> None:
    """``table`` written by Spark as Parquet at ``uri``."""
    spark.createDataFrame(table).write.mode("overwrite").parquet(uri)


def _task_sql(webhooks: WebhookVersions) -> str:
    """The DuckDB query each task runs on its rows: the keys, typed as :data:`_KEYS_SCHEMA` says."""
    return f"SELECT {_KEYS_CAST} FROM ({keys_sql(webhooks, _PART)})"


def _keys_of_partition(sql: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """In a Spark task: the keys of its rows, by DuckDB (one connection a task, one thread: Spark runs the
    tasks side by side)."""
    con = duckdb.connect()
    try:
        prepare(con, threads=1)
        for batch in batches:
            con.register(_PART, pa.Table.from_batches([batch]))
            yield from con.sql(sql).to_arrow_table().to_batches()
            con.unregister(_PART)
    finally:
        con.close()


def _stage_versions(spark: SparkSession, webhooks: WebhookVersions, stage: str) -> None:
    """The versions (with the what-if timeouts) as ``versions.parquet``: a Parquet scan gives Spark their size,
    so it broadcasts small ones (a DataFrame made from Python rows would be of unknown size)."""
    rows = [(v.webhook_id, v.wait, v.timeout_us, None if v.active_from is None else to_us(v.active_from),
             None if v.active_to is None else to_us(v.active_to)) for v in webhooks.versions]
    names = ("webhook_id", "wait", "timeout_us", "active_from_us", "active_to_us")
    types = (pa.string(), pa.bool_(), pa.int64(), pa.int64(), pa.int64())
    columns = [pa.array([row[index] for row in rows], kind) for index, kind in enumerate(types)]
    table = pa.table(columns, names=list(names))
    if is_uri(stage):
        _write(spark, table, join(stage, "versions.parquet"))
    else:
        parquet.write_table(table, Path(stage) / "versions.parquet")


def _checkpoint(spark: SparkSession, stage: str, name: str, frame: DataFrame) -> DataFrame:
    """``frame`` written to ``stage`` and read back, so that the plans reading it several times compute it once
    (a cached DataFrame was not reused by the SQL below: Spark extracted the keys again for each reader)."""
    location = _location(stage, f"{name}.parquet")
    frame.write.mode("overwrite").parquet(location)
    return spark.read.parquet(location)


def _match(spark: SparkSession, keys: DataFrame, *, dispatches: DataFrame, dispatch_quarantine: DataFrame,
           versions: DataFrame, end_us: int | None,
           checkpoint: Callable[[str, DataFrame], DataFrame]) -> tuple[DataFrame, DataFrame]:
    """``replay.py``'s matching in Spark SQL: ``callback_outcomes`` and ``lead_outcomes`` (every column)."""
    end = "CAST(NULL AS BIGINT)" if end_us is None else str(int(end_us))
    keys = checkpoint("keys", keys)
    leads = spark.sql(_LEADS, dispatches=dispatches, versions=versions)
    by_conversion = spark.sql(_BY_CONVERSION, keys=keys, leads=leads)
    by_external = spark.sql(_BY_EXTERNAL, by_conversion=by_conversion, leads=leads)
    resolved = checkpoint("resolved", spark.sql(_RESOLVED, by_conversion=by_conversion, by_external=by_external))
    lead_calls = spark.sql(_lead_calls_sql(end), resolved=resolved)
    callback_outcomes = spark.sql(
        _CALLBACK_OUTCOMES, args={"not_found": NOT_FOUND_BODY.decode()}, resolved=resolved, lead_calls=lead_calls,
        versions=versions, dispatch_quarantine=dispatch_quarantine)
    lead_outcomes = spark.sql(_lead_outcomes_sql(end), leads=leads, lead_calls=lead_calls)
    return (callback_outcomes.sort(asc_nulls_last("us"), asc_nulls_last("seq")).select(*CALLBACK_OUTCOME_COLUMNS),
            lead_outcomes.sort(asc_nulls_last("row")).select(*LEAD_OUTCOME_COLUMNS))


# The statements below are replay.py's, in Spark SQL; ``{name}`` is a DataFrame passed to ``spark.sql``.

#: ``replay_leads``: each lead with the settings it was dispatched under.
_LEADS = """
    SELECT d.`row`, d.lead_id, d.conversion_id, d.advertiser_id, d.external_id, d.webhook_id,
           unix_micros(d.created_at) AS created_us, v.wait AS waits,
           CASE WHEN v.wait AND v.timeout_us IS NOT NULL THEN unix_micros(d.created_at) + v.timeout_us END
               AS deadline_us
    FROM {dispatches} d
    JOIN {versions} v
      ON v.webhook_id = d.webhook_id
     AND (v.active_from_us IS NULL OR v.active_from_us <= unix_micros(d.created_at))
     AND (v.active_to_us IS NULL OR unix_micros(d.created_at) < v.active_to_us)
"""

#: ``replay_by_conversion``: a conversion ID names at most one lead (Q3).
_BY_CONVERSION = """
    SELECT i.*, l.`row` AS c_row, l.lead_id AS c_lead_id, l.created_us AS c_created_us,
           l.deadline_us AS c_deadline_us, l.webhook_id AS c_webhook_id,
           coalesce(l.webhook_id = i.webhook_id, false) AS own
    FROM {keys} i LEFT JOIN {leads} l
      ON l.conversion_id = i.conversion_id AND i.webhook_id IS NOT NULL
"""

#: ``replay_by_external`` (M3); every sort key says where its NULLs go, as DuckDB puts them (last).
_BY_EXTERNAL = """
    SELECT seq, lead_row, lead_id, created_us, deadline_us FROM (
        SELECT n.seq, l.`row` AS lead_row, l.lead_id, l.created_us, l.deadline_us,
               row_number() OVER (
                   PARTITION BY n.seq
                   ORDER BY CASE WHEN l.created_us <= n.us THEN 0 ELSE 1 END ASC NULLS LAST,
                            CASE WHEN l.created_us <= n.us THEN l.created_us END DESC NULLS LAST,
                            CASE WHEN l.created_us <= n.us THEN l.`row` END DESC NULLS LAST,
                            l.created_us ASC NULLS LAST, l.`row` ASC NULLS LAST) AS pick
        FROM (SELECT seq, us, webhook_id, advertiser_id, external_id FROM {by_conversion}
              WHERE webhook_id IS NOT NULL AND external_id IS NOT NULL AND NOT own) n
        JOIN (SELECT * FROM {leads} WHERE external_id IS NOT NULL) l
          ON l.webhook_id = n.webhook_id AND l.advertiser_id = n.advertiser_id AND l.external_id = n.external_id
    ) WHERE pick = 1
"""

_MATCHED_BY = {name: quote_literal(member.value) for name, member in MatchedBy.__members__.items()}

#: ``replay_resolved``: each callback's lead; ``matched_by`` as its name (DuckDB stores a code).
_RESOLVED = f"""
    SELECT *, us < created_us AS is_early, deadline_us IS NOT NULL AND us > deadline_us AS is_late
    FROM (
        SELECT c.seq, c.request_id, c.us, c.recorded_status, c.refused, c.token, c.body_kind, c.webhook_id,
               c.conversion_id, c.external_id, c.advertiser_id, c.is_interim,
               CASE WHEN own THEN c_row ELSE e.lead_row END AS lead_row,
               CASE WHEN own THEN {_MATCHED_BY['CONVERSION_ID']}
                    WHEN e.lead_row IS NOT NULL THEN {_MATCHED_BY['EXTERNAL_ID']} END AS matched_by,
               CASE WHEN own THEN c_lead_id ELSE coalesce(e.lead_id, c_lead_id) END AS lead_id,
               NOT own AND e.lead_row IS NULL AND c_row IS NOT NULL AS other_webhook,
               CASE WHEN NOT own AND e.lead_row IS NULL THEN c_webhook_id END AS owner_webhook_id,
               CASE WHEN own THEN c_created_us ELSE e.created_us END AS created_us,
               CASE WHEN own THEN c_deadline_us ELSE e.deadline_us END AS deadline_us
        FROM {{by_conversion}} c LEFT JOIN {{by_external}} e ON e.seq = c.seq
    )
"""

def _lead_calls_sql(end: str) -> str:
    """``replay_lead_calls``; ``finish_ord`` is ``min(ord)`` as the pair ``(us, seq)``, which sorts as ``ord``
    does; ``end`` is the observation end in µs."""
    return f"""
    SELECT lead_row,
           min(named_struct('us', us, 'seq', seq)) FILTER (WHERE could_finish) AS finish_ord,
           min(us) FILTER (WHERE could_finish) AS finished_us,
           count(*) FILTER (WHERE us <= {end}) AS callbacks,
           min(us) FILTER (WHERE us >= created_us AND us <= {end}) AS first_us
    FROM (SELECT lead_row, us, seq, created_us, NOT is_early AND NOT is_late AND NOT is_interim AS could_finish
          FROM {{resolved}} WHERE lead_row IS NOT NULL)
    GROUP BY lead_row
    """

_OUTCOME = {name: quote_literal(member.value) for name, member in Outcome.__members__.items()}
_STATE = {name: quote_literal(member.value) for name, member in LeadState.__members__.items()}


_TOKEN_STATUS = (f"CASE WHEN token_webhook_id IS NOT NULL THEN {quote_literal(TOKEN_NOT_LIVE)} "
                 f"ELSE {quote_literal(TOKEN_NEVER_CONFIGURED)} END")


#: ``callback_outcome_rows`` and the ``callback_outcomes`` view in one: outcomes by name, not code. The 404 body
#: is a parameter: ``spark.sql`` would read its braces as a placeholder.
_CALLBACK_OUTCOMES = f"""
    SELECT seq, request_id, timestamp_micros(us) AS received_at, webhook_id, token, conversion_id, external_id,
           advertiser_id, matched_by, lead_id, outcome,
           CASE WHEN outcome IN ({_OUTCOME['MATCHED']}, {_OUTCOME['INTERIM']}) THEN 200
                WHEN outcome = {_OUTCOME['REFUSED']} THEN recorded_status ELSE 404 END AS status_code,
           CASE WHEN outcome NOT IN ({_OUTCOME['MATCHED']}, {_OUTCOME['INTERIM']}, {_OUTCOME['REFUSED']})
                THEN :not_found END AS response_body,
           wait_s, recorded_status, lead_row, us, is_interim, body_kind, lead_quarantined, owner_webhook_id,
           token_webhook_id,
           CASE WHEN outcome = {_OUTCOME['UNKNOWN_TOKEN']} THEN {_TOKEN_STATUS} END AS token_status
    FROM (
        SELECT r.seq, r.request_id, r.us, r.webhook_id, r.token, r.conversion_id, r.external_id, r.advertiser_id,
               r.matched_by, r.lead_id,
               CASE
                   WHEN r.refused THEN {_OUTCOME['REFUSED']}
                   WHEN r.webhook_id IS NULL THEN {_OUTCOME['UNKNOWN_TOKEN']}
                   WHEN r.conversion_id IS NULL AND r.external_id IS NULL THEN {_OUTCOME['NO_IDENTIFIERS']}
                   WHEN r.other_webhook THEN {_OUTCOME['WRONG_WEBHOOK']}
                   WHEN r.lead_row IS NULL THEN {_OUTCOME['NOT_FOUND']}
                   WHEN r.is_early THEN {_OUTCOME['EARLY']}
                   WHEN named_struct('us', r.us, 'seq', r.seq) > f.finish_ord THEN {_OUTCOME['DUPLICATE']}
                   WHEN r.is_late THEN {_OUTCOME['LATE']}
                   WHEN r.is_interim THEN {_OUTCOME['INTERIM']}
                   ELSE {_OUTCOME['MATCHED']}
               END AS outcome,
               CASE WHEN r.lead_row IS NOT NULL THEN (r.us - r.created_us) / 1e6 END AS wait_s,
               r.recorded_status, r.lead_row, r.is_interim, r.body_kind,
               coalesce(r.lead_row IS NULL AND r.webhook_id IS NOT NULL AND (
                   r.conversion_id IN (
                       SELECT conversion_id FROM {{dispatch_quarantine}} WHERE conversion_id IS NOT NULL)
                   OR (r.external_id IS NOT NULL AND EXISTS (
                       SELECT 1 FROM {{dispatch_quarantine}} q
                       WHERE q.external_id = r.external_id AND q.advertiser_id = r.advertiser_id))), false)
                   AS lead_quarantined,
               r.owner_webhook_id,
               CASE WHEN NOT r.refused AND r.webhook_id IS NULL
                         AND r.token IN (SELECT webhook_id FROM {{versions}}) THEN r.token END AS token_webhook_id
        FROM {{resolved}} r LEFT JOIN {{lead_calls}} f ON f.lead_row = r.lead_row
    )
"""

def _lead_outcomes_sql(end: str) -> str:
    """``lead_outcome_rows`` and the ``lead_outcomes`` view in one; ``end`` is the observation end in µs."""
    return f"""
    SELECT `row`, lead_id, webhook_id, timestamp_micros(created_us) AS created_at, state,
           timestamp_micros(finished_us) AS finished_at, (finished_us - created_us) / 1e6 AS wait_s, callbacks,
           (first_us - created_us) / 1e6 AS first_callback_s, conversion_id,
           timestamp_micros(deadline_us) AS deadline, timestamp_micros({end}) AS observation_end, waits
    FROM (
        SELECT l.`row`, l.lead_id, l.webhook_id, l.created_us,
               CASE
                   WHEN p.finished_us <= {end} THEN {_STATE['RECEIVED']}
                   WHEN l.deadline_us IS NOT NULL AND {end} > l.deadline_us THEN {_STATE['TIMED_OUT']}
                   ELSE {_STATE['WAITING']}
               END AS state,
               CASE WHEN p.finished_us <= {end} THEN p.finished_us END AS finished_us,
               coalesce(p.callbacks, 0) AS callbacks, p.first_us, l.conversion_id, l.deadline_us, l.waits
        FROM {{leads}} l LEFT JOIN {{lead_calls}} p ON p.lead_row = l.`row`
    )
    """
