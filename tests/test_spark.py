"""The replay on Apache Spark equals the DuckDB replay row for row, on every column of both outputs.

Differential: the property test's random datasets (tests/test_property.py's generators: ties, offsets,
recreated webhooks, every location kind, interim statuses, refused lines, what-if timeouts), each with and
without an explicit observation end and with the callbacks split into one or three extraction tasks; the
bundled sample; and ``replay --engine spark --out`` against ``replay --out``, file by file. Every column of
DuckDB's ``callback_outcomes`` (but ``ord``, whose parts ``us`` and ``seq`` are columns) and
``lead_outcomes`` is compared, with its Arrow type. The run fails at the module's teardown when an outcome,
match kind, lead state or attribution the comparison should cover never showed up in it.

One local Spark session (``local[2]``, two shuffle partitions) serves the whole run. Without pyspark or
Java the module is skipped, unless ``WEBHOOK_AUDIT_REQUIRE_SPARK=1`` (CI sets it: .ci/run) makes that a
failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from webhook_core import CALLBACK_ORDER, DatasetError, SparkEngineError, connect, load_dataset, replay
from webhook_core.cli import cli

from datasets import write_dataset
from test_property import BASE, Case, datasets

REPOSITORY = Path(__file__).resolve().parent.parent
SAMPLE = REPOSITORY / "data" / "sample"

pytestmark = pytest.mark.spark

if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
    if os.environ.get("WEBHOOK_AUDIT_REQUIRE_SPARK") == "1":
        pytest.fail("the Spark tests need pyspark (pip install -e '.[dev,spark]') and Java 17", pytrace=False)
    pytest.skip("needs pyspark (the spark extra) and Java 17", allow_module_level=True)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from webhook_core.audit.spark_replay import spark_session

    session = spark_session("local[2]", {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


# --------------------------------------------------------------------------- the comparison


def duckdb_outputs(folder: Path, timeouts: dict[str | None, float] | None = None,
                   observation_end: datetime | None = None) -> tuple[pa.Table, pa.Table]:
    """The DuckDB replay's ``callback_outcomes`` (every column but ``ord``) and ``lead_outcomes``, in order."""
    con = connect()
    try:
        replay(con, load_dataset(con, folder).webhooks, timeouts=timeouts, observation_end=observation_end)
        # (a cursor: the replay leaves a result open on its connection, which a relation may not share)
        cursor = con.cursor()
        callbacks = cursor.sql(f"SELECT * EXCLUDE (ord) FROM callback_outcomes ORDER BY {CALLBACK_ORDER}")
        leads = cursor.sql('SELECT * FROM lead_outcomes ORDER BY "row"')
        return callbacks.to_arrow_table(), leads.to_arrow_table()
    finally:
        con.close()


def spark_outputs(spark: Any, folder: Path, timeouts: dict[str | None, float] | None = None,
                  observation_end: datetime | None = None, partitions: int | None = None) -> tuple[pa.Table, pa.Table]:
    from webhook_core.audit.spark_replay import replay_spark

    with replay_spark(folder, spark=spark, timeouts=timeouts, observation_end=observation_end,
                      partitions=partitions) as result:
        return result.collect()


def arrow_types(table: pa.Table) -> list[tuple[str, pa.DataType]]:
    """Each column's name and type; a timestamp's zone UTC however spelled (DuckDB says Etc/UTC, Spark UTC)."""
    def plain(kind: pa.DataType) -> pa.DataType:
        return pa.timestamp(kind.unit, "UTC") if pa.types.is_timestamp(kind) and kind.tz == "Etc/UTC" else kind

    return [(field.name, plain(field.type)) for field in table.schema]


def assert_same(duck: pa.Table, spark: pa.Table, what: str) -> None:
    """Same columns in the same order, of the same Arrow types, and the same rows in the same order."""
    assert spark.column_names == duck.column_names, what
    assert arrow_types(spark) == arrow_types(duck), what
    assert spark.num_rows == duck.num_rows, what
    for index, (expected, got) in enumerate(zip(duck.to_pylist(), spark.to_pylist(), strict=True)):
        differing = {name: (expected[name], got[name]) for name in expected if got[name] != expected[name]}
        assert not differing, f"{what} row {index}: (duckdb, spark) {differing}"


def assert_engines_agree(spark: Any, folder: Path, *, timeouts: dict[str | None, float] | None = None,
                         observation_end: datetime | None = None, partitions: int | None = None) -> pa.Table:
    duck_callbacks, duck_leads = duckdb_outputs(folder, timeouts, observation_end)
    spark_callbacks, spark_leads = spark_outputs(spark, folder, timeouts, observation_end, partitions)
    assert_same(duck_callbacks, spark_callbacks, "callback_outcomes")
    assert_same(duck_leads, spark_leads, "lead_outcomes")
    return duck_callbacks


# --------------------------------------------------------------------------- random datasets

#: What the random datasets compared so far showed (``covered``), for the check at the module's teardown.
SEEN: Counter[str] = Counter()
REQUIRED = (
    "outcome matched", "outcome interim", "outcome early", "outcome duplicate", "outcome late",
    "outcome wrong_webhook", "outcome not_found", "outcome no_identifiers", "outcome unknown_token",
    "outcome refused", "matched_by conversion_id", "matched_by external_id", "state received", "state timed_out",
    "state waiting", "lead_quarantined", "token_status not live at received_at", "token_status never configured",
    "owner_webhook_id", "explicit observation end", "three extraction tasks",
)


def covered(callbacks: pa.Table, leads: pa.Table) -> set[str]:
    kinds = {f"outcome {o}" for o in callbacks.column("outcome").to_pylist()}
    kinds |= {f"matched_by {m}" for m in callbacks.column("matched_by").to_pylist() if m}
    kinds |= {f"state {s}" for s in leads.column("state").to_pylist()}
    kinds |= {f"token_status {s}" for s in callbacks.column("token_status").to_pylist() if s}
    if any(callbacks.column("lead_quarantined").to_pylist()):
        kinds.add("lead_quarantined")
    if any(callbacks.column("owner_webhook_id").to_pylist()):
        kinds.add("owner_webhook_id")
    return kinds


@pytest.fixture(scope="module", autouse=True)
def every_kind_compared(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the run when the random datasets never reached something the comparison should cover."""
    failed_before = request.session.testsfailed
    SEEN.clear()
    yield
    if request.session.testsfailed > failed_before or not SEEN:
        return  # a difference was found (that is the report), or the random test did not run
    missing = [kind for kind in REQUIRED if not SEEN[kind]]
    assert not missing, f"never compared: {missing}; make the strategies reach them"


@given(case=datasets(), end_s=st.sampled_from((None, 30.5)), partitions=st.sampled_from((1, 3)))
# No shrinking: each example costs seconds of Spark, and a failing one is small as drawn.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
def test_spark_replay_equals_duckdb_replay(spark: Any, tmp_path_factory: pytest.TempPathFactory, case: Case,
                                           end_s: float | None, partitions: int) -> None:
    folder = write_dataset(tmp_path_factory.mktemp("spark"), case.webhooks, case.leads, case.callbacks)
    observation_end = None if end_s is None else BASE + timedelta(seconds=end_s)
    duck_callbacks, duck_leads = duckdb_outputs(folder, case.timeouts, observation_end)
    spark_callbacks, spark_leads = spark_outputs(spark, folder, case.timeouts, observation_end, partitions)
    assert_same(duck_callbacks, spark_callbacks, "callback_outcomes")
    assert_same(duck_leads, spark_leads, "lead_outcomes")
    SEEN.update(covered(duck_callbacks, duck_leads))
    SEEN.update(["explicit observation end"] * (end_s is not None) + ["three extraction tasks"] * (partitions == 3))


# --------------------------------------------------------------------------- the sample, what-ifs


def test_sample_as_written(spark: Any) -> None:
    callbacks = assert_engines_agree(spark, SAMPLE, partitions=3)
    assert callbacks.num_rows > 3000


def test_sample_with_a_what_if_and_an_observation_end(spark: Any) -> None:
    # Mid-sample: some leads are still waiting, others timed out under the shorter timeout.
    moment = datetime.fromisoformat("2026-11-20T12:00:00+00:00")
    assert_engines_agree(spark, SAMPLE, timeouts={None: 20.0}, observation_end=moment)


@pytest.mark.parametrize("stage", ["folder", "uri"])
def test_outcomes_into_duckdb_equal_the_collected_ones(spark: Any, tmp_path: Path, stage: str) -> None:
    # What replay --engine spark --out writes from: files Spark writes (a collect stops at
    # spark.driver.maxResultSize, 1 GiB by default: it failed at 10M callbacks), copied here from a URI stage.
    from webhook_core.audit.spark_replay import replay_spark

    where = tmp_path / "stage"
    con = connect()
    with replay_spark(SAMPLE, spark=spark, stage_dir=where.as_uri() if stage == "uri" else where) as result:
        collected = result.collect()
        result.into_duckdb(con, "callbacks_here", "leads_here")
    callbacks = con.sql(f"SELECT * FROM callbacks_here ORDER BY {CALLBACK_ORDER}").to_arrow_table()
    leads = con.sql('SELECT * FROM leads_here ORDER BY "row"').to_arrow_table()
    assert_same(collected[0], callbacks, "callback_outcomes")
    assert_same(collected[1], leads, "lead_outcomes")


# --------------------------------------------------------------------------- rule cases


T0 = datetime.fromisoformat("2026-11-20T10:00:00+00:00")
#: M3's choices among the leads of one webhook sharing an external ID (tests/test_rules.py's cases), each on a
#: webhook of its own: the leads' creation seconds in file order, the callback's second, the lead it resolves.
M3_CASES = (
    ((0, 10, 30), 20, 1),  # the most recent created before the callback
    ((0, 10, 30), 10, 1),  # created at the instant received counts as before
    ((10, 0), 20, 0),      # by creation time, not file order
    ((30, 10), 5, 1),      # none before: the earliest created
    ((0, 0), 5, 1),        # created at the same instant, before: the later row
    ((10, 10), 5, 0),      # created at the same instant, all after: the earlier row
)


def rule_cases(folder: Path) -> Path:
    """One dataset holding M3's tie rules, two callbacks at one instant (a match and a duplicate, by line), and
    callbacks at a deadline and 1 µs past it."""
    webhooks = [{"webhook_id": f"wh-{n}", "advertiser_id": "A", "wait": True, "timeout_s": 10}
                for n in range(len(M3_CASES) + 1)]
    leads: list[dict[str, Any]] = []
    callbacks: list[dict[str, Any]] = []

    def at(seconds: float) -> str:
        return (T0 + timedelta(seconds=seconds)).isoformat()

    for n, (created, received, _) in enumerate(M3_CASES):
        leads += [{"lead_id": f"M{n}-{i}", "conversion_id": f"C{n}-{i}", "advertiser_id": "A", "external_id": "E1",
                   "webhook_id": f"wh-{n}", "created_at": at(second)} for i, second in enumerate(created)]
        callbacks.append({"request_id": f"m3-{n}", "received_at": at(received),
                          "url": f"/webhooks/wh-{n}?external_id=E1"})
    last = f"wh-{len(M3_CASES)}"
    leads += [{"lead_id": name, "conversion_id": name, "advertiser_id": "A", "webhook_id": last, "created_at": at(0)}
              for name in ("tie", "in-time", "late")]
    callbacks += [{"request_id": request_id, "received_at": at(seconds), "url": f"/webhooks/{last}?pcid={lead_id}"}
                  for request_id, seconds, lead_id in (("tie-1", 5, "tie"), ("tie-2", 5, "tie"),
                                                       ("at-deadline", 10, "in-time"),
                                                       ("past-deadline", 10.000001, "late"))]
    return write_dataset(folder, webhooks, leads, callbacks)


@pytest.mark.parametrize("end_s", [None, 10], ids=["latest", "at-a-deadline"])
def test_rule_cases(spark: Any, tmp_path: Path, end_s: float | None) -> None:
    observation_end = None if end_s is None else T0 + timedelta(seconds=end_s)
    callbacks = assert_engines_agree(spark, rule_cases(tmp_path / "ds"), observation_end=observation_end,
                                     partitions=3)
    # The cases are what they say (the rules themselves: tests/test_rules.py).
    judged = {row["request_id"]: (row["lead_id"], row["outcome"]) for row in callbacks.to_pylist()}
    assert [judged[f"m3-{n}"][0] for n in range(len(M3_CASES))] == [
        f"M{n}-{pick}" for n, (_, _, pick) in enumerate(M3_CASES)]
    assert [judged[name][1] for name in ("tie-1", "tie-2", "at-deadline", "past-deadline")] == [
        "matched", "duplicate", "matched", "late"]


def test_a_folder_of_files(spark: Any, tmp_path: Path) -> None:
    """docs/semantics.md, I7: the rule cases' callbacks spread over ``callbacks/`` (ties across files are judged by
    file name), the dispatches over ``dispatches/``, and a HAR that is not JSON, quarantined and named."""
    folder = rule_cases(tmp_path / "ds")
    for stem in ("callbacks", "dispatches"):
        lines = (folder / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / f"{stem}.jsonl").unlink()
        (folder / stem).mkdir()
        (folder / stem / "b.jsonl").write_text("".join(lines[0::2]), encoding="utf-8")
        (folder / stem / "a.jsonl").write_text("".join(lines[1::2]), encoding="utf-8")
    (folder / "callbacks" / "c.har").write_text("not a HAR", encoding="utf-8")
    callbacks = assert_engines_agree(spark, folder, partitions=3)
    assert callbacks.column("seq").to_pylist() != sorted(callbacks.column("seq").to_pylist())  # files interleave


# --------------------------------------------------------------------------- the command line


WEBHOOKS = [{"webhook_id": "wh-a", "advertiser_id": "A", "wait": True, "timeout_s": 30},
            {"webhook_id": "wh-b", "advertiser_id": "B", "wait": True}]
LEADS = [{"lead_id": f"L{n}", "conversion_id": f"C{n}", "advertiser_id": advertiser, "external_id": external,
          "webhook_id": webhook, "created_at": "2026-11-20T10:00:00Z"}
         for n, webhook, advertiser, external in ((1, "wh-a", "A", "E1"), (2, "wh-a", "A", ""), (3, "wh-b", "B", ""))]
CALLBACKS = [
    {"received_at": "2026-11-20T10:00:05Z", "url": "/webhooks/wh-a?pcid=C1"},
    {"received_at": "2026-11-20T10:00:06Z", "url": "/webhooks/wh-a?pcid=C1"},
    {"received_at": "2026-11-20T10:00:40Z", "url": "/webhooks/wh-a?pcid=C2"},
    {"received_at": "2026-11-20T10:00:07Z", "url": "/webhooks/wh-b?pcid=C1"},
    {"received_at": "2026-11-20T10:00:08Z", "url": "/webhooks/wh-a?external_id=E1&advertiser_id=A"},
    {"received_at": "2026-11-20T10:00:09Z", "url": "/webhooks/wh-z?pcid=C3"},
    {"received_at": "2026-11-20T10:00:10Z", "url": "/webhooks/wh-b?pcid=C9"},
]


def small_dataset(folder: Path) -> Path:
    """Four outcome files' worth: a bad dispatch line and a bad callback line (quarantined), every outcome kind."""
    write_dataset(folder, WEBHOOKS, LEADS, CALLBACKS)
    with (folder / "dispatches.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"lead_id": "L9", "conversion_id": "C9", "webhook_id": "wh-b"}\n')
    with (folder / "callbacks.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("not json\n")
    return folder


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_cli_writes_the_same_files_with_either_engine(spark: Any, tmp_path: Path, file_format: str) -> None:
    dataset = small_dataset(tmp_path / "ds")
    common = ("--max-quarantined", "100%", "--timeout", "wh-a=20", "--format", file_format)
    by_duckdb = invoke("replay", dataset, "--out", tmp_path / "duckdb", *common)
    by_spark = invoke("replay", dataset, "--out", tmp_path / "spark", "--engine", "spark", "--spark-master",
                      "local[2]", "--temp-dir", tmp_path / "stage", *common)
    assert by_duckdb.exit_code == 0, by_duckdb.output
    assert by_spark.exit_code == 0, by_spark.output
    # The same tables printed; only the folder in "wrote …" differs.
    assert by_spark.stdout.replace(str(tmp_path / "spark"), "OUT") == by_duckdb.stdout.replace(
        str(tmp_path / "duckdb"), "OUT")
    assert "wrong_webhook" in by_spark.stdout and "unknown_token" in by_spark.stdout
    assert list((tmp_path / "stage").iterdir()) == []  # the staged rows are removed
    for name in ("callback_outcomes", "lead_outcomes", "quarantine", "load_report"):
        duck, spark_file = tmp_path / "duckdb" / f"{name}.{file_format}", tmp_path / "spark" / f"{name}.{file_format}"
        if file_format == "csv":
            expected = duck.read_text(encoding="utf-8")
            if name == "load_report":
                # The Spark engine loads whole requests, so it counts the zone-less times a keys-only load cannot.
                expected = expected.replace("callbacks,8,7,1,\n", "callbacks,8,7,1,0\n")
            assert spark_file.read_text(encoding="utf-8") == expected, name
            continue
        duck_table, spark_table = pq.read_table(duck), pq.read_table(spark_file)
        if name == "load_report":
            duck_table, spark_table = duck_table.drop_columns("zone_less"), spark_table.drop_columns("zone_less")
        # (Parquet's REQUIRED marks may differ: DuckDB marks the columns it knows hold no NULL)
        assert_same(duck_table, spark_table, name)


def test_cli_spark_with_a_database_is_an_error(tmp_path: Path) -> None:
    result = invoke("replay", SAMPLE, "--engine", "spark", "--database", tmp_path / "audit.duckdb")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: --database: an audit database is written by --engine duckdb only; give "
                                     "--out DIR with --engine spark, or drop --engine spark")
    assert not (tmp_path / "audit.duckdb").exists()


def test_cli_spark_master_needs_the_spark_engine(tmp_path: Path) -> None:
    result = invoke("replay", SAMPLE, "--out", tmp_path, "--spark-master", "local[2]")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: --spark-master applies to --engine spark; add --engine spark"


def test_cli_without_pyspark_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the spark extra were not installed: importing pyspark, or any module of it, fails.
    for name in ["pyspark", *(m for m in sys.modules if m.startswith("pyspark."))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "webhook_core.audit.spark_replay", raising=False)
    result = invoke("replay", small_dataset(tmp_path / "ds"), "--out", tmp_path / "out", "--engine", "spark",
                    "--max-quarantined", "100%")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == ("Error: the Spark engine needs pyspark: "
                                                     "pip install 'webhook-audit[spark]'")
    assert "Traceback" not in result.output


def test_the_duckdb_engine_does_not_import_pyspark() -> None:
    code = ("import sys, webhook_core, webhook_core.cli, webhook_core.cli.replay_commands; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_a_keys_only_load_is_refused(spark: Any) -> None:
    from webhook_core.audit.spark_replay import replay_loaded

    con = connect()
    try:
        loaded = load_dataset(con, SAMPLE, keep_requests=False)
        with pytest.raises(SparkEngineError, match=r"^the callbacks were loaded with keep_requests=False: the Spark "
                                                   r"engine extracts their keys itself; load the dataset with "
                                                   r"keep_requests=True$"):
            replay_loaded(spark, con, loaded)
    finally:
        con.close()


# --------------------------------------------------------------------------- a dataset given as a URI


def spark_replay_of(spark: Any, dataset: str | Path) -> dict[str, pa.Table]:
    from webhook_core.audit.spark_replay import replay_spark

    with replay_spark(dataset, spark=spark) as result:
        callbacks, leads = result.collect()
        assert result.load_report is not None and result.quarantine is not None
        return {"callback_outcomes": callbacks, "lead_outcomes": leads, "load_report": result.load_report,
                "quarantine": result.quarantine}


def mixed_folder(folder: Path) -> Path:
    """The rule cases as folders of files of every format: callbacks in JSONL (one with a bad line, one whose
    name holds glob characters), Parquet and a HAR that is not JSON (quarantined whole); dispatches in two
    files."""
    folder = rule_cases(folder)
    for stem in ("callbacks", "dispatches"):
        lines = (folder / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / f"{stem}.jsonl").unlink()
        (folder / stem).mkdir()
        (folder / stem / "b[2].jsonl").write_text("".join(lines[0::3]) + "not json\n", encoding="utf-8")
        (folder / stem / "a.jsonl").write_text("".join(lines[1::3]), encoding="utf-8")
        if stem == "callbacks":
            records = [json.loads(line) for line in lines[2::3]]
            pq.write_table(pa.Table.from_pylist(records), folder / stem / "d.parquet")
        else:
            (folder / stem / "a.jsonl").write_text("".join(lines[1::3] + lines[2::3]), encoding="utf-8")
    (folder / "callbacks" / "c.har").write_text("not a HAR", encoding="utf-8")
    return folder


@pytest.mark.parametrize("which", ["sample", "mixed folder"])
def test_a_uri_loads_in_tasks_as_the_path_loads_on_the_driver(spark: Any, tmp_path: Path, which: str) -> None:
    folder = SAMPLE if which == "sample" else mixed_folder(tmp_path / "ds")
    by_path, by_uri = spark_replay_of(spark, folder), spark_replay_of(spark, folder.as_uri())
    for name, table in by_path.items():
        assert_same(table, by_uri[name], name)
    if which == "mixed folder":
        quarantined = {(row["source_file"], row["reason"]) for row in by_uri["quarantine"].to_pylist()}
        assert ("callbacks/c.har", "unusable file: not valid JSON; a HAR file is one JSON document") in quarantined
        assert ("callbacks/b[2].jsonl", "not valid JSON") in quarantined
        assert {row["source_file"] for row in by_uri["load_report"].to_pylist()} == {
            "callbacks/a.jsonl", "callbacks/b[2].jsonl", "callbacks/c.har", "callbacks/d.parquet",
            "dispatches/a.jsonl", "dispatches/b[2].jsonl"}
        assert by_uri["callback_outcomes"].num_rows > 0


def test_a_lone_file_a_uri_cannot_use_is_named_in_the_dataset(spark: Any, tmp_path: Path) -> None:
    from webhook_core.audit.spark_replay import replay_spark

    folder = small_dataset(tmp_path / "ds")
    (folder / "callbacks.jsonl").unlink()
    (folder / "callbacks.har").write_text("not a HAR", encoding="utf-8")
    with pytest.raises(DatasetError) as by_path:
        replay_spark(folder, spark=spark)
    with pytest.raises(DatasetError) as by_uri:
        replay_spark(folder.as_uri(), spark=spark)
    assert str(by_path.value) == f"{folder}/callbacks.har: not valid JSON; a HAR file is one JSON document"
    assert str(by_uri.value) == f"{folder.as_uri()}/callbacks.har: not valid JSON; a HAR file is one JSON document"


def test_a_reason_quoting_a_file_of_a_uri_names_it_in_the_dataset(spark: Any, tmp_path: Path) -> None:
    # DuckDB's error quotes the file it read: in a task that is a temporary copy the user never saw.
    from webhook_core.audit.spark_replay import replay_spark

    folder = small_dataset(tmp_path / "ds")
    (folder / "callbacks").mkdir()
    (folder / "callbacks.jsonl").rename(folder / "callbacks" / "a.jsonl")
    (folder / "callbacks" / "b.parquet").write_bytes(b"PAR1garbage")
    with replay_spark(folder.as_uri(), spark=spark, max_quarantined=1.0) as result:
        assert result.quarantine is not None
        reasons = [row["reason"] for row in result.quarantine.to_pylist()
                   if row["source_file"] == "callbacks/b.parquet"]
    assert reasons == [f"unusable file: not a readable Parquet file: Invalid Input Error: File "
                       f"'{folder.as_uri()}/callbacks/b.parquet' too small to be a Parquet file"]


def test_a_callbacks_file_past_binary_files_limit_is_an_error(spark: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook_core.audit import spark_load
    from webhook_core.audit.spark_replay import replay_spark

    folder = small_dataset(tmp_path / "ds")
    size = (folder / "callbacks.jsonl").stat().st_size
    monkeypatch.setattr(spark_load, "MAX_FILE_BYTES", size - 1)
    with pytest.raises(DatasetError) as raised:
        replay_spark(folder.as_uri(), spark=spark)
    assert str(raised.value) == (
        f"{folder.as_uri()}/callbacks.jsonl: {size / (1 << 30):.1f} GiB; Spark's binaryFile reader, which loads each "
        "callbacks file of a URI dataset in a task, reads at most 2 GiB a file: split it into a folder callbacks/ of "
        "smaller files, or give the dataset as a local path")


def test_cli_with_a_uri_writes_what_duckdb_writes_from_the_path(spark: Any, tmp_path: Path) -> None:
    dataset = small_dataset(tmp_path / "ds")
    (tmp_path / "stage").mkdir()
    common = ("--max-quarantined", "100%", "--timeout", "wh-a=20", "--format", "csv")
    by_duckdb = invoke("replay", dataset, "--out", tmp_path / "duckdb", *common)
    by_spark = invoke("replay", dataset.as_uri(), "--out", tmp_path / "spark", "--engine", "spark", "--spark-master",
                      "local[2]", "--spark-stage", (tmp_path / "stage").as_uri(), *common)
    assert by_duckdb.exit_code == 0, by_duckdb.output
    assert by_spark.exit_code == 0, by_spark.output
    assert by_spark.stdout.replace(str(tmp_path / "spark"), "OUT") == by_duckdb.stdout.replace(
        str(tmp_path / "duckdb"), "OUT")
    assert [p.name for p in (tmp_path / "stage").iterdir() if not p.name.startswith(".")] == []  # staged rows removed
    for name in ("callback_outcomes", "lead_outcomes", "quarantine", "load_report"):
        expected = (tmp_path / "duckdb" / f"{name}.csv").read_text(encoding="utf-8")
        if name == "load_report":  # (see test_cli_writes_the_same_files_with_either_engine)
            expected = expected.replace("callbacks,8,7,1,\n", "callbacks,8,7,1,0\n")
        assert (tmp_path / "spark" / f"{name}.csv").read_text(encoding="utf-8") == expected, name


def test_cli_a_uri_needs_the_spark_engine(tmp_path: Path) -> None:
    result = invoke("replay", "s3a://bucket/ds", "--out", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: s3a://bucket/ds: the DuckDB engine reads local folders; use --engine "
                                     "spark for a URI, or copy the dataset here")


def test_cli_a_uri_naming_nothing(spark: Any, tmp_path: Path) -> None:
    nothing = (tmp_path / "nothing").as_uri()
    result = invoke("replay", nothing, "--out", tmp_path / "out", "--engine", "spark", "--spark-master", "local[2]")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {nothing}: not a folder; a dataset is a folder with webhooks.json, "
                                     "dispatches.* and callbacks.*")


def test_cli_a_scheme_spark_has_no_file_system_for(spark: Any, tmp_path: Path) -> None:
    version = spark._jvm.org.apache.hadoop.util.VersionInfo.getVersion()
    result = invoke("replay", "s3a://bucket/ds", "--out", tmp_path / "out", "--engine", "spark", "--spark-master",
                    "local[2]")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: s3a://bucket/ds: Spark has no file system for s3a:// (Class org.apache.hadoop.fs.s3a.S3AFileSystem "
        f"not found); add org.apache.hadoop:hadoop-aws:{version} to Spark (--conf spark.jars.packages=… or the "
        "cluster's libraries)")
    assert "Traceback" not in result.output
