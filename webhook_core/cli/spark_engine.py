"""``webhook-audit replay --engine spark``: the load on this machine (DuckDB), the replay on Spark.

The outcome tables come back to this process and are registered in the load's DuckDB connection under the
names the DuckDB replay writes (``callback_outcomes``, ``lead_outcomes``), so ``replay`` prints and exports
them as it does its own: the same files either way. pyspark is imported only here, and only when asked for.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb

from webhook_core.audit.replay import ReplayResult
from webhook_core.audit.schema import CALLBACK_OUTCOMES, LEAD_OUTCOMES
from webhook_core.cli.output import print_load_report, stderr
from webhook_core.exceptions import SparkEngineError

__all__ = ["replay_on_spark"]


def replay_on_spark(con: duckdb.DuckDBPyConnection, dataset: Path, *, master: str | None,
                    timeouts: Mapping[str | None, float], observation_end: datetime | None,
                    max_quarantined: float | None, timestamp_format: str | None,
                    temp_dir: Path | None) -> ReplayResult:
    """Load ``dataset`` into ``con``, replay it on Spark and register the outcomes in ``con``.

    The staged Parquet files go to a folder under ``temp_dir`` (default: the system's), removed afterwards; on
    a cluster ``temp_dir`` must be a folder every executor reads (docs/spark.md).
    """
    from webhook_core.audit.spark_replay import replay_loaded, spark_session
    from webhook_core.cli.replay_commands import load_with_progress

    # The Spark engine extracts the keys from the requests itself (in its tasks): keep them.
    loaded = load_with_progress(con, dataset, keep_requests=True, max_quarantined=max_quarantined,
                                timestamp_format=timestamp_format)
    print_load_report(loaded)
    from pyspark.errors import PySparkException

    spark = spark_session(master)
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)  # as DuckDB makes it to spill
    try:
        with (tempfile.TemporaryDirectory(prefix="webhook-audit-spark-", dir=temp_dir) as stage,
              stderr.status("Replaying on Spark…"),
              replay_loaded(spark, con, loaded, timeouts=timeouts, observation_end=observation_end,
                            stage_dir=stage) as result):
            callbacks, leads = result.collect()
    except PySparkException as exc:
        raise SparkEngineError(f"Spark: {str(exc).strip().splitlines()[0]}") from exc
    con.register(CALLBACK_OUTCOMES, callbacks)
    con.register(LEAD_OUTCOMES, leads)
    return ReplayResult(con, result.observation_end)
