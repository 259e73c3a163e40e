"""Input is data: names and values in every input file that look like SQL are read as text.

Each test writes a dataset whose column names, keys, IDs, locations and values hold quotes, ``;``,
``--``, ``}`` and a statement that writes a file (:data:`PAYLOAD`), in a folder whose own name holds
quotes, runs ``webhook-audit`` on it with the current folder inside the test's folder, and checks
that no file but the outputs was written and that every callback is judged as with plain names.
(tests/test_sql_safety.py checks the package's source for the same.)
"""

from __future__ import annotations

import base64
import csv
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from webhook_core import connect, load_dataset, replay
from webhook_core.cli import cli
from webhook_core.load.dispatches import DISPATCH_COLUMNS

#: A dispatches.csv header cell that, pasted into SQL, closes read_csv's column list and writes pwned.txt.
PAYLOAD = "x': 'VARCHAR'}); COPY (SELECT 'pwn' AS a) TO 'pwned.txt' (HEADER false); SELECT struct_pack(--"
#: Names and values to try everywhere (none holds '/', which a webhook ID may not).
HOSTILE = ["it's", 'say "hi"', "a;b", "a -- b", "a}b", "a\\b", PAYLOAD]
CREATED = "2026-11-20T10:00:00Z"

Runner = Callable[..., dict[str, tuple[str, str | None]]]


def _tree(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


@pytest.fixture
def replay_outcomes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    """``replay_outcomes(dataset, *options)``: run ``webhook-audit replay`` with the current folder
    in tmp_path, check that it wrote nothing outside its output folder, and return each callback's
    ``request_id -> (outcome, lead_id)``."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")

    def run(dataset: Path, *options: str) -> dict[str, tuple[str, str | None]]:
        out = tmp_path / "out 'x\"; --"
        before = _tree(tmp_path)
        result = CliRunner().invoke(cli, ["replay", str(dataset), "--out", str(out), *options])
        assert not (tmp_path / "cwd" / "pwned.txt").exists()
        assert {p for p in _tree(tmp_path) - before if out.name not in p.parts} == set()
        assert result.exit_code == 0, result.output
        con = duckdb.connect()
        rows = con.execute("SELECT request_id, outcome, lead_id FROM read_parquet(?)",
                           [str(out / "callback_outcomes.parquet")]).fetchall()
        con.close()
        return {request_id: (outcome, lead_id) for request_id, outcome, lead_id in rows}

    return run


def _hostile_folder(folder: Path) -> Path:
    """The dataset moved to a folder whose name holds quotes (paths reach SQL too)."""
    return folder.rename(folder.with_name(folder.name + " 'ds\"; --"))


def _webhook(webhook_id: str, **fields: Any) -> dict[str, Any]:
    return {"webhook_id": webhook_id, "advertiser_id": "A", "wait": True, **fields}


def _dispatch(lead: str, conversion: str, webhook_id: str = "wh", external: str = "") -> dict[str, Any]:
    return {"lead_id": lead, "conversion_id": conversion, "advertiser_id": "A", "external_id": external,
            "webhook_id": webhook_id, "created_at": CREATED}


def _url(webhook_id: str, query: str = "") -> str:
    return f"/webhooks/{urllib.parse.quote(webhook_id, safe='')}" + (f"?{query}" if query else "")


def _pcid(conversion: str) -> str:
    return "pcid=" + urllib.parse.quote(conversion, safe="")


# --------------------------------------------------------------------------- dispatches


@pytest.mark.parametrize("cell", [*HOSTILE, "", "LEAD_ID"])
def test_csv_header_cell_is_a_name(dataset: Callable[..., Path], replay_outcomes: Runner, cell: str) -> None:
    """An extra column of dispatches.csv is read (and ignored) whatever its name, even one DuckDB
    would not take as a column name (empty, or lead_id in other case); its values and the IDs are
    text too."""
    folder = dataset([_webhook("wh")], [], [
        {"request_id": value, "received_at": "2026-11-20T10:00:01Z", "url": _url("wh", _pcid(value))}
        for value in HOSTILE])
    (folder / "dispatches.jsonl").unlink()
    with (folder / "dispatches.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*DISPATCH_COLUMNS, cell])
        for value in HOSTILE:
            writer.writerow([f"L {value}", value, "A", "", "wh", CREATED, value])
    assert replay_outcomes(_hostile_folder(folder)) == {value: ("matched", f"L {value}") for value in HOSTILE}


def test_csv_header_naming_a_column_twice(dataset: Callable[..., Path], tmp_path: Path) -> None:
    folder = dataset([_webhook("wh")], [], [])
    (folder / "dispatches.jsonl").unlink()
    path = folder / "dispatches.csv"
    path.write_text(",".join([*DISPATCH_COLUMNS, "lead_id"]) + "\nL1,C1,A,,wh,2026-11-20T10:00:00Z,L2\n",
                    encoding="utf-8")
    result = CliRunner().invoke(cli, ["replay", str(folder), "--out", str(tmp_path / "out")])
    assert (result.exit_code, result.output) == (
        1, f"Error: {path}: field 'lead_id': column named more than once in the header; keep one\n")


def test_parquet_dispatch_column_names_are_names(dataset: Callable[..., Path], replay_outcomes: Runner) -> None:
    folder = dataset([_webhook("wh")], [], [
        {"request_id": value, "received_at": "2026-11-20T10:00:01Z", "url": _url("wh", _pcid(value))}
        for value in HOSTILE])
    (folder / "dispatches.jsonl").unlink()
    columns = {name: [_dispatch(f"L {v}", v)[name] for v in HOSTILE] for name in DISPATCH_COLUMNS}
    pq.write_table(pa.table({**columns, **{name: HOSTILE for name in HOSTILE}}), folder / "dispatches.parquet")
    assert replay_outcomes(_hostile_folder(folder)) == {value: ("matched", f"L {value}") for value in HOSTILE}


# --------------------------------------------------------------------------- callbacks


def _callback_fields(value: str) -> dict[str, Any]:
    """A callback for the lead whose conversion ID is ``value``: hostile keys, header names and values."""
    body = {"pcid": value, **{name: name for name in HOSTILE if name != "pcid"}, "nested": {v: [v] for v in HOSTILE}}
    return {"request_id": value, "received_at": "2026-11-20T10:00:01Z",
            "url": _url("wh", "&".join(urllib.parse.quote(v, safe="") + "=" + urllib.parse.quote(v) for v in HOSTILE)),
            "headers": {name: name for name in HOSTILE}, "body": json.dumps(body),
            "response_status": 200, "response_body": value}


def _write_har(folder: Path) -> None:
    entries = []
    for value in HOSTILE:
        fields = _callback_fields(value)
        entries.append({
            "startedDateTime": fields["received_at"], "_request_id": value,
            "request": {"method": "POST", "url": fields["url"],
                        "headers": [{"name": name, "value": text} for name, text in fields["headers"].items()],
                        "postData": {"mimeType": "application/json", "text": fields["body"]}},
            "response": {"status": 200, "content": {"text": base64.b64encode(value.encode()).decode(),
                                                    "encoding": "base64"}},
        })
    (folder / "callbacks.jsonl").unlink()
    (folder / "callbacks.har").write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}),
                                          encoding="utf-8")


def _write_parquet(folder: Path) -> None:
    rows = [_callback_fields(value) for value in HOSTILE]
    table = pa.table({
        **{name: [row[name] for row in rows] for name in ("request_id", "received_at", "url", "body")},
        "headers": [json.dumps(row["headers"]) for row in rows],
        **{name: HOSTILE for name in HOSTILE},  # extra columns: kept in the raw row only
    })
    (folder / "callbacks.jsonl").unlink()
    pq.write_table(table, folder / "callbacks.parquet")


@pytest.mark.parametrize("write", [None, _write_har, _write_parquet], ids=["jsonl", "har", "parquet"])
@pytest.mark.parametrize("database", [False, True], ids=["keys-while-loading", "database"])
def test_callback_keys_names_and_values_are_text(dataset: Callable[..., Path], replay_outcomes: Runner,
                                                 tmp_path: Path, write: Callable[[Path], None] | None,
                                                 database: bool) -> None:
    folder = dataset([_webhook("wh")], [_dispatch(f"L {v}", v) for v in HOSTILE],
                     [_callback_fields(value) for value in HOSTILE])
    if write is not None:
        write(folder)
    options = ["--database", str(tmp_path / "out 'x\"; --" / "replay.duckdb")] if database else []
    (tmp_path / "out 'x\"; --").mkdir()
    assert replay_outcomes(_hostile_folder(folder), *options) == {v: ("matched", f"L {v}") for v in HOSTILE}


# --------------------------------------------------------------------------- webhooks.json


def _nested(path: str, value: str) -> dict[str, Any]:
    """A JSON document with ``value`` at the dot path ``path``."""
    document: Any = value
    for segment in reversed(path.split(".")):
        document = {segment: document}
    return dict(document)


def _settings_dataset(dataset: Callable[..., Path]) -> tuple[Path, dict[str, tuple[str, str | None]]]:
    """Per hostile text H a webhook with ID H, pairing at json.H, header.H, query.H and (external ID)
    form.H, status at json.s.H with interim status H; one callback through each, one interim."""
    webhooks, dispatches, callbacks = [], [], []
    expected: dict[str, tuple[str, str | None]] = {}
    for number, name in enumerate(HOSTILE):
        webhooks.append(_webhook(name, timeout_s=60, status_location=f"json.s.{name}", interim_statuses=[name],
                                 pairing=[{"identifier": "conversion_id", "location": f"json.{name}"},
                                          {"identifier": "conversion_id", "location": f"header.{name}"},
                                          {"identifier": "conversion_id", "location": f"query.{name}"},
                                          {"identifier": "external_id", "location": f"form.{name}"}]))
        lead = f"L{number} {name}"
        dispatches += [_dispatch(f"{lead} {k}", f"{name} {k}", name, external=f"{name} ext" if k == "form" else "")
                       for k in ("json", "header", "query", "form", "interim")]
        encoded = urllib.parse.quote(name, safe="")
        base = {"received_at": "2026-11-20T10:00:01Z"}
        callbacks += [
            {**base, "request_id": f"{name} json", "url": _url(name),
             "body": json.dumps(_nested(name, f"{name} json"))},
            {**base, "request_id": f"{name} header", "url": _url(name), "headers": {name: f"{name} header"}},
            {**base, "request_id": f"{name} query", "url": _url(name, f"{encoded}={urllib.parse.quote(name)}%20query")},
            {**base, "request_id": f"{name} form", "url": _url(name), "body": f"{encoded}={encoded}%20ext"},
            {**base, "request_id": f"{name} interim", "url": _url(name),
             "body": json.dumps({**_nested(name, f"{name} interim"), "s": _nested(name, name)})},
        ]
        expected |= {f"{name} {k}": ("matched", f"{lead} {k}") for k in ("json", "header", "query", "form")}
        expected[f"{name} interim"] = ("interim", f"{lead} interim")
    return dataset(webhooks, dispatches, callbacks), expected


@pytest.mark.parametrize("database", [False, True], ids=["keys-while-loading", "database"])
def test_webhook_ids_and_locations_are_text(dataset: Callable[..., Path], replay_outcomes: Runner, tmp_path: Path,
                                            database: bool) -> None:
    """A webhook ID or pairing location holding a quote is a valid one, and callbacks pair through it."""
    folder, expected = _settings_dataset(dataset)
    out = tmp_path / "out 'x\"; --"
    out.mkdir()
    options = ["--timeout", f"{PAYLOAD}=30", "--temp-dir", str(out / "spill'; COPY (SELECT 1) TO 'pwned.txt'; --")]
    if database:
        options += ["--database", str(out / "replay.duckdb")]
    assert replay_outcomes(_hostile_folder(folder), *options) == expected


@pytest.mark.parametrize("keep_requests", [True, False])
def test_nul_in_ids_and_locations(dataset: Callable[..., Path], keep_requests: bool) -> None:
    """quote_literal writes a NUL as chr(0), an expression: it works wherever settings reach the SQL."""
    webhook_id, name = "wh\x00x", "a\x00b"
    webhook = _webhook(webhook_id, status_location=f"json.s{name}", interim_statuses=[name],
                       pairing=[{"identifier": "conversion_id", "location": f"{kind}.{name}"}
                                for kind in ("json", "query", "header")])
    base = {"received_at": "2026-11-20T10:00:01Z", "url": _url(webhook_id)}
    callbacks = [{**base, "request_id": "json", "body": json.dumps({name: "C json"})},
                 {**base, "request_id": "query", "url": _url(webhook_id, urllib.parse.quote(name) + "=C%20query")},
                 {**base, "request_id": "header", "headers": {name: "C header"}},
                 {**base, "request_id": "interim", "body": json.dumps({name: "C interim", f"s{name}": name})}]
    folder = dataset([webhook], [_dispatch(f"L {c['request_id']}", f"C {c['request_id']}", webhook_id)
                                 for c in callbacks], callbacks)
    con = connect()
    result = replay(con, load_dataset(con, folder, keep_requests=keep_requests).webhooks)
    assert result.callbacks()[["request_id", "outcome", "lead_id", "webhook_id"]].values.tolist() == [
        ["json", "matched", "L json", webhook_id], ["query", "matched", "L query", webhook_id],
        ["header", "matched", "L header", webhook_id], ["interim", "interim", "L interim", webhook_id]]


def _analysis(dataset: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              command: str) -> list[dict[str, str]]:
    """Run an analysis ``command`` on the settings dataset; check it wrote only its ``--out`` files
    and return the rows of the main one."""
    folder = _hostile_folder(_settings_dataset(dataset)[0])
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    out = tmp_path / "out 'x\"; --" / "table.csv"
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, [command, str(folder), "--out", str(out)])
    assert {p for p in _tree(tmp_path) - before if out.parent.name not in p.parts} == set()
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_pairing_report_reads_hostile_locations(dataset: Callable[..., Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """pairing.py writes the configured locations into its SQL: each query location with a quote
    is found in the one callback that carries it, and resolves its lead."""
    rows = _analysis(dataset, tmp_path, monkeypatch, "pairing")
    found = {(r["webhook_id"], r["location"]): (r["present"], r["resolves_here"]) for r in rows
             if r["source"] == "pairing" and r["location"].startswith(("query.", "form."))}
    assert found == {(name, f"{kind}.{name}"): ("1", "1") for name in HOSTILE for kind in ("query", "form")}


def test_timeouts_report_names_hostile_webhooks(dataset: Callable[..., Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """timeouts.py writes webhook IDs into its SQL: every one comes back with its current timeout."""
    rows = _analysis(dataset, tmp_path, monkeypatch, "timeouts")
    assert {(r["webhook_id"], r["current_timeout_s"]) for r in rows} == {(name, "60.0") for name in HOSTILE}


# --------------------------------------------------------------------------- connection settings


def test_memory_limit_and_temp_directory_are_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spill = str(tmp_path / "spill'; COPY (SELECT 1) TO 'pwned.txt'; --")
    con = connect(memory_limit="500MiB", temp_directory=spill)
    assert con.execute("SELECT current_setting('temp_directory')").fetchone() == (spill,)
    con.close()
    with pytest.raises(duckdb.ParserException, match="Unknown unit for memory"):
        connect(memory_limit="1GB'; COPY (SELECT 1) TO 'pwned.txt'; --")
    assert list(tmp_path.iterdir()) == []
