"""``webhook-audit replay --engine spark``: the load (on this machine for a local folder, in Spark tasks for a
URI), the replay on Spark.

The outcome tables come back to this process and are registered in the load's DuckDB connection under the
names the DuckDB replay writes (``callback_outcomes``, ``lead_outcomes``), so ``replay`` prints and exports
them as it does its own: the same files either way. pyspark is imported only here, and only when asked for.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb

from webhook_core.audit.replay import ReplayResult
from webhook_core.audit.schema import CALLBACK_OUTCOMES, LEAD_OUTCOMES
from webhook_core.cli.output import print_load_report, stderr
from webhook_core.exceptions import SparkEngineError
from webhook_core.load.inputs import is_uri

__all__ = ["replay_on_spark"]


def replay_on_spark(con: duckdb.DuckDBPyConnection, dataset: str, *, master: str | None,
                    timeouts: Mapping[str | None, float], observation_end: datetime | None,
                    max_quarantined: float | None, timestamp_format: str | None,
                    temp_dir: Path | None, stage: str | None = None) -> ReplayResult:
    """Load ``dataset`` into ``con``, replay it on Spark and register the outcomes in ``con``.

    A local folder is loaded here, before Spark starts; a URI through Spark, its callbacks files in tasks
    (``spark_load.py``). The staged Parquet files go to a new folder in ``stage`` (a folder or a URI; default:
    ``temp_dir``, else the system's temporary folder), removed afterwards; on a cluster it must be storage every
    executor reads (docs/spark.md).
    """
    from webhook_core.audit.spark_replay import replay_loaded, spark_session
    from webhook_core.cli.replay_commands import load_with_progress

    callbacks = None
    if not is_uri(dataset):
        # The Spark engine extracts the keys from the requests itself (in its tasks): keep them.
        loaded = load_with_progress(con, Path(dataset), keep_requests=True, max_quarantined=max_quarantined,
                                    timestamp_format=timestamp_format)
        print_load_report(loaded)
    from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    from webhook_core.audit.spark_load import load_uri, remove

    spark = spark_session(master)
    try:
        with contextlib.ExitStack() as cleanup:
            if stage is not None and is_uri(stage):
                staging = f"{stage.rstrip('/')}/webhook-audit-spark-{uuid.uuid4().hex}"
                cleanup.callback(remove, spark, staging)
            else:
                parent = Path(stage) if stage is not None else temp_dir
                if parent is not None:
                    parent.mkdir(parents=True, exist_ok=True)  # as DuckDB makes --temp-dir to spill
                staging = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="webhook-audit-spark-",
                                                                            dir=parent))
            if is_uri(dataset):
                with stderr.status("Loading on Spark…"):
                    staged = load_uri(spark, con, dataset, staging if is_uri(staging) else Path(staging).as_uri(),
                                      required=("dispatches", "callbacks"), max_quarantined=max_quarantined,
                                      timestamp_format=timestamp_format)
                loaded, callbacks = staged.dataset, staged.callbacks
                print_load_report(loaded)
            with (stderr.status("Replaying on Spark…"),
                  replay_loaded(spark, con, loaded, timeouts=timeouts, observation_end=observation_end,
                                stage_dir=staging, callbacks=callbacks) as result):
                # Through Parquet files, not collected: a result past spark.driver.maxResultSize would fail.
                result.into_duckdb(con, CALLBACK_OUTCOMES, LEAD_OUTCOMES)
    except (PySparkException, Py4JJavaError) as exc:
        raise SparkEngineError(f"Spark: {_first_line(exc)}") from exc
    return ReplayResult(con, result.observation_end)


def _first_line(error: Exception) -> str:
    """What went wrong, on one line: a Java error's innermost cause (a Py4J error's text is a Java stack)."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        while java.getCause() is not None:
            java = java.getCause()
        return str(java.getMessage() or java.toString()).strip().splitlines()[0]
    return str(error).strip().splitlines()[0]
