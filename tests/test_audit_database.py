"""The audit database as the contract: ``replay --database`` writes it, the analysis commands read it.

Every analysis command run on the database must print and write exactly what it prints and writes run on
the dataset folder (less the load report, which only a load prints), without changing the file; the
database's mistakes (not one, another schema version, locked by a writer) are one line each. The database
holds exactly the tables and views ``webhook_core.audit.schema`` names, and the analyses name them only
through it.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner, Result

import webhook_core.analysis
from webhook_core.analysis.pairing import near_misses, pairing_validation
from webhook_core.audit.audit import open_audit
from webhook_core.audit.replay import CALLBACK_COLUMNS, CALLBACK_ORDER
from webhook_core.audit.schema import SCHEMA_VERSION, STORED
from webhook_core.cli import cli
from webhook_core.rules.settings import load_webhooks
from webhook_core.synth.generate import generate

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOAD_REPORT = re.compile(r"^\S+: read [\d,]+ = loaded [\d,]+ \+ quarantined [\d,]+$")
HOW_TO_WRITE = "write one with: webhook-audit replay DATASET --database FILE"


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def printed(result: Result, out_dir: Path) -> list[str]:
    """What the command printed, less the load report, with its --out folder as OUT."""
    assert result.exit_code == 0, result.output
    return [line.rstrip().replace(str(out_dir), "OUT") for line in ANSI.sub("", result.stdout).splitlines()
            if line.strip() and not LOAD_REPORT.match(line.strip())]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated dataset folder and its audit database."""
    base = tmp_path_factory.mktemp("auditdb")
    folder = base / "dataset"
    generate(folder, leads=200, seed=3)
    database = base / "audit.duckdb"
    result = run("replay", folder, "--out", base / "out", "--database", database)
    assert result.exit_code == 0, result.output
    return folder, database


def test_replay_writes_the_schema_version_and_the_runs_facts(audited: tuple[Path, Path]) -> None:
    folder, database = audited
    with duckdb.connect(str(database), read_only=True) as con:
        meta = dict(con.execute("SELECT key, value FROM audit_meta").fetchall())
        latest = con.execute("SELECT max(observation_end) FROM lead_outcomes").fetchone()
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["dataset"] == str(folder.resolve())
    assert meta["webhooks_json"] == (folder / "webhooks.json").read_text(encoding="utf-8")
    assert latest is not None
    assert meta["observation_end"] == latest[0].isoformat()
    assert meta["timeouts"] == "{}"
    assert {"created_at", "package_version"} <= set(meta)


def test_the_schema_module_names_every_table_and_view(audited: tuple[Path, Path]) -> None:
    _, database = audited
    with duckdb.connect(str(database), read_only=True) as con:
        held = con.execute("""
            SELECT table_name, 'table' FROM duckdb_tables() WHERE NOT internal AND schema_name = 'main'
            UNION ALL
            SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'
            ORDER BY 1, 2
        """).fetchall()
    assert held == sorted(STORED.items())


def _lead_with_callbacks(database: Path) -> str:
    with duckdb.connect(str(database), read_only=True) as con:
        found = con.execute("SELECT lead_id FROM lead_outcomes WHERE callbacks > 1 ORDER BY \"row\" LIMIT 1")
        row = found.fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("command", [
    ("summary", "--by", "advertiser"),
    ("summary", "--per-day"),
    ("wait-times",),
    ("timeouts", "--candidates", "5,60"),
    ("pairing",),
    ("timeline", "LEAD"),
])
def test_every_figure_from_the_database_equals_the_one_from_the_folder(
        audited: tuple[Path, Path], tmp_path: Path, command: tuple[str, ...]) -> None:
    folder, database = audited
    name, *options = command
    options = [_lead_with_callbacks(database) if o == "LEAD" else o for o in options]
    before = digest(database)
    outputs = {}
    for label, source in (("folder", folder), ("database", database)):
        out = tmp_path / label / "figures.csv"
        out.parent.mkdir()
        result = run(name, source, *options, "--out", out)
        outputs[label] = (printed(result, out.parent), {p.name: p.read_bytes() for p in sorted(out.parent.iterdir())})
    assert outputs["database"][0] == outputs["folder"][0]
    assert outputs["database"][1] == outputs["folder"][1]
    assert outputs["folder"][1]  # the comparison compared files
    assert digest(database) == before  # an analysis never writes the database


def test_two_read_only_opens_at_once(audited: tuple[Path, Path]) -> None:
    _, database = audited
    first = open_audit(database)
    second = open_audit(database)
    try:
        assert first.read_only and second.read_only
        count = "SELECT count(*) FROM callback_outcomes"
        assert first.con.execute(count).fetchone() == second.con.execute(count).fetchone()
        assert first.webhooks == second.webhooks
    finally:
        first.con.close()
        second.con.close()


def test_two_audits_of_one_database_answer_pairing_at_once(audited: tuple[Path, Path]) -> None:
    """Pairing's table of request values is a temporary table: one per connection, beside a read-only file,
    built once per audit and read by each of its reports."""
    folder, database = audited
    with open_audit(folder) as loaded:
        expected = pairing_validation(loaded), near_misses(loaded)
    assert not expected[0].empty and not expected[1].empty
    with open_audit(database) as first:
        validation = pairing_validation(first)
        pd.testing.assert_frame_equal(near_misses(first), expected[1])
        with open_audit(database) as second:
            pd.testing.assert_frame_equal(near_misses(second), expected[1])
            pd.testing.assert_frame_equal(pairing_validation(second), expected[0])
            pd.testing.assert_frame_equal(pairing_validation(first), expected[0])
    pd.testing.assert_frame_equal(validation, expected[0])


def test_a_folder_and_its_database_open_alike(audited: tuple[Path, Path]) -> None:
    folder, database = audited
    loaded, stored = open_audit(folder), open_audit(database)
    try:
        assert (loaded.read_only, stored.read_only) == (False, True)
        assert (loaded.source, stored.source) == (folder, database)
        assert stored.webhooks == loaded.webhooks == load_webhooks(folder / "webhooks.json")
        assert stored.observation_end == loaded.observation_end
        query = f"SELECT {', '.join(CALLBACK_COLUMNS)} FROM callback_outcomes ORDER BY {CALLBACK_ORDER}"
        assert stored.con.execute(query).fetchall() == loaded.con.execute(query).fetchall()
    finally:
        loaded.con.close()
        stored.con.close()


def test_a_what_if_database_carries_its_timeouts(audited: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = audited
    database = tmp_path / "whatif.duckdb"
    result = run("replay", folder, "--out", tmp_path / "out", "--database", database, "--timeout", "7")
    assert result.exit_code == 0, result.output
    audit = open_audit(database)
    try:
        assert audit.webhooks == load_webhooks(folder / "webhooks.json").with_timeouts({None: 7})
    finally:
        audit.con.close()


def test_a_failed_replay_leaves_no_audit_database(audited: tuple[Path, Path], tmp_path: Path) -> None:
    folder, database = audited
    reused = tmp_path / "reused.duckdb"
    reused.write_bytes(database.read_bytes())
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("webhooks.json", "dispatches.csv"):
        (broken / name).write_bytes((folder / name).read_bytes())
    (broken / "callbacks.jsonl").write_text("", encoding="utf-8")
    assert run("replay", broken, "--out", tmp_path / "out", "--database", reused).exit_code == 1
    result = run("summary", reused)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {reused}: not an audit database (no audit_meta table); {HOW_TO_WRITE}\n"


def test_a_file_that_is_not_a_duckdb_database(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("not a database\n", encoding="utf-8")
    result = run("summary", bogus)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {bogus}: not a dataset folder nor an audit database (not a DuckDB file); "
                             "give the dataset folder, or write one with: webhook-audit replay DATASET "
                             "--database FILE\n")


def test_a_duckdb_file_without_audit_meta(tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS a")
    result = run("wait-times", other, "--out", tmp_path / "curve.csv")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {other}: not an audit database (no audit_meta table); {HOW_TO_WRITE}\n"


def test_another_schema_version(audited: tuple[Path, Path], tmp_path: Path) -> None:
    _, database = audited
    old = tmp_path / "old.duckdb"
    old.write_bytes(database.read_bytes())
    with duckdb.connect(str(old)) as con:
        con.execute("UPDATE audit_meta SET value = '0' WHERE key = 'schema_version'")
    result = run("summary", old)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {old}: audit database schema version 0, this webhook-audit reads version "
                             f"{SCHEMA_VERSION}; replay the dataset again with --database\n")


def test_another_observation_end(audited: tuple[Path, Path]) -> None:
    _, database = audited
    with duckdb.connect(str(database), read_only=True) as con:
        row = con.execute("SELECT value FROM audit_meta WHERE key = 'observation_end'").fetchone()
    assert row is not None
    result = run("summary", database, "--observation-end", "2020-01-01T00:00:00Z")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {database}: replayed as of {row[0]}, not --observation-end "
                             "2020-01-01T00:00:00+00:00; replay the dataset again with that --observation-end "
                             "and --database\n")
    assert run("summary", database, "--observation-end", row[0]).exit_code == 0


def test_a_database_open_for_writing(audited: tuple[Path, Path], tmp_path: Path) -> None:
    _, database = audited
    busy = tmp_path / "busy.duckdb"
    busy.write_bytes(database.read_bytes())
    writer = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True); "
                               "sys.stdin.read()", str(busy)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "open\n"
        result = run("timeline", busy, "L1")
    finally:
        writer.communicate("", timeout=30)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {busy}: the audit database is open for writing by another process; "
                             "wait for it to finish\n")


def literal_table_names(source: str) -> set[str]:
    """The stored tables and views, and the replay's own temporary ``replay_leads``, that ``source`` reads
    in SQL by a literal name."""
    return {name for name in (*STORED, "replay_leads")
            if re.search(rf"\b(FROM|JOIN)\s+{re.escape(name)}\b", source, re.IGNORECASE)}


def test_no_analysis_names_a_table_by_a_literal() -> None:
    """The analyses read the audit's tables by the names of webhook_core.audit.schema, where a table's name
    lives, and never the replay's temporary ``replay_leads``, which an opened database does not hold."""
    assert literal_table_names("FROM callback_outcomes o\n  join replay_leads l") == {"callback_outcomes",
                                                                                     "replay_leads"}
    modules = sorted(Path(webhook_core.analysis.__file__).parent.glob("*.py"))
    assert "rates.py" in [m.name for m in modules]
    named = {m.name: literal_table_names(m.read_text(encoding="utf-8")) for m in modules}
    assert {module: names for module, names in named.items() if names} == {}
