"""Many files per dataset (docs/semantics.md, I7): ``callbacks/`` and ``dispatches/`` folders of files in any
mix of formats, judged in ``(received_at, file name, line)`` order, with ``seq`` (``row``) = rank × 2^28 + line."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from webhook_core import DatasetError, connect, load_dataset, replay
from webhook_core.cli import cli
from webhook_core.load import callbacks as callback_loading
from webhook_core.load import inputs, linereader

SAMPLE = Path(__file__).parent.parent / "data" / "sample"
RANK = 1 << 28  # what one place in the folder's name order adds to seq and row
WEBHOOKS = [{"webhook_id": "wh-a", "advertiser_id": "A", "wait": True, "timeout_s": 30}]
T0 = "2026-11-20T10:00:00"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def at(second: int) -> str:
    return f"{T0[:-2]}{second:02d}Z"


def lead(n: int, **fields: Any) -> dict[str, Any]:
    return {"lead_id": f"L{n}", "conversion_id": f"C{n}", "advertiser_id": "A", "external_id": f"E{n}",
            "webhook_id": "wh-a", "created_at": at(0), **fields}


def callback(request_id: str | None, second: int, query: str) -> dict[str, Any]:
    row: dict[str, Any] = {"received_at": at(second), "url": f"/webhooks/wh-a?{query}"}
    return row if request_id is None else {**row, "request_id": request_id}


def jsonl(rows: Sequence[dict[str, Any] | str]) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def har(rows: Sequence[dict[str, Any]]) -> str:
    """The rows (callbacks.jsonl fields) as HAR 1.2 entries (I4)."""
    def entry(row: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = {
            "startedDateTime": row["received_at"],
            "request": {"method": row.get("method", "POST"), "url": row["url"],
                        "headers": [{"name": name, "value": value} for name, value in row.get("headers", [])]},
            "response": {"status": row.get("response_status", 0),
                         "content": {"mimeType": "application/json", "text": row.get("response_body", "")}},
        }
        if "body" in row:
            made["request"]["postData"] = {"mimeType": "", "text": row["body"]}
        if "request_id" in row:
            made["_request_id"] = row["request_id"]
        return made

    return json.dumps({"log": {"version": "1.2", "creator": {"name": "test", "version": "1"},
                               "entries": [entry(row) for row in rows]}})


def parquet(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The rows as callbacks Parquet (I5), ``headers`` a list of ``{name, value}``."""
    header = pa.list_(pa.struct([("name", pa.string()), ("value", pa.string())]))
    pq.write_table(pa.table({
        "received_at": pa.array([row["received_at"] for row in rows], pa.string()),
        "url": pa.array([row["url"] for row in rows], pa.string()),
        "method": pa.array([row.get("method") for row in rows], pa.string()),
        "headers": pa.array([[{"name": n, "value": v} for n, v in row.get("headers", [])] for row in rows], header),
        "body": pa.array([row.get("body") for row in rows], pa.string()),
        "request_id": pa.array([row.get("request_id") for row in rows], pa.string()),
        "response_status": pa.array([row.get("response_status") for row in rows], pa.int64()),
        "response_body": pa.array([row.get("response_body") for row in rows], pa.string()),
    }), path)


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    """A dataset of ``webhooks.json`` (WEBHOOKS unless given) and ``files`` (path in the dataset: content)."""
    folder.mkdir(parents=True)
    files = {"webhooks.json": json.dumps(WEBHOOKS), **files}
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")
    return folder


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in ANSI.sub("", text).splitlines() if line.strip()]


def assert_user_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert lines(result.stderr) == [f"Error: {message}"]
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- one file or three, same outputs


#: The sample's callbacks split into three files in name order: (name, first line, last line) of the lone file.
PARTS = (("part-1.jsonl", 1, 1200), ("part-2.har", 1201, 2400), ("part-3.parquet", 2401, None))


@pytest.fixture(scope="module")
def one_and_three(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, str | None]]:
    """The sample with its callbacks in one JSONL file, and the same callbacks over PARTS (JSONL, HAR,
    Parquet); with each line's explicit request_id (None: every tenth has none, for the default)."""
    texts = (SAMPLE / "callbacks.jsonl").read_text(encoding="utf-8").splitlines()
    # One line that is not JSON stays, in the JSONL part; the other (in the Parquet part) cannot be written there.
    texts = [text for number, text in enumerate(texts, 1) if number != 3495]
    explicit: dict[int, str | None] = {}
    rows: list[dict[str, Any] | str] = []
    for number, text in enumerate(texts, 1):
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            rows.append(text)
            continue
        if number % 10 == 0:
            del row["request_id"]
        explicit[number] = row.get("request_id")
        rows.append(row)
    base = {"webhooks.json": (SAMPLE / "webhooks.json").read_text(encoding="utf-8"),
            "dispatches.csv": (SAMPLE / "dispatches.csv").read_text(encoding="utf-8")}
    root = tmp_path_factory.mktemp("multifile")
    one = write(root / "one", {**base, "callbacks.jsonl": jsonl(rows)})
    first, second, third = (rows[start - 1:end] for _, start, end in PARTS)
    objects = [[row for row in part if isinstance(row, dict)] for part in (second, third)]
    assert [len(part) for part in objects] == [len(second), len(third)]  # HAR and Parquet hold objects only
    three = write(root / "three", {**base, "callbacks/part-1.jsonl": jsonl(first),
                                   "callbacks/part-2.har": har(objects[0])})
    parquet(objects[1], three / "callbacks" / "part-3.parquet")
    return one, three, explicit


def _replayed(folder: Path, keep_requests: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[Any, ...]]]:
    con = connect()
    try:
        loaded = load_dataset(con, folder, keep_requests=keep_requests)
        result = replay(con, loaded.webhooks)
        quarantine = con.execute("SELECT * FROM quarantine ORDER BY source_file, line").fetchall()
        return result.callbacks(), result.leads(), quarantine
    finally:
        con.close()


@pytest.mark.parametrize("keep_requests", [True, False], ids=["requests", "keys-only"])
def test_callbacks_over_three_files_of_mixed_formats_equal_one_file(
        one_and_three: tuple[Path, Path, dict[int, str | None]], keep_requests: bool) -> None:
    one, three, explicit = one_and_three
    single, single_leads, single_quarantine = _replayed(one, keep_requests)
    split, split_leads, split_quarantine = _replayed(three, keep_requests)
    assert len(split) == len(single) > 3000
    # Row for row in judging order, every column but the two the file's rank enters.
    pd.testing.assert_frame_equal(split.drop(columns=["seq", "request_id"]),
                                  single.drop(columns=["seq", "request_id"]))
    pd.testing.assert_frame_equal(split_leads, single_leads)

    def place(line: int) -> tuple[int, str, int]:  # the lone file's line → rank, file name, line in that file
        rank, (name, start, _) = next((r, p) for r, p in reversed(list(enumerate(PARTS))) if line >= p[1])
        return rank, name, line - start + 1

    expected_seq, expected_id = [], []
    for line in single["seq"]:
        rank, name, within = place(line)
        expected_seq.append(rank * RANK + within)
        # I3: the default request_id is the line, and FILE:LINE in every file after the first.
        default = str(within) if rank == 0 else f"{name}:{within}"
        expected_id.append(explicit[line] if explicit[line] is not None else default)
    assert split["seq"].tolist() == expected_seq
    assert split["request_id"].tolist() == expected_id
    assert sum(1 for line in single["seq"] if explicit[line] is None and place(line)[0] > 0) > 100
    # Q1: a bad row is named by its file in the dataset and its line (entry, row) there.
    assert [(source, line, reason) for source, line, _, reason in split_quarantine] == [
        (f"callbacks/{place(line)[1]}", place(line)[2], reason) for _, line, _, reason in single_quarantine]
    assert [row[:2] for row in split_quarantine] == [("callbacks/part-1.jsonl", 936), ("callbacks/part-3.parquet", 252)]
    assert split_quarantine[0][2] == single_quarantine[0][2]


def test_the_load_report_has_a_row_per_file_and_the_cli_prints_each(
        one_and_three: tuple[Path, Path, dict[int, str | None]], tmp_path: Path) -> None:
    _, three, _ = one_and_three
    result = invoke("replay", three, "--out", tmp_path / "out", "--max-quarantined", "100%")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[:4] == [
        "dispatches.csv: read 3,000 = loaded 3,000 + quarantined 0",
        "callbacks/part-1.jsonl: read 1,200 = loaded 1,199 + quarantined 1",
        "callbacks/part-2.har: read 1,200 = loaded 1,200 + quarantined 0",
        "callbacks/part-3.parquet: read 1,139 = loaded 1,138 + quarantined 1",
    ]
    report = pq.read_table(tmp_path / "out" / "load_report.parquet").to_pylist()
    assert [tuple(row.values())[:5] for row in report] == [
        ("dispatches.csv", "dispatches", 3000, 3000, 0),
        ("callbacks/part-1.jsonl", "callbacks", 1200, 1199, 1),
        ("callbacks/part-2.har", "callbacks", 1200, 1200, 0),
        ("callbacks/part-3.parquet", "callbacks", 1139, 1138, 1),
    ]


# --------------------------------------------------------------------------- judging order across files


def test_ties_in_received_at_across_files_go_by_file_name_then_line(con: duckdb.DuckDBPyConnection,
                                                                   tmp_path: Path) -> None:
    # Two callbacks for L1 at the same microsecond: the first by (file name, line) finishes the wait (M5),
    # the other is a duplicate. Names sort by their bytes: "B.jsonl" before "a.jsonl", though its line is later.
    folder = write(tmp_path / "ds", {
        "dispatches.jsonl": jsonl([lead(1)]),
        "callbacks/a.jsonl": jsonl([callback("from-a", 5, "pcid=C1")]),
        "callbacks/B.jsonl": jsonl([callback("other", 2, "pcid=C9"), callback("from-B", 5, "pcid=C1")]),
    })
    loaded = load_dataset(con, folder)
    frame = replay(con, loaded.webhooks).callbacks()
    assert frame[["request_id", "outcome", "seq"]].values.tolist() == [
        ["other", "not_found", 1], ["from-B", "matched", 2], ["from-a", "duplicate", RANK + 1]]


# --------------------------------------------------------------------------- bad and odd files in a folder


def test_a_bad_file_among_good_ones_is_quarantined_and_named(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    lines_of_har = ['{"log": {"entries": [', '  {"startedDateTime": ', "", "  truncated"]
    folder = write(tmp_path / "ds", {
        "dispatches.jsonl": jsonl([lead(1), lead(2)]),
        "callbacks/1.jsonl": jsonl([callback("r1", 5, "pcid=C1")]),
        "callbacks/2.har": "\n".join(lines_of_har) + "\n",
        "callbacks/4.jsonl": "",
    })
    pq.write_table(pa.table({"received_at": [at(6), at(7)], "link": ["/webhooks/wh-a?pcid=C2", "x"]}),
                   folder / "callbacks" / "3.parquet")
    loaded = load_dataset(con, folder)
    assert con.execute("SELECT * FROM quarantine ORDER BY source_file, line").fetchall() == [
        ("callbacks/2.har", 1, lines_of_har[0], "unusable file: not valid JSON; a HAR file is one JSON document"),
        ("callbacks/2.har", 2, lines_of_har[1], "unusable file: not valid JSON; a HAR file is one JSON document"),
        ("callbacks/2.har", 4, lines_of_har[3], "unusable file: not valid JSON; a HAR file is one JSON document"),
        ("callbacks/3.parquet", 1, f'{{"received_at":"{at(6)}","link":"/webhooks/wh-a?pcid=C2"}}',
         "unusable file: field 'url': missing column; callbacks need at least received_at and url"),
        ("callbacks/3.parquet", 2, f'{{"received_at":"{at(7)}","link":"x"}}',
         "unusable file: field 'url': missing column; callbacks need at least received_at and url"),
    ]
    assert [(f.path, f.read, f.loaded, f.quarantined) for f in loaded.files] == [
        ("dispatches.jsonl", 2, 2, 0), ("callbacks/1.jsonl", 1, 1, 0), ("callbacks/2.har", 3, 0, 3),
        ("callbacks/3.parquet", 2, 0, 2), ("callbacks/4.jsonl", 0, 0, 0)]
    assert loaded.warnings[-1] == "callbacks/4.jsonl: no rows; nothing loaded from it"
    assert replay(con, loaded.webhooks).callbacks()[["request_id", "outcome"]].values.tolist() == [["r1", "matched"]]
    # The gate judges each file: the bad one stops the run, named, unless the limit allows it.
    result = invoke("replay", folder, "--out", tmp_path / "out")
    assert_user_error(result, (
        f"{folder / 'callbacks' / '2.har'}: 3 of 3 rows quarantined (100.0%, over --max-quarantined 1%); commonest "
        "reason: unusable file: not valid JSON; a HAR file is one JSON document, e.g. entry 1; figures from it "
        "would mislead: fix those rows; or judge the rest anyway with --max-quarantined 100%"))
    result = invoke("replay", folder, "--out", tmp_path / "out", "--max-quarantined", "100%")
    assert result.exit_code == 0, result.output
    assert ("warning: callbacks/3.parquet: 2 of 2 rows quarantined (100.0%); commonest reason: unusable file: "
            "field 'url': missing column; callbacks need at least received_at and url, e.g. row 1"
            ) in lines(result.stderr)


def test_a_file_in_a_folder_that_cannot_be_opened_is_one_quarantined_row(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write(tmp_path / "ds", {"dispatches.jsonl": jsonl([lead(1)]),
                                     "callbacks/a.jsonl": jsonl([callback("r1", 5, "pcid=C1")]),
                                     "callbacks/b.jsonl": jsonl([callback("r2", 6, "pcid=C1")])})
    # (Tests run as root, whom file modes do not stop: the operating system's refusal is staged.)
    def refusing_b(read: Any) -> Any:
        def reading(*args: Any, **kwargs: Any) -> Any:
            if any(isinstance(arg, Path) and arg.name == "b.jsonl" for arg in args):
                raise PermissionError(13, "Permission denied")
            return read(*args, **kwargs)
        return reading

    readers = callback_loading.CALLBACK_READERS
    monkeypatch.setitem(readers, "jsonl", refusing_b(readers["jsonl"]))
    monkeypatch.setattr(linereader, "iter_line_chunks", refusing_b(linereader.iter_line_chunks))
    loaded = load_dataset(con, folder)
    assert con.execute("SELECT * FROM quarantine").fetchall() == [
        ("callbacks/b.jsonl", 0, "", "unusable file: cannot open it (Permission denied)")]
    assert [(f.path, f.read, f.loaded, f.quarantined) for f in loaded.files][1:] == [
        ("callbacks/a.jsonl", 1, 1, 0), ("callbacks/b.jsonl", 1, 0, 1)]


def test_a_folder_whose_every_row_is_quarantined_is_named(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds", {"dispatches.jsonl": jsonl([lead(1)]),
                                     "callbacks/a.jsonl": jsonl(["nope"]), "callbacks/b.jsonl": jsonl(["{}", "[]"])})
    assert_user_error(invoke("replay", folder, "--out", tmp_path / "out", "--max-quarantined", "100%"), (
        f"{folder / 'callbacks'}: 0 of 3 rows loaded (3 quarantined; commonest reason: not valid JSON, e.g. "
        "callbacks/a.jsonl line 1); fix those rows (docs/semantics.md, Q2)"))
    empty = write(tmp_path / "empty", {"dispatches.jsonl": jsonl([lead(1)]), "callbacks/a.jsonl": ""})
    assert_user_error(invoke("replay", empty, "--out", tmp_path / "out"), (
        f"{empty / 'callbacks'}: 0 rows: the folder has no callbacks; add the captured requests "
        "(docs/semantics.md, I3-I5)"))


def test_a_file_and_a_folder_of_one_kind_is_an_error(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds", {"dispatches.jsonl": jsonl([lead(1)]),
                                     "callbacks.jsonl": jsonl([callback("r1", 5, "pcid=C1")]),
                                     "callbacks/a.jsonl": jsonl([callback("r2", 6, "pcid=C1")])})
    assert_user_error(invoke("replay", folder, "--out", tmp_path / "out"),
                      f"{folder}: both callbacks.jsonl and the folder callbacks/; keep the file or the folder")


def test_entries_of_a_folder_that_are_not_read_are_warnings(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = write(tmp_path / "ds", {
        "dispatches.jsonl": jsonl([lead(1)]),
        "callbacks/a.jsonl": jsonl([callback("r1", 5, "pcid=C1")]),
        "callbacks/.a.jsonl.swp": "x", "callbacks/_SUCCESS": "",  # hidden files and markers: never captures
        "callbacks/b.jsonl.gz": "x", "callbacks/old/c.jsonl": jsonl([callback("r2", 6, "pcid=C1")]),
    })
    loaded = load_dataset(con, folder)
    assert loaded.warnings == (
        "callbacks/b.jsonl.gz: not read: callbacks files end in .jsonl, .har, .parquet",
        "callbacks/old: not a file; not read (only the files directly in callbacks/ are)")
    assert [f.path for f in loaded.files] == ["dispatches.jsonl", "callbacks/a.jsonl"]


def test_a_file_in_a_folder_past_the_line_limit_or_too_many_files_is_an_error(
        con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "MAX_LINE", 2)
    monkeypatch.setattr(inputs, "MAX_FILES", 2)
    three_lines = jsonl([callback(f"r{n}", n, "pcid=C1") for n in (1, 2, 3)])
    lone = write(tmp_path / "lone", {"dispatches.jsonl": jsonl([lead(1)]), "callbacks.jsonl": three_lines})
    assert [f.loaded for f in load_dataset(con, lone).files] == [1, 3]  # a lone file has no such limit
    folder = write(tmp_path / "ds", {"dispatches.jsonl": jsonl([lead(1)]), "callbacks/a.jsonl": three_lines})
    with pytest.raises(DatasetError) as caught:
        load_dataset(con, folder)
    assert str(caught.value) == (f"{folder / 'callbacks' / 'a.jsonl'}: more than 2 lines; a file in a folder holds "
                                 "at most that many: split it in two")
    for name in ("b.jsonl", "c.jsonl"):
        (folder / "callbacks" / name).write_text("", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_dataset(con, folder)
    assert str(caught.value) == (f"{folder / 'callbacks'}: 3 files; a folder holds at most 2: merge some "
                                 "(e.g. a day's files into one)")


# --------------------------------------------------------------------------- dispatches as a folder


def test_dispatches_as_a_folder(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    header = "lead_id,conversion_id,advertiser_id,external_id,webhook_id,created_at\n"
    shared = {"external_id": "E", "created_at": at(0)}  # M3: two leads share an external ID and an instant
    folder = write(tmp_path / "ds", {
        "dispatches/1.csv": header + f"L1,C1,A,E1,wh-a,{at(0)}\nLX,CX,A,E,wh-a,{at(0)}\n",
        "dispatches/2.jsonl": jsonl([lead(0, lead_id="LY", conversion_id="CY", **shared),
                                     lead(1, lead_id="L1-again"), lead(9, created_at=None)]),
        "dispatches/3.csv": "lead,id\n1,2\n",  # no usable header: quarantined whole, named
        "callbacks.jsonl": jsonl([callback("r1", 5, "pcid=C1"), callback("r2", 6, "external_id=E"),
                                  callback("r3", 7, "pcid=C9")]),
    })
    pq.write_table(pa.table({name: [value] for name, value in lead(4).items()}), folder / "dispatches" / "4.parquet")
    loaded = load_dataset(con, folder)
    assert [(f.path, f.read, f.loaded, f.quarantined) for f in loaded.files] == [
        ("dispatches/1.csv", 2, 2, 0), ("dispatches/2.jsonl", 3, 1, 2), ("dispatches/3.csv", 2, 0, 2),
        ("dispatches/4.parquet", 1, 1, 0), ("callbacks.jsonl", 3, 3, 0)]
    # Q8: row is the file's rank and the line; source_line the line in its file.
    assert con.execute('SELECT "row", lead_id, source_line FROM dispatches ORDER BY "row"').fetchall() == [
        (2, "L1", 2), (3, "LX", 3), (RANK + 1, "LY", 1), (3 * RANK + 1, "L4", 1)]
    assert con.execute("SELECT * FROM quarantine ORDER BY source_file, line").fetchall() == [
        ("dispatches/2.jsonl", 2, json.dumps(lead(1, lead_id="L1-again")),
         "duplicate conversion_id (first on dispatches/1.csv line 2)"),
        ("dispatches/2.jsonl", 3, json.dumps(lead(9, created_at=None)), "missing created_at"),
        ("dispatches/3.csv", 1, "lead,id", "unusable file: field 'lead_id': missing column; the header must name "
         "lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at"),
        ("dispatches/3.csv", 2, "1,2", "unusable file: field 'lead_id': missing column; the header must name "
         "lead_id, conversion_id, advertiser_id, external_id, webhook_id, created_at"),
    ]
    # M3: of two leads created at the same instant, "most recently created" is the later by (file name, line).
    outcomes = replay(con, loaded.webhooks).callbacks()
    assert outcomes[["request_id", "outcome", "lead_id"]].values.tolist() == [
        ["r1", "matched", "L1"], ["r2", "matched", "LY"], ["r3", "not_found", None]]
    # The timeline names a quarantined dispatch by its file and line.
    result = invoke("timeline", folder, "L9", "--max-quarantined", "100%")
    assert result.exit_code == 1
    assert lines(result.stderr)[-1] == (
        "Error: no lead with lead_id or conversion_id 'L9': its dispatch was quarantined, dispatches/2.jsonl line 3 "
        "(missing created_at); its callbacks are not_found for that reason (flagged lead_quarantined): fix the row "
        "and replay")
